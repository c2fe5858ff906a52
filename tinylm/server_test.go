package tinylm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// call sends body (a string or a value marshalled as JSON) to base+path
// (GET when body is nil) and returns the status, headers and raw body.
func call(t *testing.T, base, path string, body any) (int, http.Header, []byte) {
	t.Helper()
	var req *http.Request
	var err error
	if body == nil {
		req, err = http.NewRequest(http.MethodGet, base+path, nil)
	} else {
		var b []byte
		if s, ok := body.(string); ok {
			b = []byte(s)
		} else {
			b, err = json.Marshal(body)
			require.NoError(t, err)
		}
		req, err = http.NewRequest(http.MethodPost, base+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
	}
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, raw
}

// ok posts and decodes a 200 answer into out.
func ok(t *testing.T, base, path string, body, out any) {
	t.Helper()
	status, _, raw := call(t, base, path, body)
	require.Equal(t, http.StatusOK, status, "body: %s", raw)
	require.NoError(t, json.Unmarshal(raw, out), "body: %s", raw)
}

// The test's own view of the response shapes, with vLLM's field names.
type chatResp struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index   int `json:"index"`
		Message struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"message"`
		Logprobs *struct {
			Content []struct {
				Token       string  `json:"token"`
				Logprob     float64 `json:"logprob"`
				Bytes       []int   `json:"bytes"`
				TopLogprobs []struct {
					Token   string  `json:"token"`
					Logprob float64 `json:"logprob"`
				} `json:"top_logprobs"`
			} `json:"content"`
		} `json:"logprobs"`
		FinishReason string `json:"finish_reason"`
		TokenIDs     []int  `json:"token_ids"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	PromptTokenIDs []int `json:"prompt_token_ids"`
}

type promptLP map[string]struct {
	Logprob      float64 `json:"logprob"`
	Rank         int     `json:"rank"`
	DecodedToken string  `json:"decoded_token"`
}

