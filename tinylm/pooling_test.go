package tinylm_test

import (
	"encoding/json"
	"math"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// /pooling follows vLLM's PoolingCompletionRequest / PoolingChatRequest and
// PoolingResponse (vllm/entrypoints/pooling/pooling/protocol.py): task
// classify pools a sequence into a vector, token_classify gives one row per
// token; use_activation as on /classify (pooling/base/protocol.py).
func TestPoolingVectorAndPerToken(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	// The worked example of tinylm/README.md: score 3.0.
	text := "<|user|> How do I cook pasta? <|end|> <|assistant|> Cook the pasta in salty water. <|end|>"
	type poolResp struct {
		Object string `json:"object"`
		Model  string `json:"model"`
		Data   []struct {
			Index  int             `json:"index"`
			Object string          `json:"object"`
			Data   json.RawMessage `json:"data"`
		} `json:"data"`
	}

	var vec poolResp
	ok(t, base, "/pooling", map[string]any{"model": "reward", "input": []string{text, text}, "use_activation": false, "add_special_tokens": false}, &vec)
	require.Equal(t, "list", vec.Object)
	require.Len(t, vec.Data, 2)
	for i, d := range vec.Data {
		require.Equal(t, i, d.Index)
		require.Equal(t, "pooling", d.Object)
		var v []float64
		require.NoError(t, json.Unmarshal(d.Data, &v))
		require.Len(t, v, 1)
		require.InDelta(t, 3.0, v[0], 1e-12)
	}

	var act poolResp
	ok(t, base, "/pooling", map[string]any{"input": text}, &act)
	var v []float64
	require.NoError(t, json.Unmarshal(act.Data[0].Data, &v))
	require.InDelta(t, 1/(1+math.Exp(-3)), v[0], 1e-12, "use_activation defaults to true")

	var tok poolResp
	ok(t, base, "/pooling", map[string]any{"task": "token_classify", "use_activation": false, "messages": []map[string]string{
		{"role": "user", "content": "How do I cook pasta?"}, {"role": "assistant", "content": "Cook the pasta in salty water."},
	}}, &tok)
	var rows [][]float64
	require.NoError(t, json.Unmarshal(tok.Data[0].Data, &rows))
	// <|bos|> <|user|> how do i cook pasta ? <|end|> <|assistant|> cook
	// the pasta in salty water . <|end|>: 18 tokens (the template writes
	// BOS), the score at the last.
	require.Len(t, rows, 18)
	require.InDelta(t, 3.0, rows[len(rows)-1][0], 1e-12)
	for _, r := range rows[:len(rows)-1] {
		require.Equal(t, []float64{0}, r)
	}

	for _, body := range []map[string]any{
		{"input": text, "task": "embed"},
		{"input": text, "encoding_format": "base64"},
		{"model": "tiny-0", "input": text},
	} {
		status, _, raw := call(t, base, "/pooling", body)
		require.Equal(t, http.StatusBadRequest, status, "%v: %s", body, raw)
	}
}
