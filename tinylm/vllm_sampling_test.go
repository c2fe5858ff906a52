package tinylm_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// tinylm accepts and refuses sampling parameters as vLLM's SamplingParams
// does (vllm/sampling_params.py: __post_init__, _verify_args,
// _verify_greedy_sampling) and vLLM's completions (vllm/entrypoints/openai/
// completion/protocol.py: max_tokens 0 only with echo), over HTTP.
func TestSamplingParamsAsVLLM(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	msgs := userMsg("How do I feed my puppy?")
	tests := []struct {
		name  string
		path  string
		body  map[string]any
		param string // "" = accepted
		want  string
	}{
		{name: "temperature 2 accepted", body: map[string]any{"temperature": 2, "n": 2}},
		{name: "temperature above 2", body: map[string]any{"temperature": 2.01}, param: "temperature", want: "temperature must be in [0, 2], got 2.01."},
		{name: "negative temperature", body: map[string]any{"temperature": -0.5}, param: "temperature", want: "temperature must be non-negative"},
		{name: "greedy with n 2", body: map[string]any{"temperature": 0, "n": 2}, param: "n", want: "n must be 1 when using greedy sampling, got 2."},
		// 0 < t < 0.01 is raised to 0.01, which is not greedy: n > 1 is fine.
		{name: "tiny temperature raised, not greedy", body: map[string]any{"temperature": 0.001, "n": 2}},
		{name: "top_p 0", body: map[string]any{"top_p": 0}, param: "top_p", want: "top_p must be in (0, 1]"},
		{name: "neutral knobs accepted", body: map[string]any{"top_k": -1, "min_p": 0, "repetition_penalty": 1, "presence_penalty": 0, "frequency_penalty": 0}},
		{name: "top_k 0 accepted", body: map[string]any{"top_k": 0}},
		{name: "top_k below -1", body: map[string]any{"top_k": -2}, param: "top_k", want: "top_k must be 0 (disable), or at least 1, got -2."},
		{name: "min_p above 1", body: map[string]any{"min_p": 1.5}, param: "min_p", want: "min_p must be in [0, 1]"},
		{name: "repetition penalty 0", body: map[string]any{"repetition_penalty": 0}, param: "repetition_penalty", want: "repetition_penalty must be greater than zero"},
		{name: "presence penalty 3", body: map[string]any{"presence_penalty": 3}, param: "presence_penalty", want: "presence_penalty must be in [-2, 2]"},
		{name: "frequency penalty -3", body: map[string]any{"frequency_penalty": -3}, param: "frequency_penalty", want: "frequency_penalty must be in [-2, 2]"},
		// vLLM accepts these; tinylm does not implement them and says so.
		{name: "top_k 20 not implemented", body: map[string]any{"top_k": 20}, param: "top_k", want: "tinylm does not implement top_k"},
		{name: "repetition penalty 1.1 not implemented", body: map[string]any{"repetition_penalty": 1.1}, param: "repetition_penalty", want: "tinylm does not implement"},
		{name: "chat max_tokens 0", body: map[string]any{"max_tokens": 0}, param: "max_tokens", want: "max_tokens must be at least 1, got 0."},
		{name: "chat max_completion_tokens 0", body: map[string]any{"max_completion_tokens": 0}, param: "max_tokens", want: "max_tokens must be at least 1"},
		{name: "completions max_tokens 0 without echo", path: "/v1/completions", body: map[string]any{"max_tokens": 0, "prompt_logprobs": 0}, param: "max_tokens", want: "max_tokens must be at least 1, got 0."},
		{name: "completions max_tokens 0 with echo", path: "/v1/completions", body: map[string]any{"max_tokens": 0, "echo": true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := tc.path
			body := map[string]any{"model": "tiny-0", "max_tokens": 5, "seed": 1}
			if path == "" {
				path = "/v1/chat/completions"
				body["messages"] = msgs
			} else {
				body["prompt"] = "rivers start in the hills"
			}
			for k, v := range tc.body {
				body[k] = v
			}
			status, _, raw := call(t, base, path, body)
			if tc.param == "" {
				require.Equal(t, http.StatusOK, status, "body: %s", raw)
				return
			}
			require.Equal(t, http.StatusBadRequest, status, "body: %s", raw)
			var e struct {
				Error struct {
					Message string `json:"message"`
					Param   string `json:"param"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(raw, &e))
			require.Equal(t, tc.param, e.Error.Param)
			require.Contains(t, e.Error.Message, tc.want)
		})
	}
}

// max_completion_tokens, vLLM's current name, caps a chat reply as the
// deprecated max_tokens does, and wins when both are sent
// (vllm/entrypoints/openai/chat_completion/protocol.py).
func TestChatLengthCap(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	for _, body := range []map[string]any{
		{"max_tokens": 3},
		{"max_completion_tokens": 3},
		{"max_completion_tokens": 3, "max_tokens": 50},
	} {
		body["messages"] = userMsg("Tell me everything about rivers and the hills they start in.")
		body["temperature"] = 1
		body["n"] = 4
		body["seed"] = 2
		body["return_token_ids"] = true
		r := chatSample(t, base, body)
		for _, c := range r.Choices {
			require.LessOrEqual(t, len(c.TokenIDs), 3, "body %v", body)
		}
	}
}
