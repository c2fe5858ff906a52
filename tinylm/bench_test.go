package tinylm_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// BenchmarkGenerate measures sampling on one core with the authors' default
// settings (temperature 0.8, top-p 0.95), over corpus prompts.
func BenchmarkGenerate(b *testing.B) {
	m := tinylm.Builtin()
	var prompts [][]int
	for _, msgs := range corpus.Prompts(7, 64) {
		p, err := m.Tok.EncodeChat(msgs, true)
		if err != nil {
			b.Fatal(err)
		}
		prompts = append(prompts, p)
	}
	rng := tinylm.NewRand(1)
	var tokens int
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		g, err := m.Generate(prompts[i%len(prompts)], tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 256}, rng)
		if err != nil {
			b.Fatal(err)
		}
		tokens += len(g.IDs)
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(tokens)/float64(b.N), "tokens/sample")
}

// BenchmarkChatN4 measures the server end to end over real HTTP: chat
// completions with n=4, logprobs and token ids, from parallel clients.
func BenchmarkChatN4(b *testing.B) {
	base := tinylmtest.Start(b, tinylm.ServerOptions{})
	var bodies [][]byte
	for _, msgs := range corpus.Prompts(7, 64) {
		body, err := json.Marshal(map[string]any{
			"model": "tiny-0", "messages": msgs, "n": 4, "temperature": 0.8, "top_p": 0.95,
			"logprobs": true, "return_token_ids": true,
		})
		if err != nil {
			b.Fatal(err)
		}
		bodies = append(bodies, body)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	var next, tokens atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := bodies[next.Add(1)%int64(len(bodies))]
			resp, err := client.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			raw, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Errorf("status %d: %v %s", resp.StatusCode, err, raw)
				return
			}
			var r struct {
				Usage struct {
					CompletionTokens int64 `json:"completion_tokens"`
				} `json:"usage"`
			}
			if err := json.Unmarshal(raw, &r); err != nil {
				b.Error(err)
				return
			}
			tokens.Add(r.Usage.CompletionTokens)
		}
	})
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/secs, "requests/s")
	b.ReportMetric(float64(tokens.Load())/secs, "tokens/s")
}

// BenchmarkTeacherForced measures scoring a prompt and response the way the
// reference scorer does (/v1/completions with token ids, prompt_logprobs),
// without HTTP.
func BenchmarkTeacherForced(b *testing.B) {
	m := tinylm.Builtin()
	ex := corpus.Generate(7, 1)[0]
	p, err := m.Tok.EncodeChat(ex.Messages, true)
	if err != nil {
		b.Fatal(err)
	}
	seq := append(append(p, m.Tok.Encode(ex.Response)...), tinylm.EndID)
	for b.Loop() {
		if _, _, _, err := m.SequenceLogProbs(seq, 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(seq))*float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}
