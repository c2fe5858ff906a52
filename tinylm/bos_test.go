package tinylm_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// pastaChat is the worked reward example of tinylm/README.md (score 3.0)
// as a conversation. With the template it is
//
//	<|bos|> <|user|> how do i cook pasta ? <|end|> <|assistant|> cook the pasta in salty water . <|end|>
//
// 1 + 1 + 6 + 1 + 1 + 7 + 1 = 18 tokens.
var pastaChat = []map[string]string{
	{"role": "user", "content": "How do I cook pasta?"},
	{"role": "assistant", "content": "Cook the pasta in salty water."},
}

const pastaTokens = 18

// pastaRendered is pastaChat rendered with the template, as a client that
// batches rendered input (selfplay's chat_template: tinylm) sends it.
const pastaRendered = "<|bos|> <|user|> How do I cook pasta? <|end|> <|assistant|> Cook the pasta in salty water. <|end|>"

// countBOS counts the BOS tokens in ids.
func countBOS(ids []int, bos int) int {
	n := 0
	for _, id := range ids {
		if id == bos {
			n++
		}
	}
	return n
}

// /tokenize follows vLLM's TokenizeCompletionRequest and TokenizeChatRequest
// (vllm/entrypoints/serve/tokenize/protocol.py): a prompt gets BOS in front
// unless add_special_tokens is false (default true); the chat form is
// rendered with the template, which writes BOS itself, and
// add_special_tokens (default false) adds another on top, as a Hugging Face
// tokenizer with a BOS token does.
func TestTokenizeBOS(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	tok := tinylm.Builtin().Tok
	bos := tok.BOS()
	require.Equal(t, 885, bos, "BOS is one past the last of the built-in model's 885 words")
	words := tok.Encode("how do i cook rice ?")
	require.Len(t, words, 6)

	var def, off tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"prompt": "How do I cook rice?", "return_token_strs": true}, &def)
	require.Equal(t, append([]int{bos}, words...), def.Tokens, "add_special_tokens defaults to true for a prompt")
	require.Equal(t, 7, def.Count)
	require.Equal(t, "<|bos|>", def.TokenStrs[0])
	ok(t, base, "/tokenize", map[string]any{"prompt": "How do I cook rice?", "add_special_tokens": false}, &off)
	require.Equal(t, words, off.Tokens)
	require.Equal(t, 6, off.Count)

	// The literal text <|bos|> is the BOS token, as a special token's text
	// is for an HF tokenizer.
	var lit tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"prompt": "<|bos|> How do I cook rice?", "add_special_tokens": false}, &lit)
	require.Equal(t, def.Tokens, lit.Tokens)

	// Chat form: exactly one BOS, at the start, written by the template.
	var chat, chatTwice tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"messages": userMsg("How do I cook rice?")}, &chat)
	want := append(append([]int{bos, tinylm.UserID}, words...), tinylm.EndID, tinylm.AssistantID)
	require.Equal(t, want, chat.Tokens)
	require.Equal(t, 1, countBOS(chat.Tokens, bos))
	ok(t, base, "/tokenize", map[string]any{"messages": userMsg("How do I cook rice?"), "add_special_tokens": true}, &chatTwice)
	require.Equal(t, append([]int{bos}, want...), chatTwice.Tokens, "add_special_tokens true puts a second BOS in front of the template's")

	// The rendered template as a prompt: equal to the chat form only with
	// add_special_tokens false; by default the BOS appears twice.
	rendered, err := tinylm.RenderChatTemplate([]tinylm.Message{{Role: "user", Content: "How do I cook rice?"}}, true)
	require.NoError(t, err)
	require.Equal(t, "<|bos|> <|user|> how do i cook rice? <|end|> <|assistant|>", rendered)
	var rOff, rDef tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"prompt": rendered, "add_special_tokens": false}, &rOff)
	require.Equal(t, chat.Tokens, rOff.Tokens)
	ok(t, base, "/tokenize", map[string]any{"prompt": rendered}, &rDef)
	require.Equal(t, chatTwice.Tokens, rDef.Tokens)
	require.Equal(t, 2, countBOS(rDef.Tokens, bos))

	// /detokenize writes BOS as its text.
	var d struct {
		Prompt string `json:"prompt"`
	}
	ok(t, base, "/detokenize", map[string]any{"tokens": rDef.Tokens}, &d)
	require.Equal(t, "<|bos|> <|bos|> <|user|> how do i cook rice? <|end|> <|assistant|>", d.Prompt)
}

