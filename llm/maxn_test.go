package llm_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// A 400 whose structured error names a field other than n (the error
// object's "param": vLLM's ErrorInfo{message, type, param, code} in
// vllm/entrypoints/openai/protocol.py, which tinylm fills for invalid
// sampling fields) is not taken for a refused n: no n = 1 request is tried, the
// model is not switched to one request per sample, and the error says
// which field.
func TestBadRequestNamingAnotherFieldIsNotN(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	var log statusLog
	p, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: base, Model: "tiny-0"}, llm.WithHooks(log.hooks()))
	require.NoError(t, err)
	msgs := []llm.Message{{Role: "user", Content: "hello"}}

	// top_k 5 is valid for vLLM and for the client, but tinylm implements
	// no top-k and refuses it naming the field.
	_, err = p.Sample(context.Background(), msgs, llm.SampleParams{N: 3, Temperature: 0.8, TopK: 5, MaxTokens: 4})
	var e *llm.Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, http.StatusBadRequest, e.Status)
	require.Equal(t, "top_k", e.Param)
	require.True(t, e.Permanent)
	require.Equal(t, map[int]int{http.StatusBadRequest: 1}, log.take())

	got, err := p.Sample(context.Background(), msgs, llm.SampleParams{N: 3, Temperature: 0.8, MaxTokens: 4})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, map[int]int{http.StatusOK: 1}, log.take(), "still one request for n")
}
