package llm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/llm/llamacpptest"
)

// statusLog counts the HTTP attempts a client made, by status.
type statusLog struct {
	mu     sync.Mutex
	counts map[int]int
}

func (s *statusLog) hooks() llm.Hooks {
	return llm.Hooks{OnRequest: func(ri llm.RequestInfo) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.counts == nil {
			s.counts = map[int]int{}
		}
		s.counts[ri.Status]++
	}}
}

func (s *statusLog) take() map[int]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts
	s.counts = nil
	return c
}

func llamaPrompt() []llm.Message {
	return []llm.Message{{Role: "user", Content: "tell me about the cold river"}}
}

// generation.samples above llama-server's slot count: llama-server bounds
// n (its n_cmpl field, alias n) by --parallel and answers 400 {"error":
// {"code": 400, "message": "Field 'n': Value must be between 1 <= value <= 2,
// but got 5", "type": "invalid_request_error"}} (tools/server/server-schema.cpp,
// make_llama_cmpl_schema, in ggml-org/llama.cpp). The first call learns it
// from that 400 — confirmed by the same request with n = 1 — and finishes
// with one request per sample; later calls go there directly.
func TestLlamaServerNAboveSlotsFallsBack(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}, Slots: 2})
	var log statusLog
	p, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL + "/v1", Model: srv.Alias}, llm.WithHooks(log.hooks()))
	require.NoError(t, err)
	seed := int64(1000)
	sp := llm.SampleParams{N: 5, Temperature: 0.8, TopP: 0.95, MaxTokens: 16, Seed: &seed}

	first, err := p.Sample(context.Background(), llamaPrompt(), sp)
	require.NoError(t, err)
	require.Len(t, first, 5)
	// One 400 for n = 5, then the n = 1 request that confirms it (sample
	// 0), then samples 1–4.
	require.Equal(t, map[int]int{http.StatusBadRequest: 1, http.StatusOK: 5}, log.take())
	for i, s := range first {
		require.Positive(t, s.Tokens, "sample %d", i)
		require.Negative(t, s.LogProb, "sample %d", i)
		require.Contains(t, []string{"stop", "length"}, s.FinishReason, "sample %d", i)
	}

	second, err := p.Sample(context.Background(), llamaPrompt(), sp)
	require.NoError(t, err)
	require.Equal(t, map[int]int{http.StatusOK: 5}, log.take(), "the model is remembered: no 400 again")
	// Same seeds (seed+i for sample i, sample 0 of the first call
	// included), same texts.
	for i := range first {
		require.Equal(t, first[i].Content, second[i].Content, "sample %d", i)
	}

	// n within the slots still goes in one request on a fresh client.
	p2, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL, Model: srv.Alias}, llm.WithHooks(log.hooks()))
	require.NoError(t, err)
	sp.N = 2
	two, err := p2.Sample(context.Background(), llamaPrompt(), sp)
	require.NoError(t, err)
	require.Len(t, two, 2)
	require.Equal(t, map[int]int{http.StatusOK: 1}, log.take())
}

// Endpoint.MaxN (endpoints.<name>.max_n) says the limit up front: n above
// it never reaches the server.
func TestLlamaServerMaxN(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}, Slots: 2})
	var log statusLog
	p, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL, Model: srv.Alias, MaxN: 2}, llm.WithHooks(log.hooks()))
	require.NoError(t, err)
	seed := int64(7)
	got, err := p.Sample(context.Background(), llamaPrompt(), llm.SampleParams{N: 3, Temperature: 0.8, MaxTokens: 8, Seed: &seed})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, map[int]int{http.StatusOK: 3}, log.take())

	got, err = p.Sample(context.Background(), llamaPrompt(), llm.SampleParams{N: 2, Temperature: 0.8, MaxTokens: 8, Seed: &seed})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, map[int]int{http.StatusOK: 1}, log.take(), "n up to max_n: one request")

	_, err = llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL, MaxN: -1})
	require.ErrorContains(t, err, "max_n -1")
}

