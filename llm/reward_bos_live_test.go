package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// bosRecorder serves a real tinylm server over HTTP and keeps, per path,
// the request bodies it got and the usage.prompt_tokens it answered.
type bosRecorder struct {
	srv    *tinylm.Server
	mu     sync.Mutex
	bodies map[string][]map[string]any
	tokens map[string]int
}

func (r *bosRecorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	req.Body = io.NopCloser(bytes.NewReader(body))
	rec := httptest.NewRecorder()
	r.srv.ServeHTTP(rec, req)
	var in map[string]any
	_ = json.Unmarshal(body, &in)
	var out struct {
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"usage"`
	}
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	r.mu.Lock()
	r.bodies[req.URL.Path] = append(r.bodies[req.URL.Path], in)
	r.tokens[req.URL.Path] += out.Usage.PromptTokens
	r.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// Batched rendered input reaches the reward model with exactly one BOS per
// text: selfplay's tinylm template writes <|bos|> and the client sends
// add_special_tokens false, which vLLM's CompletionRequestMixin
// (vllm/entrypoints/pooling/base/protocol.py) would otherwise default to
// true, putting a second BOS in front. tinylm counts the tokens it scored
// in usage.prompt_tokens as vLLM does; the prompt "how do i keep my garden
// healthy in summer ?" is 10 tokens, so a reply of r tokens makes
// <|bos|> <|user|> …10… <|end|> <|assistant|> …r… <|end|> = 15 + r: with
// replies of 7, 2 and 10 tokens, 22 + 17 + 25 = 64 (67 with a BOS twice).
func TestRewardBatchedOneBOSLive(t *testing.T) {
	t.Parallel()
	srv, err := tinylm.NewServer(tinylm.ServerOptions{})
	require.NoError(t, err)
	rec := &bosRecorder{srv: srv, bodies: map[string][]map[string]any{}, tokens: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{Handler: rec, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
	base := "http://" + ln.Addr().String()

	replies := []string{"water them early in the morning .", "no .", "mulch keeps the soil cool and water them early ."}
	ctx := context.Background()
	for _, kind := range []string{KindClassify, KindPooling} {
		ep := Endpoint{Name: "reward", BaseURL: base + "/v1", MaxConcurrency: 4, Timeout: 10 * time.Second, Kind: kind, Model: rewardModel}
		r, err := NewReward(ep, WithChatTemplate(TemplateTinyLM))
		require.NoError(t, err)
		require.NoError(t, r.CheckTemplate(ctx))
		_, err = r.Score(ctx, questionPrompt, replies)
		require.NoError(t, err)
		path := "/" + kind
		rec.mu.Lock()
		bodies, tokens := rec.bodies[path], rec.tokens[path]
		rec.mu.Unlock()
		require.Len(t, bodies, 1, "%s: one batched request", kind)
		require.Equal(t, false, bodies[0]["add_special_tokens"], kind)
		require.Len(t, bodies[0]["input"], 3, kind)
		require.Equal(t, 64, tokens, "%s: one BOS per text", kind)
	}
}
