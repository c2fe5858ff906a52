package llm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The fixtures in testdata/vllm are written from vLLM's protocol
// definitions (ChatCompletionRequest/Response, CompletionRequest with
// prompt_logprobs, TokenizeChatRequest, TokenizeCompletionRequest,
// TokenizeResponse, ClassificationCompletionRequest/ChatRequest,
// ClassificationResponse, PoolingResponse, ErrorResponse); those in
// testdata/openrlhf from OpenRLHF's openrlhf/cli/serve_rm.py as of 0.8.3
// (the response carries rewards, scores and extra_logs). These tests hold the clients'
// encoders and decoders to those shapes; live_test.go holds tinylm to them.

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	require.True(t, json.Valid(b), "fixture %s is not valid JSON", name)
	return b
}

var colourPrompt = []Message{
	{Role: "system", Content: "You are a helpful assistant."},
	{Role: "user", Content: "Name a primary colour."},
}

func TestRequestsMarshalToFixtureShape(t *testing.T) {
	t.Parallel()
	seed := int64(7)
	chatReq, chatFields := chatSamplingRequest(colourPrompt, SampleParams{
		Model: "Qwen/Qwen2.5-0.5B-Instruct", N: 2, Temperature: 0.8, TopP: 0.95, MaxTokens: 64, Seed: &seed,
	}, 2, &seed, nil)
	chatBody, err := chatRequestBody(chatReq, chatFields)
	require.NoError(t, err)

	user := colourPrompt[1:]
	replies := []string{"Red.", "Blue is one"}
	tests := []struct {
		name    string
		fixture string
		body    any
	}{
		{name: "chat completions", fixture: "vllm/chat_completion_request.json", body: json.RawMessage(chatBody)},
		{
			name: "teacher-forced completions", fixture: "vllm/completion_request.json",
			body: completionRequest{Model: "Qwen/Qwen2.5-0.5B-Instruct", Prompt: []int{151644, 872, 198, 6033, 13, 151645}, MaxTokens: 1},
		},
		{
			name: "tokenize chat", fixture: "vllm/tokenize_chat_request.json",
			body: tokenizeChatRequest{Model: "Qwen/Qwen2.5-0.5B-Instruct", Messages: user, AddGenerationPrompt: true},
		},
		{
			name: "tokenize text", fixture: "vllm/tokenize_text_request.json",
			body: tokenizeTextRequest{Model: "Qwen/Qwen2.5-0.5B-Instruct", Prompt: "Red."},
		},
		{
			name: "classify batched", fixture: "vllm/classify_request.json",
			body: classifyRequest{Model: "Skywork/Skywork-Reward-V2-Qwen3-0.6B", Input: renderReplies(TemplateChatML, user, replies)},
		},
		{
			name: "classify chat form", fixture: "vllm/classify_chat_request.json",
			body: classifyRequest{Model: "Skywork/Skywork-Reward-V2-Qwen3-0.6B", Messages: withReply(user, "Red.")},
		},
		{
			name: "pooling batched", fixture: "vllm/pooling_request.json",
			body: classifyRequest{Model: "Qwen/Qwen2.5-Math-RM-72B", Input: renderReplies(TemplateChatML, user, replies)},
		},
		{
			name: "openrlhf get_reward", fixture: "openrlhf/get_reward_request.json",
			body: newGetRewardRequest(TemplateChatML, user, replies),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tc.body)
			require.NoError(t, err)
			require.JSONEq(t, string(readFixture(t, tc.fixture)), string(got))
		})
	}
}

func TestChatFixtureDecodesToSamples(t *testing.T) {
	t.Parallel()
	raw := readFixture(t, "vllm/chat_completion_response.json")
	reply, err := decodeChatReply(raw)
	require.NoError(t, err)
	samples, f := decodeSamples(reply)
	require.Nil(t, f)
	// Sums worked by hand from the fixture: −0.25 − 0.5 − 0.125 and
	// −1.5 − 2.0 − 0.75.
	require.Equal(t, []Sample{
		{Content: "Red.", Tokens: 3, LogProb: -0.875, FinishReason: "stop", TokenIDs: []int{6033, 13, 151645}},
		{Content: "Blue is one", Tokens: 3, LogProb: -4.25, FinishReason: "length", TokenIDs: []int{10331, 374, 825}},
	}, samples)
}