// A 400 that is not about n — here a prompt longer than a slot's context —
// fails with the server's reason, and does not switch the model to one
// request per sample: the n = 1 request that checks fails as well.
func TestLlamaServerOtherBadRequestIsNotN(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}, Slots: 2})
	var log statusLog
	p, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL, Model: srv.Alias}, llm.WithHooks(log.hooks()))
	require.NoError(t, err)
	long := []llm.Message{{Role: "user", Content: strings.Repeat("zq", 1500)}} // 3000 byte tokens > 1024 per slot
	_, err = p.Sample(context.Background(), long, llm.SampleParams{N: 2, Temperature: 0.8, MaxTokens: 8})
	var e *llm.Error
	require.ErrorAs(t, err, &e)
	require.True(t, e.Permanent)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.Equal(t, map[int]int{http.StatusBadRequest: 2}, log.take())

	got, err := p.Sample(context.Background(), llamaPrompt(), llm.SampleParams{N: 2, Temperature: 0.8, MaxTokens: 8})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, map[int]int{http.StatusOK: 1}, log.take(), "still one request for n")
}

// A reference endpoint on llama-server: its /tokenize reads {"content": …}
// and answers {"tokens": []} to vLLM's {"prompt": …} and {"messages": …}
// (tools/server/server-context.cpp in ggml-org/llama.cpp), and it has no
// prompt_logprobs. Probe refuses it with a reason that says the endpoint
// must be vLLM, and scoring fails instead of summing no tokens to 0.
func TestLlamaServerIsRefusedAsReference(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}})
	ref, err := llm.NewReference(llm.Endpoint{Name: "reference", BaseURL: srv.URL, Model: srv.Alias})
	require.NoError(t, err)
	ctx := context.Background()

	err = ref.Probe(ctx, "")
	var e *llm.Error
	require.ErrorAs(t, err, &e)
	require.True(t, e.Permanent)
	require.Equal(t, "/tokenize", e.Path)
	require.Contains(t, e.Reason, "the reference endpoint must be vLLM")
	require.Contains(t, e.Reason, "gave no tokens")

	lp, err := ref.LogProb(ctx, "", llamaPrompt(), "the river runs")
	require.ErrorAs(t, err, &e)
	require.True(t, e.Permanent)
	require.Contains(t, e.Reason, "the reference endpoint must be vLLM")
	require.Zero(t, lp)

	// With the sampler's token ids the prompt is still rendered by
	// /tokenize: no tokens for it is an error too.
	_, err = ref.LogProbTokens(ctx, "", llamaPrompt(), []int{262, 263, llamacpptest.EndOfTurnID})
	require.ErrorAs(t, err, &e)
	require.True(t, e.Permanent)
	require.Contains(t, e.Reason, "rendered 1 messages to no tokens")
}

// llama-server puts each generated token's id in logprobs.content[].id
// (tools/server/server-common.cpp, completion_token_output::to_json, in
// ggml-org/llama.cpp) and ignores vLLM's return_token_ids. The sampler reads
// those ids, so the worker scores the policy's own tokens instead of
// re-tokenizing the text: they are one per log-prob, end on the
// end-of-turn token exactly when the reply stopped, and llama-server's
// /detokenize turns the others back into the reply's text.
func TestLlamaServerTokenIDs(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 5}})
	p, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: srv.URL, Model: srv.Alias})
	require.NoError(t, err)
	seed := int64(21)
	samples, err := p.Sample(context.Background(), llamaPrompt(), llm.SampleParams{N: 4, Temperature: 0.8, MaxTokens: 16, Seed: &seed})
	require.NoError(t, err)
	var stopped int
	for i, s := range samples {
		require.Len(t, s.TokenIDs, s.Tokens, "sample %d", i)
		ids := s.TokenIDs
		if s.FinishReason == "stop" {
			stopped++
			require.Equal(t, llamacpptest.EndOfTurnID, ids[len(ids)-1], "sample %d", i)
			ids = ids[:len(ids)-1]
		}
		require.NotContains(t, ids, llamacpptest.EndOfTurnID, "sample %d", i)
		require.Equal(t, s.Content, detokenize(t, srv.URL, ids), "sample %d", i)
	}
	require.Positive(t, stopped, "some samples end on the end-of-turn token")
	require.Less(t, stopped, len(samples), "some are cut by max_tokens")
}

// detokenize asks llama-server's /detokenize for the text of ids.
func detokenize(t *testing.T, base string, ids []int) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"tokens": ids})
	require.NoError(t, err)
	resp, err := http.Post(base+"/detokenize", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Content string `json:"content"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Content
}
