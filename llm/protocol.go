package llm

import (
	"encoding/json"
	"fmt"
	"math"
)

// Wire types of the vLLM routes the clients call with net/http (go-openai
// covers chat completions). Field names follow vLLM's protocol definitions
// (TokenizeCompletionRequest, TokenizeChatRequest, TokenizeResponse,
// CompletionRequest, CompletionResponseChoice.prompt_logprobs,
// ClassificationCompletionRequest/ChatRequest, ClassificationResponse,
// PoolingResponse); testdata/vllm holds fixtures written from them.

// tokenizeTextRequest is vLLM's TokenizeCompletionRequest.
type tokenizeTextRequest struct {
	Model            string `json:"model,omitempty"`
	Prompt           string `json:"prompt"`
	AddSpecialTokens bool   `json:"add_special_tokens"`
}

// tokenizeChatRequest is vLLM's TokenizeChatRequest.
type tokenizeChatRequest struct {
	Model               string    `json:"model,omitempty"`
	Messages            []Message `json:"messages"`
	AddGenerationPrompt bool      `json:"add_generation_prompt"`
	AddSpecialTokens    bool      `json:"add_special_tokens"`
}

// modelList is vLLM's ModelList from /v1/models; a LoRA adapter's card
// names its base model as parent and has no max_model_len
// (vllm/entrypoints/openai/models/serving.py, show_available_models).
// llama.cpp's server has no max_model_len but reports its context per
// slot, the most one request's prompt and reply can fill, as meta.n_ctx.
type modelList struct {
	Data []struct {
		ID          string  `json:"id"`
		Parent      *string `json:"parent"`
		MaxModelLen *int    `json:"max_model_len"`
		Meta        *struct {
			NCtx *int `json:"n_ctx"`
		} `json:"meta"`
	} `json:"data"`
}

// maxModelLen is the context length that serves model: its own card's, its
// parent's for an adapter, and for a model not listed (an adapter not
// loaded yet) the longest of the base models'; 0 when none is reported.
func (l *modelList) maxModelLen(model string) int {
	lens := map[string]int{}
	parents := map[string]string{}
	longest := 0
	for _, c := range l.Data {
		if c.MaxModelLen == nil && c.Meta != nil {
			c.MaxModelLen = c.Meta.NCtx
		}
		if c.MaxModelLen != nil {
			lens[c.ID] = *c.MaxModelLen
		}
		if c.Parent != nil {
			parents[c.ID] = *c.Parent
		} else if c.MaxModelLen != nil {
			longest = max(longest, *c.MaxModelLen)
		}
	}
	if n, ok := lens[model]; ok {
		return n
	}
	if p, ok := parents[model]; ok {
		return lens[p]
	}
	for _, c := range l.Data {
		if c.ID == model {
			return 0 // listed, without a length of its own or a parent's
		}
	}
	return longest
}

// tokenizeResponse is vLLM's TokenizeResponse.
type tokenizeResponse struct {
	Count       int   `json:"count"`
	MaxModelLen int   `json:"max_model_len"`
	Tokens      []int `json:"tokens"`
}

func (r *tokenizeResponse) check() *failure {
	if r.Tokens == nil {
		return permanentf("tokenize response has no tokens field")
	}
	if r.Count != 0 && r.Count != len(r.Tokens) {
		return permanentf("tokenize response count %d disagrees with %d tokens", r.Count, len(r.Tokens))
	}
	return nil
}

// completionRequest is the teacher-forcing subset of vLLM's
// CompletionRequest: the prompt as token ids, one generated token (vLLM
// needs at least one), and the prompt's own log-probs (top 0: only the
// actual token at each position).
type completionRequest struct {
	Model          string  `json:"model"`
	Prompt         []int   `json:"prompt"`
	MaxTokens      int     `json:"max_tokens"`
	PromptLogprobs int     `json:"prompt_logprobs"`
	Temperature    float64 `json:"temperature"`
}

