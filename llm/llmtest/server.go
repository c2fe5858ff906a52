package llmtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
)

// Server is a vLLM-shaped HTTP server in the test's process that spends
// next to no CPU on a request: it answers every chat completion with one
// pre-encoded reply (ChatReplyIDs, with token ids when the request asks
// for them with return_token_ids, as vLLM does) and every /classify request in the chat
// form with a pre-encoded score chosen by which of the reply's choices the
// request carries as the assistant's turn. Benchmarks use it to measure
// the CPU of the clients, the worker and the services around them.
type Server struct {
	// URL is the server's root, without /v1.
	URL string
	// Reply is the chat-completions body every request with
	// return_token_ids gets; ReplyNoIDs the one the others get.
	Reply, ReplyNoIDs []byte
	// Contents are the reply's choices' texts, in choice order.
	Contents []string

	chats, classifies atomic.Int64
	withIDs           atomic.Int64 // chat requests that asked for token ids
	keys              [][]byte     // a prefix of each content, as JSON writes it
	scores            [][]byte     // the /classify body for each content
}

// StartServer starts a server whose chat replies have len(rewards) choices
// of tokens tokens each and whose /classify scores the reply's choice i
// with rewards[i]. /v1/models lists models; /health answers 200. It stops
// when the test ends.
func StartServer(tb testing.TB, models []string, tokens int, rewards []float64) *Server {
	tb.Helper()
	s := &Server{Reply: ChatReplyIDs(len(rewards), tokens, true), ReplyNoIDs: ChatReplyIDs(len(rewards), tokens, false)}
	var reply struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(s.Reply, &reply); err != nil {
		tb.Fatalf("llmtest: decode the canned reply: %v", err)
	}
	for i, c := range reply.Choices {
		s.Contents = append(s.Contents, c.Message.Content)
		key, _ := json.Marshal(c.Message.Content[:min(len(c.Message.Content), 80)])
		key = key[:len(key)-1] // an open string: the content goes on
		for j, k := range s.keys {
			if bytes.Equal(k, key) {
				tb.Fatalf("llmtest: choices %d and %d start alike; a /classify request could not tell them apart", j, i)
			}
		}
		s.keys = append(s.keys, key)
		s.scores = append(s.scores, fmt.Appendf(nil,
			`{"id":"classify-bench","object":"list","created":1760000000,"model":"reward","data":[{"index":0,"label":"LABEL_0","probs":[%s],"num_classes":1}],"usage":{"prompt_tokens":600,"total_tokens":600,"completion_tokens":0,"prompt_tokens_details":null}}`,
			strconv.FormatFloat(rewards[i], 'g', -1, 64)))
	}
	list := []byte(`{"object":"list","data":[`)
	for i, m := range models {
		if i > 0 {
			list = append(list, ',')
		}
		list = fmt.Appendf(list, `{"id":%q,"object":"model","created":1760000000,"owned_by":"vllm","root":%q,"parent":null,"max_model_len":4096}`, m, m)
	}
	list = append(list, "]}"...)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) { write(w, list) })
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		s.chats.Add(1)
		var body bytes.Buffer
		if _, err := body.ReadFrom(r.Body); err != nil {
			return
		}
		if bytes.Contains(body.Bytes(), []byte(`"return_token_ids":true`)) {
			s.withIDs.Add(1)
			write(w, s.Reply)
			return
		}
		write(w, s.ReplyNoIDs)
	})
	mux.HandleFunc("POST /classify", func(w http.ResponseWriter, r *http.Request) {
		s.classifies.Add(1)
		var body bytes.Buffer
		if _, err := body.ReadFrom(r.Body); err != nil {
			return
		}
		for i, k := range s.keys {
			if bytes.Contains(body.Bytes(), k) {
				write(w, s.scores[i])
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":{"message":"llmtest: the request carries none of the canned replies","type":"BadRequestError","param":null,"code":400}}`))
	})
	srv := httptest.NewServer(mux)
	tb.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Requests is how many chat-completions and /classify requests came.
func (s *Server) Requests() (chats, classifies int64) {
	return s.chats.Load(), s.classifies.Load()
}

// TokenIDRequests is how many chat-completions requests asked for token
// ids (return_token_ids).
func (s *Server) TokenIDRequests() int64 {
	return s.withIDs.Load()
}

func write(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}