type completionResp struct {
	Object  string `json:"object"`
	Choices []struct {
		Index    int    `json:"index"`
		Text     string `json:"text"`
		Logprobs *struct {
			TextOffset    []int                `json:"text_offset"`
			TokenLogprobs []*float64           `json:"token_logprobs"`
			Tokens        []string             `json:"tokens"`
			TopLogprobs   []map[string]float64 `json:"top_logprobs"`
		} `json:"logprobs"`
		FinishReason   string     `json:"finish_reason"`
		PromptLogprobs []promptLP `json:"prompt_logprobs"`
		PromptTokenIDs []int      `json:"prompt_token_ids"`
		TokenIDs       []int      `json:"token_ids"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

type errResp struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    int     `json:"code"`
	} `json:"error"`
}

type tokenizeResp struct {
	Count       int      `json:"count"`
	MaxModelLen int      `json:"max_model_len"`
	Tokens      []int    `json:"tokens"`
	TokenStrs   []string `json:"token_strs"`
}

type classifyResp struct {
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index      int       `json:"index"`
		Probs      []float64 `json:"probs"`
		NumClasses int       `json:"num_classes"`
	} `json:"data"`
}

func userMsg(content string) []map[string]string {
	return []map[string]string{{"role": "user", "content": content}}
}

func TestHealthAndModels(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{
		Models:      map[string]*tinylm.Model{"tiny-0": tinylm.Builtin(), "tiny-1": tinylm.Builtin()},
		RewardModel: "judge",
	})
	status, _, _ := call(t, base, "/health", nil)
	require.Equal(t, http.StatusOK, status)
	var list struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			Object      string `json:"object"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	ok(t, base, "/v1/models", nil, &list)
	require.Equal(t, "list", list.Object)
	var ids []string
	for _, d := range list.Data {
		require.Equal(t, "model", d.Object)
		require.Equal(t, tinylm.DefaultMaxModelLen, d.MaxModelLen)
		ids = append(ids, d.ID)
	}
	require.Equal(t, []string{"tiny-0", "tiny-1", "judge"}, ids)
}

func TestChatCompletionShape(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	msgs := userMsg("How do I cook pasta?")
	var r chatResp
	ok(t, base, "/v1/chat/completions", map[string]any{
		"model": "tiny-0", "messages": msgs, "n": 3, "logprobs": true, "top_logprobs": 2,
		"seed": 5, "temperature": 0.8, "top_p": 0.95, "max_tokens": 60, "return_token_ids": true,
	}, &r)
	require.True(t, strings.HasPrefix(r.ID, "chatcmpl-"))
	require.Equal(t, "chat.completion", r.Object)
	require.Equal(t, "tiny-0", r.Model)
	require.Len(t, r.Choices, 3)

	var tk tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"model": "tiny-0", "messages": msgs, "add_generation_prompt": true}, &tk)
	require.Equal(t, tk.Tokens, r.PromptTokenIDs, "prompt_token_ids are the chat template's tokens")
	require.Equal(t, len(tk.Tokens), r.Usage.PromptTokens)

	tok := tinylm.Builtin().Tok
	completion := 0
	for i, c := range r.Choices {
		require.Equal(t, i, c.Index)
		require.Equal(t, "assistant", c.Message.Role)
		require.NotEmpty(t, c.TokenIDs)
		require.LessOrEqual(t, len(c.TokenIDs), 60)
		require.Equal(t, tok.Decode(c.TokenIDs, true), c.Message.Content)
		require.NotNil(t, c.Logprobs)
		require.Len(t, c.Logprobs.Content, len(c.TokenIDs), "one logprob entry per token, <|end|> included")
		for j, e := range c.Logprobs.Content {
			require.Equal(t, tok.Token(c.TokenIDs[j]), e.Token)
			require.Equal(t, len(e.Token), len(e.Bytes))
			require.Less(t, e.Logprob, 0.0)
			require.Len(t, e.TopLogprobs, 2)
			require.GreaterOrEqual(t, e.TopLogprobs[0].Logprob, e.TopLogprobs[1].Logprob)
			require.GreaterOrEqual(t, e.TopLogprobs[0].Logprob, e.Logprob)
		}
		last := c.TokenIDs[len(c.TokenIDs)-1]
		if c.FinishReason == "stop" {
			require.Equal(t, tinylm.EndID, last)
		} else {
			require.Equal(t, "length", c.FinishReason)
			require.Len(t, c.TokenIDs, 60)
		}
		completion += len(c.TokenIDs)
	}
	require.Equal(t, completion, r.Usage.CompletionTokens)
	require.Equal(t, r.Usage.PromptTokens+completion, r.Usage.TotalTokens)

	// Without logprobs and token ids those fields are null / absent.
	var raw map[string]any
	ok(t, base, "/v1/chat/completions", map[string]any{"messages": msgs, "max_tokens": 5}, &raw)
	choice := raw["choices"].([]any)[0].(map[string]any)
	require.Nil(t, choice["logprobs"])
	require.NotContains(t, choice, "token_ids")
	require.NotContains(t, raw, "prompt_token_ids")

	// Content may also come as a list of text parts.
	var parts chatResp
	ok(t, base, "/v1/chat/completions", map[string]any{
		"messages":    []map[string]any{{"role": "user", "content": []map[string]string{{"type": "text", "text": "How do I cook pasta?"}}}},
		"temperature": 0, "max_tokens": 10, "return_token_ids": true,
	}, &parts)
	require.Equal(t, tk.Tokens, parts.PromptTokenIDs)
}

func chatSample(t *testing.T, base string, body map[string]any) chatResp {
	t.Helper()
	var r chatResp
	ok(t, base, "/v1/chat/completions", body, &r)
	return r
}

func TestChatSeedDeterminism(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	body := func(n int, seed any) map[string]any {
		b := map[string]any{"messages": userMsg("What should I know about coffee?"), "n": n, "temperature": 1, "max_tokens": 40, "return_token_ids": true}
		if seed != nil {
			b["seed"] = seed
		}
		return b
	}
	a := chatSample(t, base, body(4, 17))
	b := chatSample(t, base, body(4, 17))
	distinct := map[string]bool{}
	for i := range a.Choices {
		require.Equal(t, a.Choices[i].TokenIDs, b.Choices[i].TokenIDs, "same seed, same text")
		one := chatSample(t, base, body(1, 17+i))
		require.Equal(t, a.Choices[i].TokenIDs, one.Choices[0].TokenIDs, "choice i of seed s is the n=1 sample of seed s+i")
		distinct[a.Choices[i].Message.Content] = true
	}
	require.Greater(t, len(distinct), 1, "the n choices differ")

	// Without a seed two requests almost surely differ.
	x := chatSample(t, base, body(4, nil))
	y := chatSample(t, base, body(4, nil))
	var same int
	for i := range x.Choices {
		if x.Choices[i].Message.Content == y.Choices[i].Message.Content {
			same++
		}
	}
	require.Less(t, same, 4)
}