func TestChatDecodeRejectsIncompleteResponses(t *testing.T) {
	t.Parallel()
	raw := readFixture(t, "vllm/chat_completion_response.json")
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		reason string
	}{
		{
			name:   "no choices",
			edit:   func(m map[string]any) { m["choices"] = []any{} },
			reason: "server returned an empty choice list",
		},
		{
			name:   "no logprobs",
			edit:   func(m map[string]any) { choice(m, 1)["logprobs"] = nil },
			reason: "server returned no log-probs for choice 1",
		},
		{
			name:   "token ids disagree with logprobs",
			edit:   func(m map[string]any) { choice(m, 0)["token_ids"] = []int{1, 2} },
			reason: "choice 0 has 2 token ids but 3 log-probs",
		},
		{
			name: "duplicate index",
			edit: func(m map[string]any) {
				choice(m, 1)["index"] = 0
			},
			reason: "server returned choice index 0 twice",
		},
		{
			// vllm/logprobs.py clamps -inf to -9999.0.
			name: "clamped log-prob",
			edit: func(m map[string]any) {
				choice(m, 1)["logprobs"].(map[string]any)["content"].([]any)[2].(map[string]any)["logprob"] = -9999.0
			},
			reason: "choice 1 token 2 has log-prob -9999, the server's stand-in for -inf",
		},
		{
			name: "reasoning apart from content",
			edit: func(m map[string]any) {
				choice(m, 0)["message"].(map[string]any)["reasoning"] = "The user asks for a colour."
			},
			reason: "choice 0 has a reasoning part apart from its content",
		},
		{
			name: "older reasoning_content",
			edit: func(m map[string]any) {
				choice(m, 0)["message"].(map[string]any)["reasoning_content"] = "The user asks."
			},
			reason: "choice 0 has a reasoning part apart from its content",
		},
		{
			name:   "null content with log-probs",
			edit:   func(m map[string]any) { choice(m, 0)["message"].(map[string]any)["content"] = nil },
			reason: "choice 0 has log-probs for 3 tokens but no content (null)",
		},
		{
			name:   "null logprobs content with text",
			edit:   func(m map[string]any) { choice(m, 0)["logprobs"] = map[string]any{"content": nil} },
			reason: "server returned no log-probs for choice 0",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var m map[string]any
			require.NoError(t, json.Unmarshal(raw, &m))
			tc.edit(m)
			body, err := json.Marshal(m)
			require.NoError(t, err)
			reply, err := decodeChatReply(body)
			require.NoError(t, err)
			_, f := decodeSamples(reply)
			require.NotNil(t, f)
			require.False(t, f.transient)
			require.Contains(t, f.reason, tc.reason)
		})
	}
}

func choice(m map[string]any, i int) map[string]any {
	return m["choices"].([]any)[i].(map[string]any)
}

func TestChatReplyTokenIDs(t *testing.T) {
	t.Parallel()
	entry := func(tok string, id string) string {
		s := `{"token":` + tok + `,"logprob":-1,"bytes":[1],"top_logprobs":[]`
		if id != "" {
			s += `,"id":` + id
		}
		return s + "}"
	}
	tests := []struct {
		name    string
		entries []string
		extra   string
		want    []int
	}{
		{name: "vLLM token_ids win", entries: []string{entry(`"a"`, "7"), entry(`"b"`, "8")}, extra: `,"token_ids":[1,2]`, want: []int{1, 2}},
		// llama.cpp tools/server/server-common.cpp completion_token_output::to_json
		{name: "llama-server ids", entries: []string{entry(`"a"`, "7"), entry(`"b"`, "8")}, want: []int{7, 8}},
		{name: "token_id form", entries: []string{entry(`"token_id:6033"`, ""), entry(`"token_id:13"`, "")}, want: []int{6033, 13}},
		{name: "plain tokens", entries: []string{entry(`"Red"`, ""), entry(`"."`, "")}, want: nil},
		{name: "mixed forms", entries: []string{entry(`"token_id:6033"`, ""), entry(`"."`, "")}, want: nil},
		{name: "ids on some entries", entries: []string{entry(`"a"`, "7"), entry(`"b"`, "")}, want: nil},
		{name: "escaped token", entries: []string{entry(`"\n"`, "5"), entry(`"\u00e9"`, "6")}, want: []int{5, 6}},
		{name: "token_ids null", entries: []string{entry(`"a"`, "7")}, extra: `,"token_ids":null`, want: []int{7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := `{"choices":[{"index":0,"message":{"content":"x"},"logprobs":{"content":[` +
				strings.Join(tc.entries, ",") + `]},"finish_reason":"stop"` + tc.extra + `}]}`
			reply, err := decodeChatReply([]byte(body))
			require.NoError(t, err)
			require.Len(t, reply.Choices, 1)
			require.Equal(t, tc.want, reply.Choices[0].TokenIDs)
			require.Equal(t, []float64{-1, -1}[:len(tc.entries)], reply.Choices[0].LogProbs)
		})
	}
}

func TestChatReplyAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	raw := readFixture(t, "vllm/chat_completion_response.json")
	reply, err := decodeChatReply(raw)
	require.NoError(t, err)
	var want struct {
		Choices []struct {
			Index   int
			Message struct {
				Content   string
				Reasoning *string
			}
			Logprobs struct {
				Content []struct {
					Logprob float64
				}
			}
			FinishReason string `json:"finish_reason"`
			TokenIDs     []int  `json:"token_ids"`
		}
	}
	require.NoError(t, json.Unmarshal(raw, &want))
	require.Len(t, reply.Choices, len(want.Choices))
	for i, c := range want.Choices {
		got := reply.Choices[i]
		require.Equal(t, c.Index, got.Index)
		require.Equal(t, c.Message.Content, got.Content)
		require.Equal(t, c.FinishReason, got.FinishReason)
		require.Equal(t, c.TokenIDs, got.TokenIDs)
		require.Len(t, got.LogProbs, len(c.Logprobs.Content))
		for j, lp := range c.Logprobs.Content {
			require.Equal(t, lp.Logprob, got.LogProbs[j])
		}
	}
}

func TestChatReplyPromptTokenIDsAndStrings(t *testing.T) {
	t.Parallel()
	body := `{"choices":[{"index":0,"message":{"content":"a \"quoted\"\nline \u00e9 \ud83d\ude00","reasoning":null},` +
		`"logprobs":{"content":[]},"finish_reason":null}],"prompt_token_ids":[151644, 872, 198]}`
	reply, err := decodeChatReply([]byte(body))
	require.NoError(t, err)
	require.Equal(t, []int{151644, 872, 198}, reply.PromptTokenIDs)
	require.Equal(t, "a \"quoted\"\nline é 😀", reply.Choices[0].Content)
	require.True(t, reply.Choices[0].HasContent)
	require.True(t, reply.Choices[0].HasLogProbs)
	require.Empty(t, reply.Choices[0].FinishReason)

	for _, bad := range []string{`{"choices":[{"index":"0"}]}`, `{"choices":[{"index":0.5}]}`, `{"choices":{}}`,
		`{"choices":[{"logprobs":{"content":[{"token":"a"}]}}]}`, `{"choices":[]} x`, `{"choices":[],}`,
		`{"choices":[{"message":{"content":1}}]}`, `{"choices":[{"logprobs":{"content":[{"logprob":-Infinity}]}}]}`} {
		_, err := decodeChatReply([]byte(bad))
		require.Error(t, err, bad)
	}
}

func TestCompletionFixtureTeacherForcing(t *testing.T) {
	t.Parallel()
	var req completionRequest
	require.NoError(t, json.Unmarshal(readFixture(t, "vllm/completion_request.json"), &req))
	var resp completionResponse
	require.NoError(t, json.Unmarshal(readFixture(t, "vllm/completion_response.json"), &resp))

	// The response is the last three prompt tokens (Red . <|im_end|>):
	// −2.5 − 0.75 − 0.25 by hand.
	sum, f := resp.teacherForced(req.Prompt, 3)
	require.Nil(t, f)
	require.Equal(t, -3.5, sum)

	tests := []struct {
		name   string
		ids    []int
		from   int
		reason string
	}{
		{name: "scored token differs", ids: []int{151644, 872, 198, 6033, 14, 151645}, from: 3, reason: "does not score token id 14"},
		{name: "length differs", ids: []int{151644, 872, 198}, from: 1, reason: "prompt_logprobs has 6 entries for a 3-token prompt"},
		{name: "first position is null", ids: req.Prompt, from: 0, reason: "prompt_logprobs[0] is null"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, f := resp.teacherForced(tc.ids, tc.from)
			require.NotNil(t, f)
			require.Contains(t, f.reason, tc.reason)
		})
	}
}

func TestPoolingAndRewardFixturesDecode(t *testing.T) {
	t.Parallel()
	var tok tokenizeResponse
	require.NoError(t, json.Unmarshal(readFixture(t, "vllm/tokenize_response.json"), &tok))
	require.Nil(t, tok.check())
	require.Equal(t, []int{6033, 13}, tok.Tokens)

	var cls classifyResponse
	require.NoError(t, json.Unmarshal(readFixture(t, "vllm/classify_response.json"), &cls))
	scores, f := cls.scores(2)
	require.Nil(t, f)
	require.Equal(t, []float64{3.25, -1.5}, scores)
	_, f = cls.scores(3)
	require.NotNil(t, f)
	require.Contains(t, f.reason, "classify returned 2 results for 3 inputs")

	// Pooling: a vector scores by its last value, a per-token matrix by its
	// last row.
	var pool poolingResponse
	require.NoError(t, json.Unmarshal(readFixture(t, "vllm/pooling_response.json"), &pool))
	scores, f = pool.scores(2)
	require.Nil(t, f)
	require.Equal(t, []float64{1.75, -2.0}, scores)

	var rew getRewardResponse
	require.NoError(t, json.Unmarshal(readFixture(t, "openrlhf/get_reward_response.json"), &rew))
	require.Nil(t, rew.check(2))
	require.Equal(t, []float64{0.875, -0.25}, rew.Rewards)

	for _, name := range []string{"vllm/error_response.json", "vllm/error_response_flat.json"} {
		require.Equal(t, "The model `missing-model` does not exist.", errorReason(readFixture(t, name)), name)
	}
}