// promptLogprob is vLLM's Logprob as serialised in prompt_logprobs.
type promptLogprob struct {
	Logprob      float64 `json:"logprob"`
	Rank         *int    `json:"rank"`
	DecodedToken *string `json:"decoded_token"`
}

// completionResponse is the part of vLLM's CompletionResponse the
// reference scorer reads.
type completionResponse struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Model   string `json:"model"`
	Choices []struct {
		Index int    `json:"index"`
		Text  string `json:"text"`
		// PromptLogprobs has one entry per prompt token: null for the first,
		// then a map from token id (a JSON object key) to its Logprob.
		PromptLogprobs []map[string]promptLogprob `json:"prompt_logprobs"`
		PromptTokenIDs []int                      `json:"prompt_token_ids"`
		FinishReason   *string                    `json:"finish_reason"`
	} `json:"choices"`
}

// teacherForced sums the log-probs of prompt positions [from, len(ids)) of
// a completion response and checks every scored token id.
func (r *completionResponse) teacherForced(ids []int, from int) (float64, *failure) {
	if len(r.Choices) == 0 {
		return 0, permanentf("completions response has no choices")
	}
	c := r.Choices[0]
	if c.PromptLogprobs == nil {
		return 0, permanentf("completions response has no prompt_logprobs (the reference scorer needs vLLM's prompt_logprobs)")
	}
	if len(c.PromptLogprobs) != len(ids) {
		return 0, permanentf("prompt_logprobs has %d entries for a %d-token prompt", len(c.PromptLogprobs), len(ids))
	}
	if c.PromptTokenIDs != nil {
		if len(c.PromptTokenIDs) != len(ids) {
			return 0, permanentf("server echoed %d prompt token ids for a %d-token prompt", len(c.PromptTokenIDs), len(ids))
		}
		for i, id := range c.PromptTokenIDs {
			if id != ids[i] {
				return 0, permanentf("server echoed token id %d at prompt position %d, sent %d", id, i, ids[i])
			}
		}
	}
	var sum float64
	for pos := from; pos < len(ids); pos++ {
		entry := c.PromptLogprobs[pos]
		if entry == nil {
			return 0, permanentf("prompt_logprobs[%d] is null; only the first position may be", pos)
		}
		lp, ok := entry[fmt.Sprint(ids[pos])]
		if !ok {
			return 0, permanentf("prompt_logprobs[%d] does not score token id %d (the server scored a different token)", pos, ids[pos])
		}
		if math.IsNaN(lp.Logprob) || lp.Logprob > 1e-6 {
			return 0, permanentf("prompt_logprobs[%d] = %v is not a log-probability", pos, lp.Logprob)
		}
		if lp.Logprob <= missingLogProb {
			return 0, permanentf("prompt_logprobs[%d] = %v, the server's stand-in for -inf (a token it gives zero probability): the sum is undefined", pos, lp.Logprob)
		}
		sum += lp.Logprob
	}
	if math.IsInf(sum, 0) {
		return 0, permanentf("prompt_logprobs sum to %v, not a usable log-probability", sum)
	}
	return sum, nil
}

// classifyRequest is vLLM's ClassificationCompletionRequest (Input) or
// ClassificationChatRequest (Messages); also used for /pooling, whose
// PoolingCompletionRequest and PoolingChatRequest share these fields.
//
// UseActivation false asks for the raw score (vLLM's ClassifyRequestMixin
// in vllm/entrypoints/pooling/base/protocol.py); Activation false says the
// same to vLLM versions before use_activation, which read only activation
// and would otherwise squash scores through a sigmoid (current vLLM
// ignores it). AddSpecialTokens false keeps the server from adding a BOS
// token to rendered input that already starts with the template's own:
// CompletionRequestMixin defaults it to true for input, while the chat
// form (ChatRequestOptionsMixin) defaults to false.
type classifyRequest struct {
	Model            string    `json:"model,omitempty"`
	Input            []string  `json:"input,omitempty"`
	Messages         []Message `json:"messages,omitempty"`
	UseActivation    bool      `json:"use_activation"`
	Activation       bool      `json:"activation"`
	AddSpecialTokens bool      `json:"add_special_tokens"`
}