// greedy decodes with the model directly: argmax of the logits each step.
func greedy(m *tinylm.Model, prompt []int, maxTokens int) []int {
	z := make([]float64, m.V())
	prev := prompt[len(prompt)-1]
	var out []int
	for len(out) < maxTokens {
		m.Logits(prompt, prev, z)
		best := 0
		for v := range z {
			if z[v] > z[best] {
				best = v
			}
		}
		out = append(out, best)
		if best == tinylm.EndID {
			break
		}
		prev = best
	}
	return out
}

func TestChatTemperatureZeroAndTopP(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	m := tinylm.Builtin()
	msgs := userMsg("How do I feed my puppy?")
	prompt, err := m.Tok.EncodeChat([]tinylm.Message{{Role: "user", Content: "How do I feed my puppy?"}}, true)
	require.NoError(t, err)
	want := greedy(m, prompt, 30)

	// Greedy sampling takes n = 1, as in vLLM (vllm/sampling_params.py
	// _verify_greedy_sampling).
	for _, seed := range []int{1, 2} {
		g := chatSample(t, base, map[string]any{"messages": msgs, "seed": seed, "temperature": 0, "max_tokens": 30, "return_token_ids": true})
		require.Equal(t, want, g.Choices[0].TokenIDs, "temperature 0 is greedy, whatever the seed")
	}
	// A tiny top_p keeps only the most likely token: greedy at any temperature.
	p := chatSample(t, base, map[string]any{"messages": msgs, "n": 3, "temperature": 1.5, "top_p": 1e-9, "max_tokens": 30, "return_token_ids": true})
	for _, c := range p.Choices {
		require.Equal(t, want, c.TokenIDs)
	}
}

func TestChatMaxTokens(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	tests := []struct {
		name string
		body map[string]any
		max  int
	}{
		{name: "max_tokens", body: map[string]any{"max_tokens": 3}, max: 3},
		{name: "max_completion_tokens wins", body: map[string]any{"max_tokens": 50, "max_completion_tokens": 2}, max: 2},
		{name: "default", body: map[string]any{}, max: tinylm.DefaultMaxTokens},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.body["messages"] = userMsg("any tips on money and budget?")
			tc.body["n"] = 8
			tc.body["seed"] = 1
			tc.body["return_token_ids"] = true
			r := chatSample(t, base, tc.body)
			for _, c := range r.Choices {
				require.LessOrEqual(t, len(c.TokenIDs), tc.max)
				if len(c.TokenIDs) == tc.max && c.TokenIDs[tc.max-1] != tinylm.EndID {
					require.Equal(t, "length", c.FinishReason)
				} else {
					require.Equal(t, "stop", c.FinishReason)
				}
			}
		})
	}
}