func TestMergeJSONFields(t *testing.T) {
	t.Parallel()
	got, err := mergeJSONFields([]byte(`{"model":"m","n":2,"return_token_ids":true}`), map[string]any{
		"top_k": 20, "return_token_ids": nil, "n": 3,
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"model":"m","n":3,"top_k":20}`, string(got))
	_, err = mergeJSONFields([]byte(`[1]`), map[string]any{"a": 1})
	require.ErrorContains(t, err, "not a JSON object")
}

func TestAppendJSONFieldsMatchesGeneralMerge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		fields map[string]any
		fast   bool
	}{
		{name: "new fields", body: `{"model":"m","n":2}`, fields: map[string]any{"top_k": 20, "seed": 3}, fast: true},
		{name: "empty object", body: `{ }`, fields: map[string]any{"a": "x"}, fast: true},
		{name: "override", body: `{"model":"m","n":2}`, fields: map[string]any{"n": 3}},
		{name: "delete", body: `{"model":"m","n":2}`, fields: map[string]any{"n": nil}},
		{name: "quoted key text inside a string", body: `{"content":"say \"n\" twice"}`, fields: map[string]any{"n": 1}, fast: true},
		{name: "nested key takes the general path", body: `{"meta":{"n":1}}`, fields: map[string]any{"n": 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, fast := appendJSONFields([]byte(tc.body), tc.fields)
			require.Equal(t, tc.fast, fast)
			got, err := mergeJSONFields([]byte(tc.body), tc.fields)
			require.NoError(t, err)
			var want map[string]any
			require.NoError(t, json.Unmarshal([]byte(tc.body), &want))
			for k, v := range tc.fields {
				if v == nil {
					delete(want, k)
				} else {
					want[k] = v
				}
			}
			wantJSON, err := json.Marshal(want)
			require.NoError(t, err)
			require.JSONEq(t, string(wantJSON), string(got))
		})
	}
}

// TestModelListMaxModelLen reads the context length that serves a model
// from /v1/models as vLLM (ModelCard, vllm/entrypoints/openai/models/
// serving.py: base cards carry max_model_len, adapter cards a parent and
// none), llama.cpp's server (meta.n_ctx, its context per slot) and an
// OpenAI-style server (nothing) write it.
func TestModelListMaxModelLen(t *testing.T) {
	t.Parallel()
	vllm := `{"object":"list","data":[
		{"id":"policy-0","object":"model","owned_by":"vllm","root":"Qwen/Qwen2.5-1.5B-Instruct","parent":null,"max_model_len":4096},
		{"id":"policy-1","object":"model","owned_by":"vllm","root":"/adapters/policy-1","parent":"policy-0","max_model_len":null}]}`
	for _, tc := range []struct {
		name, body, model string
		want              int
	}{
		{"vllm base", vllm, "policy-0", 4096},
		{"vllm adapter: its parent's", vllm, "policy-1", 4096},
		{"vllm adapter not loaded yet: the base's", vllm, "policy-2", 4096},
		{"two bases, model not listed: the longest", `{"data":[{"id":"a","max_model_len":2048},{"id":"b","max_model_len":8192}]}`, "c", 8192},
		{"llama.cpp", `{"object":"list","data":[{"id":"tiny","object":"model","owned_by":"llamacpp","meta":{"n_ctx":1024,"n_ctx_train":4096}}]}`, "tiny", 1024},
		{"openai style", `{"object":"list","data":[{"id":"gpt","object":"model","created":1,"owned_by":"openai"}]}`, "gpt", 0},
		{"listed without a length", `{"data":[{"id":"a","max_model_len":2048},{"id":"b"}]}`, "b", 0},
		{"empty list", `{"data":[]}`, "a", 0},
	} {
		var l modelList
		require.NoError(t, json.Unmarshal([]byte(tc.body), &l), tc.name)
		require.Equal(t, tc.want, l.maxModelLen(tc.model), tc.name)
	}
}