// classifyResponse is the part of vLLM's ClassificationResponse the
// reward reads: each result's index and probs (its id, model, labels and
// usage are not used).
type classifyResponse struct {
	Data []classifyResult
}

type classifyResult struct {
	Index int
	Probs []float64
}

// UnmarshalJSON reads data[].index and data[].probs in one pass with the
// reply scanner, as a chat reply is read: five of these come with every
// prompt of a chat-form reward. encoding/json has checked that b is JSON
// before it calls this; a value of the wrong type gets an error naming
// the field.
func (r *classifyResponse) UnmarshalJSON(b []byte) error {
	d := &replyScanner{b: b}
	*r = classifyResponse{}
	if d.null() {
		return nil
	}
	d.object(func(key []byte) {
		if string(key) != "data" {
			d.skip()
			return
		}
		if d.null() {
			return
		}
		d.array(func() {
			var res classifyResult
			if !d.null() {
				d.object(func(key []byte) {
					switch string(key) {
					case "index":
						res.Index = d.int("data[].index")
					case "probs":
						if !d.null() {
							res.Probs = []float64{}
							d.array(func() { res.Probs = append(res.Probs, d.float("data[].probs[]")) })
						}
					default:
						d.skip()
					}
				})
			}
			r.Data = append(r.Data, res)
		})
	})
	d.end()
	return d.err
}

// scores returns data[i].probs[0] in input order.
func (r *classifyResponse) scores(n int) ([]float64, *failure) {
	if len(r.Data) != n {
		return nil, permanentf("classify returned %d results for %d inputs", len(r.Data), n)
	}
	out := make([]float64, n)
	seen := make([]bool, n)
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= n || seen[d.Index] {
			return nil, permanentf("classify returned a bad or repeated index %d", d.Index)
		}
		if len(d.Probs) != 1 {
			return nil, permanentf("classify returned %d values for input %d; a reward model has a single output (num_labels=1)", len(d.Probs), d.Index)
		}
		seen[d.Index] = true
		out[d.Index] = d.Probs[0]
	}
	return out, nil
}

// poolingResponse is vLLM's PoolingResponse.
type poolingResponse struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index  int             `json:"index"`
		Object string          `json:"object"`
		Data   json.RawMessage `json:"data"`
	} `json:"data"`
}

// scores reads each pooled output's score: the last value of a vector, or
// the first value of the last row of a per-token matrix (a reward head
// pooled over all tokens scores the sequence at its last token).
func (r *poolingResponse) scores(n int) ([]float64, *failure) {
	if len(r.Data) != n {
		return nil, permanentf("pooling returned %d results for %d inputs", len(r.Data), n)
	}
	out := make([]float64, n)
	seen := make([]bool, n)
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= n || seen[d.Index] {
			return nil, permanentf("pooling returned a bad or repeated index %d", d.Index)
		}
		seen[d.Index] = true
		var vec []float64
		var mat [][]float64
		switch {
		case json.Unmarshal(d.Data, &vec) == nil && len(vec) > 0:
			out[d.Index] = vec[len(vec)-1]
		case json.Unmarshal(d.Data, &mat) == nil && len(mat) > 0 && len(mat[len(mat)-1]) > 0:
			out[d.Index] = mat[len(mat)-1][0]
		default:
			return nil, permanentf("pooling result %d is not a non-empty float vector or matrix (request encoding_format float)", d.Index)
		}
	}
	return out, nil
}

// getRewardRequest is OpenRLHF's remote reward request: full texts
// (prompt and response, chat template applied) and the prompts alone.
type getRewardRequest struct {
	Query   []string `json:"query"`
	Prompts []string `json:"prompts"`
}

// getRewardResponse is OpenRLHF's remote reward response.
type getRewardResponse struct {
	Rewards []float64 `json:"rewards"`
}

func (r *getRewardResponse) check(n int) *failure {
	if len(r.Rewards) != n {
		return permanentf("get_reward returned %d rewards for %d queries", len(r.Rewards), n)
	}
	return nil
}