// TestSampledAndTeacherForcedLogProbsAgree is the consistency test: the
// sum of a sampled response's token log-probs from chat completions equals
// its teacher-forced log-prob from /v1/completions with token ids and
// prompt_logprobs.
func TestSampledAndTeacherForcedLogProbsAgree(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	msgs := []map[string]string{{"role": "system", "content": "You give practical everyday advice."}, {"role": "user", "content": "How often should I water my garden?"}}
	r := chatSample(t, base, map[string]any{"messages": msgs, "n": 6, "seed": 9, "temperature": 0.8, "top_p": 0.95, "logprobs": true, "return_token_ids": true, "max_tokens": 40})
	for _, c := range r.Choices {
		var sampled float64
		for _, e := range c.Logprobs.Content {
			sampled += e.Logprob
		}
		seq := append(append([]int(nil), r.PromptTokenIDs...), c.TokenIDs...)
		var cr completionResp
		ok(t, base, "/v1/completions", map[string]any{"prompt": seq, "max_tokens": 1, "prompt_logprobs": 0}, &cr)
		plp := cr.Choices[0].PromptLogprobs
		require.Len(t, plp, len(seq))
		require.Nil(t, plp[0], "the first prompt position is null")
		var forced float64
		for i := len(r.PromptTokenIDs); i < len(seq); i++ {
			e, found := plp[i][fmt.Sprint(seq[i])]
			require.True(t, found, "position %d has the actual token", i)
			forced += e.Logprob
		}
		require.InDelta(t, sampled, forced, 1e-6)

		// The text path gives the same ids: tokenize the conversation with
		// the response appended as the assistant turn.
		if c.FinishReason == "stop" {
			var tk tokenizeResp
			full := append(append([]map[string]string(nil), msgs...), map[string]string{"role": "assistant", "content": c.Message.Content})
			ok(t, base, "/tokenize", map[string]any{"messages": full, "add_generation_prompt": false}, &tk)
			require.Equal(t, seq, tk.Tokens)
		}
	}
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	tok := tinylm.Builtin().Tok

	t.Run("echo with max_tokens 0 returns the prompt", func(t *testing.T) {
		t.Parallel()
		var r completionResp
		ok(t, base, "/v1/completions", map[string]any{"prompt": "how do i cook rice ?", "max_tokens": 0, "echo": true, "logprobs": 1, "prompt_logprobs": 2}, &r)
		require.Equal(t, "text_completion", r.Object)
		c := r.Choices[0]
		require.Equal(t, "how do i cook rice ?", c.Text)
		require.Equal(t, "length", c.FinishReason)
		// add_special_tokens defaults to true for a completions prompt
		// (vllm/entrypoints/openai/completion/protocol.py): BOS comes first.
		require.Equal(t, []string{"<|bos|>", "how", "do", "i", "cook", "rice", "?"}, c.Logprobs.Tokens)
		require.Equal(t, []int{0, 0, 4, 7, 9, 14, 19}, c.Logprobs.TextOffset)
		require.Nil(t, c.Logprobs.TokenLogprobs[0])
		require.Nil(t, c.Logprobs.TopLogprobs[0])
		require.Nil(t, c.PromptLogprobs[0])
		for i := 1; i < 7; i++ {
			id := tok.Encode(c.Logprobs.Tokens[i])[0]
			e := c.PromptLogprobs[i][fmt.Sprint(id)]
			require.Equal(t, *c.Logprobs.TokenLogprobs[i], e.Logprob, "echo logprobs equal prompt_logprobs")
			require.Equal(t, c.Logprobs.Tokens[i], e.DecodedToken)
			require.GreaterOrEqual(t, len(c.PromptLogprobs[i]), 2, "top 2 plus the actual token")
			require.LessOrEqual(t, len(c.PromptLogprobs[i]), 3)
			require.Contains(t, c.Logprobs.TopLogprobs[i], c.Logprobs.Tokens[i])
			for _, x := range c.PromptLogprobs[i] {
				if x.Rank == 1 {
					require.GreaterOrEqual(t, x.Logprob, e.Logprob)
				}
			}
		}
		require.Equal(t, 7, r.Usage.PromptTokens)
		require.Zero(t, r.Usage.CompletionTokens)
	})

	t.Run("batch of token-id prompts with n", func(t *testing.T) {
		t.Parallel()
		p1 := tok.Encode("<|user|> how do i bake a cake ? <|end|> <|assistant|>")
		p2 := tok.Encode("<|user|> how do i fix my car ? <|end|> <|assistant|>")
		var r completionResp
		ok(t, base, "/v1/completions", map[string]any{"prompt": [][]int{p1, p2}, "n": 2, "max_tokens": 20, "seed": 3, "logprobs": 0, "return_token_ids": true}, &r)
		require.Len(t, r.Choices, 4)
		for i, c := range r.Choices {
			require.Equal(t, i, c.Index)
			want := p1
			if i >= 2 {
				want = p2
			}
			require.Equal(t, want, c.PromptTokenIDs)
			require.Equal(t, tok.Decode(c.TokenIDs, true), c.Text)
			require.Len(t, c.Logprobs.Tokens, len(c.TokenIDs))
			require.Nil(t, c.PromptLogprobs, "prompt_logprobs not requested")
			for j, lp := range c.Logprobs.TokenLogprobs {
				require.NotNil(t, lp)
				require.Equal(t, map[string]float64{c.Logprobs.Tokens[j]: *lp}, c.Logprobs.TopLogprobs[j], "logprobs 0: just the sampled token")
			}
		}
		require.Equal(t, len(p1)+len(p2), r.Usage.PromptTokens, "each prompt counted once, whatever n")
	})

	t.Run("string batch and echo of generated text", func(t *testing.T) {
		t.Parallel()
		var r completionResp
		ok(t, base, "/v1/completions", map[string]any{"prompt": []string{"good luck", "have fun with"}, "max_tokens": 4, "temperature": 0, "echo": true}, &r)
		require.Len(t, r.Choices, 2)
		require.True(t, strings.HasPrefix(r.Choices[0].Text, "good luck"))
		require.True(t, strings.HasPrefix(r.Choices[1].Text, "have fun with"))
	})
}