// /classify and /pooling follow vLLM's pooling protocol
// (vllm/entrypoints/pooling/base/protocol.py): input text goes through
// CompletionRequestMixin, whose add_special_tokens defaults to true, and
// messages through ChatRequestOptionsMixin, whose add_special_tokens
// defaults to false because the template writes the BOS. Rendered text that
// starts with the template's BOS therefore gets a second one unless the
// client sends add_special_tokens false: usage.prompt_tokens counts it and
// token_classify has a row for it. (tinylm's reward reads words only, so
// the score stays 3.0; a real reward model's would move.)
func TestClassifyPoolingDoubledBOS(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	type usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
	type clsResp struct {
		Data []struct {
			Probs []float64 `json:"probs"`
		} `json:"data"`
		Usage usage `json:"usage"`
	}
	type poolResp struct {
		Data []struct {
			Data json.RawMessage `json:"data"`
		} `json:"data"`
		Usage usage `json:"usage"`
	}
	tests := []struct {
		name   string
		body   map[string]any
		tokens int
	}{
		{"rendered input, add_special_tokens default (true): two BOS", map[string]any{"input": pastaRendered}, pastaTokens + 1},
		{"rendered input, add_special_tokens false: one BOS", map[string]any{"input": pastaRendered, "add_special_tokens": false}, pastaTokens},
		{"chat form, add_special_tokens default (false): the template's BOS", map[string]any{"messages": pastaChat}, pastaTokens},
		{"chat form, add_special_tokens true: two BOS", map[string]any{"messages": pastaChat, "add_special_tokens": true}, pastaTokens + 1},
		{"list of two rendered inputs, false", map[string]any{"input": []string{pastaRendered, pastaRendered}, "add_special_tokens": false}, 2 * pastaTokens},
		{"list of two rendered inputs, default", map[string]any{"input": []string{pastaRendered, pastaRendered}}, 2 * (pastaTokens + 1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := map[string]any{"model": "reward", "use_activation": false}
			for k, v := range tc.body {
				body[k] = v
			}
			var c clsResp
			ok(t, base, "/classify", body, &c)
			require.Equal(t, tc.tokens, c.Usage.PromptTokens)
			require.Equal(t, tc.tokens, c.Usage.TotalTokens)
			for _, d := range c.Data {
				require.InDelta(t, 3.0, d.Probs[0], 1e-12)
			}

			var p poolResp
			ok(t, base, "/pooling", body, &p)
			require.Equal(t, tc.tokens, p.Usage.PromptTokens)

			body["task"] = "token_classify"
			var tk poolResp
			ok(t, base, "/pooling", body, &tk)
			rows := 0
			for _, d := range tk.Data {
				var r [][]float64
				require.NoError(t, json.Unmarshal(d.Data, &r))
				require.InDelta(t, 3.0, r[len(r)-1][0], 1e-12)
				rows += len(r)
			}
			require.Equal(t, tc.tokens, rows, "one row per token, BOS included")
		})
	}
}

