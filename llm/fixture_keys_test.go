package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// keyPaths lists every key path of a JSON value: objects add ".key", arrays
// "[]" (the union over their elements), and objects keyed by token ids (as
// in prompt_logprobs) "{id}".
func keyPaths(v any, prefix string, out map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		ids := len(x) > 0
		for k := range x {
			if _, err := strconv.Atoi(k); err != nil {
				ids = false
			}
		}
		for k, child := range x {
			p := prefix + "." + k
			if ids {
				p = prefix + ".{id}"
			}
			out[p] = true
			keyPaths(child, p, out)
		}
	case []any:
		for _, child := range x {
			keyPaths(child, prefix+"[]", out)
		}
	}
}

func keySet(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(body, &v), "body: %s", body)
	out := map[string]bool{}
	keyPaths(v, "", out)
	return out
}

// notReadHere are fields vLLM sends that no client in this package reads;
// tinylm may omit them. Every other fixture field must be in tinylm's
// response.
var notReadHere = map[string][]string{
	"vllm/chat_completion_response.json": {
		".choices[].message.refusal", ".choices[].message.annotations", ".choices[].message.audio",
		".choices[].message.function_call", ".choices[].message.reasoning_content",
		".service_tier", ".system_fingerprint", ".usage.prompt_tokens_details",
		".prompt_token_ids", ".kv_transfer_params",
	},
	"vllm/completion_response.json": {
		".service_tier", ".system_fingerprint", ".usage.prompt_tokens_details", ".kv_transfer_params",
		".choices[].token_ids", ".choices[].prompt_token_ids",
	},
	"vllm/tokenize_response.json": {".token_strs"},
	"vllm/classify_response.json": {".usage.prompt_tokens_details"},
	"vllm/pooling_response.json":  {".usage.prompt_tokens_details"},
}

func postRaw(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	payload, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(payload))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, got
}

// TestTinyLMCarriesFixtureFields sends this package's requests to tinylm and
// checks that its responses carry every field of the vLLM fixtures, so
// tinylm and vLLM are held to the same shape.
func TestTinyLMCarriesFixtureFields(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	seed := int64(7)
	chatReq, chatFields := chatSamplingRequest(questionPrompt, SampleParams{Model: tinyModel, N: 2, Temperature: 0.8, TopP: 0.95, MaxTokens: 16, Seed: &seed}, 2, &seed, nil)
	chatBody, err := chatRequestBody(chatReq, chatFields)
	require.NoError(t, err)

	status, tok := postRaw(t, b.baseURL+"/tokenize", tokenizeChatRequest{Model: tinyModel, Messages: questionPrompt, AddGenerationPrompt: true})
	require.Equal(t, http.StatusOK, status, "%s", tok)
	var ids tokenizeResponse
	require.NoError(t, json.Unmarshal(tok, &ids))

	tests := []struct {
		name, fixture, route string
		body                 any
		status               int
	}{
		{name: "chat completions", fixture: "vllm/chat_completion_response.json", route: "/v1/chat/completions", body: json.RawMessage(chatBody), status: 200},
		{
			name: "teacher-forced completions", fixture: "vllm/completion_response.json", route: "/v1/completions", status: 200,
			body: completionRequest{Model: tinyModel, Prompt: ids.Tokens, MaxTokens: 1},
		},
		{
			name: "tokenize", fixture: "vllm/tokenize_response.json", route: "/tokenize", status: 200,
			body: tokenizeTextRequest{Model: tinyModel, Prompt: "water the plants ."},
		},
		{
			name: "classify", fixture: "vllm/classify_response.json", route: "/classify", status: 200,
			body: classifyRequest{Model: rewardModel, Input: renderReplies(TemplateTinyLM, questionPrompt, []string{"water them .", "no ."})},
		},
		{
			name: "pooling", fixture: "vllm/pooling_response.json", route: "/pooling", status: 200,
			body: classifyRequest{Model: rewardModel, Input: renderReplies(TemplateTinyLM, questionPrompt, []string{"water them .", "no ."})},
		},
		{
			name: "error object", fixture: "vllm/error_response.json", route: "/v1/chat/completions", status: 404,
			body: map[string]any{"model": "missing-model", "messages": questionPrompt},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, got := postRaw(t, b.baseURL+tc.route, tc.body)
			require.Equal(t, tc.status, status, "%s", got)
			want := keySet(t, readFixture(t, tc.fixture))
			have := keySet(t, got)
			var missing, skipped []string
			for p := range want {
				if have[p] {
					continue
				}
				if slices.Contains(notReadHere[tc.fixture], p) {
					skipped = append(skipped, p)
					continue
				}
				missing = append(missing, p)
			}
			sort.Strings(missing)
			sort.Strings(skipped)
			if len(skipped) > 0 {
				t.Logf("tinylm omits vLLM fields no client reads: %s", strings.Join(skipped, ", "))
			}
			require.Empty(t, missing, "tinylm response lacks fixture fields; body: %s", got)
		})
	}
}