func TestTokenize(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	tok := tinylm.Builtin().Tok
	var r tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"prompt": "How do I cook rice?", "return_token_strs": true, "add_special_tokens": false}, &r)
	require.Equal(t, []string{"how", "do", "i", "cook", "rice", "?"}, r.TokenStrs)
	require.Equal(t, tok.Encode("how do i cook rice ?"), r.Tokens)
	require.Equal(t, 6, r.Count)
	require.Equal(t, tinylm.DefaultMaxModelLen, r.MaxModelLen)

	msgs := userMsg("How do I cook rice?")
	var withGen, noGen, cont tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"messages": msgs}, &withGen)
	require.Equal(t, append(append([]int{tok.BOS(), tinylm.UserID}, r.Tokens...), tinylm.EndID, tinylm.AssistantID), withGen.Tokens, "add_generation_prompt defaults to true; the template writes BOS")
	ok(t, base, "/tokenize", map[string]any{"messages": msgs, "add_generation_prompt": false}, &noGen)
	require.Equal(t, withGen.Tokens[:len(withGen.Tokens)-1], noGen.Tokens)
	asst := append(msgs, map[string]string{"role": "assistant", "content": "Boil it"})
	ok(t, base, "/tokenize", map[string]any{"messages": asst, "add_generation_prompt": false, "continue_final_message": true}, &cont)
	require.Equal(t, tinylm.AssistantID, cont.Tokens[len(cont.Tokens)-3], "the final message stays open")
	require.NotEqual(t, tinylm.EndID, cont.Tokens[len(cont.Tokens)-1])

	var d struct {
		Prompt string `json:"prompt"`
	}
	ok(t, base, "/detokenize", map[string]any{"tokens": withGen.Tokens}, &d)
	require.Equal(t, "<|bos|> <|user|> how do i cook rice? <|end|> <|assistant|>", d.Prompt)
}

func TestClassify(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	// Hand-worked in reward_test.go: relevance 1, ending +0.5, no
	// repetition, 6 words (−0.5) → 3.0.
	good := "<|user|> How do I cook pasta? <|end|> <|assistant|> Cook the pasta in salty water. <|end|>"
	empty := "<|user|> How do I cook pasta? <|end|> <|assistant|> <|end|>" // −3.5

	var raw classifyResp
	ok(t, base, "/classify", map[string]any{"model": "reward", "input": []string{good, empty}, "use_activation": false}, &raw)
	require.Equal(t, "list", raw.Object)
	require.Equal(t, "reward", raw.Model)
	require.Len(t, raw.Data, 2)
	for i, d := range raw.Data {
		require.Equal(t, i, d.Index)
		require.Equal(t, 1, d.NumClasses)
		require.Len(t, d.Probs, 1)
	}
	require.InDelta(t, 3.0, raw.Data[0].Probs[0], 1e-12)
	require.InDelta(t, -3.5, raw.Data[1].Probs[0], 1e-12)

	var act classifyResp
	ok(t, base, "/classify", map[string]any{"input": good}, &act)
	require.InDelta(t, 1/(1+math.Exp(-3)), act.Data[0].Probs[0], 1e-12, "use_activation defaults to true: sigmoid")
	// Current vLLM reads only use_activation (ClassifyRequestMixin in
	// vllm/entrypoints/pooling/base/protocol.py): the older activation alone
	// is ignored and the score squashed; the client sends both.
	var old classifyResp
	ok(t, base, "/classify", map[string]any{"input": good, "activation": false}, &old)
	require.InDelta(t, 1/(1+math.Exp(-3)), old.Data[0].Probs[0], 1e-12, "activation alone is ignored")
	var both classifyResp
	ok(t, base, "/classify", map[string]any{"input": good, "activation": false, "use_activation": false, "add_special_tokens": false}, &both)
	require.InDelta(t, 3.0, both.Data[0].Probs[0], 1e-12, "what the client sends: the raw score")

	var chat classifyResp
	ok(t, base, "/classify", map[string]any{"use_activation": false, "messages": []map[string]string{
		{"role": "user", "content": "How do I cook pasta?"}, {"role": "assistant", "content": "Cook the pasta in salty water."},
	}}, &chat)
	require.Len(t, chat.Data, 1)
	require.InDelta(t, 3.0, chat.Data[0].Probs[0], 1e-12)
}