// Chat completions follow vLLM's ChatCompletionRequest
// (vllm/entrypoints/openai/chat_completion/protocol.py): the template
// writes BOS and add_special_tokens defaults to false, so prompt_token_ids
// start with exactly one BOS and usage.prompt_tokens counts it. BOS carries
// no parameters in tinylm, so the reply is the one the BOS-less prompt gets
// (Generate on EncodeChat), and a second BOS changes only the prompt ids.
func TestChatBOS(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	m := tinylm.Builtin()
	bos := m.Tok.BOS()
	msgs := []tinylm.Message{{Role: "user", Content: "How do I feed my puppy?"}}
	plain, err := m.Tok.EncodeChat(msgs, true)
	require.NoError(t, err)
	g, err := m.Generate(plain, tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 40}, tinylm.NewRand(7))
	require.NoError(t, err)

	body := map[string]any{"messages": userMsg("How do I feed my puppy?"), "seed": 7, "temperature": 0.8, "top_p": 0.95, "max_tokens": 40, "return_token_ids": true}
	r := chatSample(t, base, body)
	require.Equal(t, append([]int{bos}, plain...), r.PromptTokenIDs)
	require.Equal(t, len(plain)+1, r.Usage.PromptTokens)
	require.Equal(t, g.IDs, r.Choices[0].TokenIDs, "the same tokens as without BOS")
	require.Equal(t, m.Tok.Decode(g.IDs, true), r.Choices[0].Message.Content)
	require.NotContains(t, r.Choices[0].Message.Content, "<|bos|>")

	body["add_special_tokens"] = true
	r2 := chatSample(t, base, body)
	require.Equal(t, append([]int{bos, bos}, plain...), r2.PromptTokenIDs)
	require.Equal(t, len(plain)+2, r2.Usage.PromptTokens)
	require.Equal(t, g.IDs, r2.Choices[0].TokenIDs)
}

// Teacher forcing over prompt_token_ids that start with BOS (what the
// reference scorer sends back to /v1/completions) scores every later token
// exactly as without it; a BOS in the middle, which the model never
// predicts, scores -9999.0, vLLM's value for a log-prob of -inf
// (vllm/entrypoints/openai/completion/protocol.py CompletionRequest takes
// token-id prompts as given, without adding BOS).
func TestCompletionsBOSNeutral(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	m := tinylm.Builtin()
	bos := m.Tok.BOS()
	seq := m.Tok.Encode("<|user|> how do i cook rice ? <|end|> <|assistant|> boil it in water . <|end|>")

	score := func(prompt []int) []promptLP {
		var r completionResp
		ok(t, base, "/v1/completions", map[string]any{"prompt": prompt, "max_tokens": 1, "prompt_logprobs": 0, "return_token_ids": true}, &r)
		require.Equal(t, prompt, r.Choices[0].PromptTokenIDs, "token ids are taken as given")
		require.Equal(t, len(prompt), r.Usage.PromptTokens)
		return r.Choices[0].PromptLogprobs
	}
	without := score(seq)
	with := score(append([]int{bos}, seq...))
	twice := score(append([]int{bos, bos}, seq...))
	require.Len(t, with, len(seq)+1)
	require.Nil(t, with[0])
	for i := 1; i < len(seq); i++ {
		key := fmt.Sprint(seq[i])
		require.Equal(t, without[i][key].Logprob, with[i+1][key].Logprob, "position %d", i)
		require.Equal(t, without[i][key].Logprob, twice[i+2][key].Logprob, "position %d", i)
	}
	second := twice[1][fmt.Sprint(bos)]
	require.Equal(t, -9999.0, second.Logprob)
	require.Equal(t, "<|bos|>", second.DecodedToken)
	require.Equal(t, m.V()+1, second.Rank, "below every word")

	// A text prompt gets BOS (add_special_tokens defaults to true), and the
	// continuation is the one the text gets without it.
	var txt, noBOS completionResp
	ok(t, base, "/v1/completions", map[string]any{"prompt": "<|user|> how do i cook rice ? <|end|> <|assistant|>", "max_tokens": 10, "temperature": 0, "return_token_ids": true}, &txt)
	ok(t, base, "/v1/completions", map[string]any{"prompt": "<|user|> how do i cook rice ? <|end|> <|assistant|>", "max_tokens": 10, "temperature": 0, "return_token_ids": true, "add_special_tokens": false}, &noBOS)
	require.Equal(t, bos, txt.Choices[0].PromptTokenIDs[0])
	require.Equal(t, noBOS.Choices[0].PromptTokenIDs, txt.Choices[0].PromptTokenIDs[1:])
	require.Equal(t, noBOS.Choices[0].TokenIDs, txt.Choices[0].TokenIDs)
	require.Equal(t, noBOS.Usage.PromptTokens+1, txt.Usage.PromptTokens)

	// Out of range: one past BOS.
	status, _, raw := call(t, base, "/v1/completions", map[string]any{"prompt": []int{bos + 1}, "max_tokens": 1})
	require.Equal(t, 400, status, "%s", raw)
	require.Contains(t, string(raw), "outside the vocabulary")
}