// TestRewardSpreadsSamples checks the reward leaves margins between samples
// of one prompt, scored in one batched /classify request.
func TestRewardSpreadsSamples(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	for _, q := range []string{"How do I cook pasta?", "Any tips on sleep and bedtime?", "How do I save money for a trip?"} {
		r := chatSample(t, base, map[string]any{"messages": userMsg(q), "n": 8, "seed": 2, "temperature": 0.8, "top_p": 0.95})
		var inputs []string
		for _, c := range r.Choices {
			text, err := tinylm.RenderChat([]tinylm.Message{{Role: "user", Content: q}, {Role: "assistant", Content: c.Message.Content}}, false)
			require.NoError(t, err)
			inputs = append(inputs, text)
		}
		var cr classifyResp
		ok(t, base, "/classify", map[string]any{"input": inputs, "use_activation": false}, &cr)
		require.Len(t, cr.Data, 8)
		lo, hi := math.Inf(1), math.Inf(-1)
		distinct := map[float64]bool{}
		for _, d := range cr.Data {
			lo, hi = min(lo, d.Probs[0]), max(hi, d.Probs[0])
			distinct[d.Probs[0]] = true
		}
		require.Greater(t, hi-lo, 0.5, "%q: best-vs-worst margin", q)
		require.Greater(t, len(distinct), 3, "%q: distinct rewards", q)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	msgs := userMsg("hi")
	tests := []struct {
		name   string
		path   string
		body   any
		status int
		typ    string
		msg    string
	}{
		{name: "bad JSON", path: "/v1/chat/completions", body: `{"messages": [`, status: 400, typ: "BadRequestError", msg: "invalid JSON body"},
		{name: "wrong field type", path: "/v1/chat/completions", body: `{"messages": [], "n": "two"}`, status: 400, msg: `field "n"`},
		{name: "unknown model", path: "/v1/chat/completions", body: map[string]any{"model": "gpt-9", "messages": msgs}, status: 404, typ: "NotFoundError", msg: "The model `gpt-9` does not exist"},
		{name: "unknown model completions", path: "/v1/completions", body: map[string]any{"model": "gpt-9", "prompt": "x"}, status: 404, typ: "NotFoundError", msg: "does not exist"},
		{name: "reward model on chat", path: "/v1/chat/completions", body: map[string]any{"model": "reward", "messages": msgs}, status: 400, msg: "reward model"},
		{name: "generative model on classify", path: "/classify", body: map[string]any{"model": "tiny-0", "input": "x"}, status: 400, msg: "cannot classify"},
		{name: "unknown model on classify", path: "/classify", body: map[string]any{"model": "rm", "input": "x"}, status: 404, msg: "does not exist"},
		{name: "no messages", path: "/v1/chat/completions", body: map[string]any{"messages": []any{}}, status: 400, msg: "non-empty"},
		{name: "bad role", path: "/v1/chat/completions", body: map[string]any{"messages": []map[string]string{{"role": "robot", "content": "x"}}}, status: 400, msg: "unknown chat role"},
		{name: "n zero", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "n": 0}, status: 400, msg: "n must be"},
		{name: "negative temperature", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "temperature": -1}, status: 400, msg: "temperature"},
		{name: "top_p zero", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "top_p": 0}, status: 400, msg: "top_p"},
		{name: "negative max_tokens", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "max_tokens": -1}, status: 400, msg: "max_tokens"},
		{name: "max_tokens over context", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "max_tokens": tinylm.DefaultMaxModelLen}, status: 400, msg: "maximum context length"},
		{name: "top_logprobs without logprobs", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "top_logprobs": 2}, status: 400, msg: "logprobs=true"},
		{name: "too many top_logprobs", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "logprobs": true, "top_logprobs": 21}, status: 400, msg: "top_logprobs"},
		{name: "stream", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "stream": true}, status: 400, msg: "stream"},
		{name: "stop strings", path: "/v1/chat/completions", body: map[string]any{"messages": msgs, "stop": []string{"."}}, status: 400, msg: "stop"},
		{name: "missing prompt", path: "/v1/completions", body: map[string]any{"max_tokens": 1}, status: 400, msg: "prompt is required"},
		{name: "empty prompt", path: "/v1/completions", body: map[string]any{"prompt": "", "add_special_tokens": false}, status: 400, msg: "empty"},
		{name: "token id out of range", path: "/v1/completions", body: map[string]any{"prompt": []int{1, 1 << 20}}, status: 400, msg: "outside the vocabulary"},
		{name: "tokenize needs input", path: "/tokenize", body: map[string]any{}, status: 400, msg: "prompt"},
		{name: "classify needs input", path: "/classify", body: map[string]any{}, status: 400, msg: "input"},
		{name: "classify empty list", path: "/classify", body: map[string]any{"input": []string{}}, status: 400, msg: "non-empty list"},
		{name: "classify messages without response", path: "/classify", body: map[string]any{"messages": msgs}, status: 400, msg: "assistant"},
		{name: "unknown path", path: "/v1/embeddings", body: map[string]any{}, status: 404, msg: "no route"},
		{name: "wrong method", path: "/v1/chat/completions", body: nil, status: 405, msg: "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, hdr, raw := call(t, base, tc.path, tc.body)
			require.Equal(t, tc.status, status, "body: %s", raw)
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
			var e errResp
			require.NoError(t, json.Unmarshal(raw, &e), "an OpenAI error object: %s", raw)
			require.Equal(t, tc.status, e.Error.Code)
			require.Contains(t, e.Error.Message, tc.msg)
			require.NotEmpty(t, e.Error.Type)
			if tc.typ != "" {
				require.Equal(t, tc.typ, e.Error.Type)
			}
		})
	}
}

func TestNewServerRejectsBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts tinylm.ServerOptions
		want string
	}{
		{name: "model named like the reward model", opts: tinylm.ServerOptions{Models: map[string]*tinylm.Model{"reward": tinylm.Builtin()}}, want: "reward model name"},
		{name: "nil model", opts: tinylm.ServerOptions{Models: map[string]*tinylm.Model{"a": nil}}, want: "nil"},
		{name: "rate above one", opts: tinylm.ServerOptions{Faults: tinylm.Faults{ErrorRate: 1.5}}, want: "error rate"},
		{name: "rates add up above one", opts: tinylm.ServerOptions{Faults: tinylm.Faults{ErrorRate: 0.6, HangRate: 0.6}}, want: "sum"},
		{name: "negative latency", opts: tinylm.ServerOptions{Faults: tinylm.Faults{Latency: -time.Second}}, want: "latency"},
		{name: "context of one token", opts: tinylm.ServerOptions{MaxModelLen: 1}, want: "max model len 1"},
		{name: "negative context", opts: tinylm.ServerOptions{MaxModelLen: -4096}, want: "max model len -4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tinylm.NewServer(tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// TestMaxModelLenOption: the context length is reported on /tokenize and
// /v1/models and enforced on prompt plus max_tokens, as vLLM's
// --max-model-len: with 12 tokens, an 11-token prompt leaves room for the
// one token max_tokens 1 asks, a 12-token prompt does not.
func TestMaxModelLenOption(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{MaxModelLen: 12})
	var r tokenizeResp
	ok(t, base, "/tokenize", map[string]any{"prompt": "rice"}, &r)
	require.Equal(t, 12, r.MaxModelLen)
	var list struct {
		Data []struct {
			MaxModelLen int `json:"max_model_len"`
		} `json:"data"`
	}
	ok(t, base, "/v1/models", nil, &list)
	require.Equal(t, 12, list.Data[0].MaxModelLen)

	tok := tinylm.Builtin().Tok
	ids := tok.Encode(strings.Repeat("rice ", 13))
	require.Len(t, ids, 13)
	var c completionResp
	ok(t, base, "/v1/completions", map[string]any{"prompt": ids[:11], "max_tokens": 1, "prompt_logprobs": 0}, &c)
	require.Len(t, c.Choices[0].PromptLogprobs, 11)
	status, _, raw := call(t, base, "/v1/completions", map[string]any{"prompt": ids[:12], "max_tokens": 1, "prompt_logprobs": 0})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(raw), "maximum context length is 12 tokens. However, you requested 13 tokens (12 in the input, 1 for the completion)")
	status, _, raw = call(t, base, "/v1/completions", map[string]any{"prompt": ids, "max_tokens": 1})
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, string(raw), "your request has 13 input tokens")
}
