package llm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sync"

	openai "github.com/sashabaranov/go-openai"
)

// SampleParams are the sampling settings of one Sample call.
type SampleParams struct {
	// Model is the served model name; empty means Endpoint.Model.
	Model string
	// N is the number of samples, at least 1.
	N int
	// Temperature is sent exactly (0 = greedy). It must not be negative.
	Temperature float64
	// TopP is the nucleus mass in (0, 1]; 0 leaves the server default.
	TopP float64
	// MaxTokens caps each sample's length; 0 leaves the server default.
	MaxTokens int
	// Seed makes sampling repeatable where the server honours it; nil lets
	// the server choose. One-request-per-sample fallback uses Seed+i.
	Seed *int64
	// TopK keeps the k most likely tokens; 0 or -1 keeps all and is sent as
	// 0, vLLM's current spelling (SamplingParams.top_k defaults to 0, "set
	// to 0 (or -1) to consider all tokens", vllm/sampling_params.py;
	// llama.cpp's server also takes k ≤ 0 as no limit). Always sent: vLLM
	// otherwise applies the model's generation_config default.
	TopK int
	// MinP drops tokens below MinP times the top token's probability, in
	// [0, 1]; 0 (sent) disables it.
	MinP float64
	// RepetitionPenalty is vLLM's multiplicative penalty, > 0; 0 means 1
	// (none), which is sent.
	RepetitionPenalty float64
	// PresencePenalty and FrequencyPenalty are OpenAI's additive penalties
	// in [-2, 2]; 0 (sent) means none.
	PresencePenalty, FrequencyPenalty float64
	// WithoutTokenIDs leaves return_token_ids out of the request, for a
	// caller that does not teacher-force the samples under a reference:
	// vLLM then sends no token ids (nor the prompt's), and the reply is
	// smaller to write, send and read. Sample.TokenIDs are then set only
	// by servers that always send ids (llama.cpp's).
	WithoutTokenIDs bool
}

// MaxModelLen returns the context length, prompt plus generated tokens,
// that serves model on the policy server, from its /v1/models (vLLM's
// ModelCard.max_model_len; an adapter's is its base model's, and an adapter
// not loaded yet gets the base model's too), or from llama.cpp's server its
// context per slot (meta.n_ctx); 0 when the server reports neither. vLLM
// refuses a request whose prompt plus max_tokens exceeds it, and llama.cpp
// stops a reply that fills it, so no prompt plus reply sampled is longer.
func (p *Policy) MaxModelLen(ctx context.Context, model string) (int, error) {
	t := p.chat.t
	if model == "" {
		model = t.ep.Model
	}
	list, err := getJSON[modelList](ctx, t, model, "/v1/models", t.v1+"/models", nil)
	if err != nil {
		return 0, err
	}
	return list.maxModelLen(model), nil
}

// Neutral values of the sampling knobs a server would otherwise take from
// the model's generation_config (vLLM's default_sampling_params in
// vllm/entrypoints/openai/chat_completion/protocol.py to_sampling_params:
// "Priority: user -> server default -> OpenAI default").
const (
	neutralTopK              = 0
	neutralRepetitionPenalty = 1.0
)

// Sample is one sampled response with its log-probability under the policy.
type Sample struct {
	// Content is the response text.
	Content string
	// Tokens is the number of generated tokens, one per log-prob entry. With
	// vLLM it includes the end-of-turn token when FinishReason is "stop".
	Tokens int
	// LogProb is the sum of the generated tokens' log-probs, log π(y|x), in
	// nats, as the server reports them (raw distribution, before
	// temperature and top-p in vLLM's default mode).
	LogProb float64
	// FinishReason is the server's reason: "stop", "length", …
	FinishReason string
	// TokenIDs are the generated token ids when the server returns them
	// (vLLM return_token_ids, llama.cpp's logprobs.content[].id, or
	// token_id:N log-prob tokens); nil otherwise.
	TokenIDs []int
	// PromptTokenIDs are the prompt's token ids as the server rendered and
	// tokenized it (vLLM's prompt_token_ids, sent with return_token_ids);
	// nil when absent. Samples of one reply share the slice.
	PromptTokenIDs []int
}

// Policy samples responses and their log-probs from the policy server over
// chat completions. It is safe for concurrent use.
type Policy struct {
	chat *chatClient
	// singleChoice remembers models whose server returned fewer choices than
	// n or rejected n, so later calls go straight to one request per sample.
	singleChoice sync.Map
}

// NewPolicy builds a policy sampler for ep.
func NewPolicy(ep Endpoint, opts ...Option) (*Policy, error) {
	t, err := newTransport(ep, opts)
	if err != nil {
		return nil, err
	}
	return &Policy{chat: newChatClient(t)}, nil
}

// Sample draws sp.N responses to msgs with their summed token log-probs. It
// asks for all n in one request; when the server ignores n, returns fewer
// choices or rejects n (see rejectsN), it falls back (for this and later
// calls of the same model) to sp.N concurrent single-sample requests with
// seeds Seed+i; when sp.N is above Endpoint.MaxN it uses them from the
// start. Missing log-probs, an empty choice list, inconsistent token ids or
// a malformed body (after retries) give a permanent *Error naming endpoint
// and model.
func (p *Policy) Sample(ctx context.Context, msgs []Message, sp SampleParams) ([]Sample, error) {
	t := p.chat.t
	if sp.Model == "" {
		sp.Model = t.ep.Model
	}
	if err := validateSampling(msgs, sp); err != nil {
		return nil, &Error{Endpoint: t.ep.Name, Model: sp.Model, Path: "/v1/chat/completions", Reason: err.Error(), Permanent: true}
	}
	out := make([]Sample, sp.N)
	first := 0 // samples already in out
	_, single := p.singleChoice.Load(sp.Model)
	if sp.N == 1 || (!single && (t.ep.MaxN == 0 || sp.N <= t.ep.MaxN)) {
		samples, err := p.request(ctx, msgs, sp, sp.N, sp.Seed)
		switch {
		case err == nil && len(samples) >= sp.N:
			return samples[:sp.N], nil
		case err == nil:
			if _, loaded := p.singleChoice.LoadOrStore(sp.Model, true); !loaded {
				t.opts.logger.InfoContext(ctx, "server returned fewer choices than n; using one request per sample",
					"endpoint", t.ep.Name, "model", sp.Model, "n", sp.N, "choices", len(samples))
			}
		case rejectsN(err, sp.N):
			// The same request with n = 1 tells whether n was what the
			// server refused; its sample is the fallback's sample 0.
			one, err1 := p.request(ctx, msgs, sp, 1, sp.Seed)
			if err1 != nil {
				var e *Error
				if errors.As(err, &e) && e.Param == "n" {
					return nil, err1
				}
				return nil, err
			}
			out[0], first = one[0], 1
			if _, loaded := p.singleChoice.LoadOrStore(sp.Model, true); !loaded {
				t.opts.logger.InfoContext(ctx, "server rejected n; using one request per sample (set max_n on the endpoint to skip the first try)",
					"endpoint", t.ep.Name, "model", sp.Model, "n", sp.N, "reason", err.Error())
			}
		default:
			return nil, err
		}
	}
	err := parallel(ctx, sp.N-first, func(ctx context.Context, j int) error {
		i := first + j
		var seed *int64
		if sp.Seed != nil {
			s := *sp.Seed + int64(i)
			seed = &s
		}
		got, err := p.request(ctx, msgs, sp, 1, seed)
		if err != nil {
			return err
		}
		out[i] = got[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rejectsN reports whether err may be the server refusing a request for n
// > 1 choices: HTTP 400 whose structured error names no field or names n.
// llama-server answers 400 {"error": {"code": 400, "type":
// "invalid_request_error", "message": "Field 'n': Value must be between 1
// <= value <= 4, but got 5"}} when n exceeds its slots (--parallel): its
// schema bounds n_cmpl, alias n, by n_parallel (tools/server/server-schema.cpp
// in ggml-org/llama.cpp) and names the field only in the message's words,
// which are not read here. So a 400 without a param is confirmed by the
// same request with n = 1: when that succeeds, n was what was refused.
func rejectsN(err error, n int) bool {
	var e *Error
	return n > 1 && errors.As(err, &e) && e.Status == http.StatusBadRequest && (e.Param == "" || e.Param == "n")
}

func validateSampling(msgs []Message, sp SampleParams) error {
	if err := validateMessages(msgs); err != nil {
		return fmt.Errorf("invalid prompt: %w", err)
	}
	switch {
	case sp.Model == "":
		return fmt.Errorf("invalid sampling parameters: no model named (set SampleParams.Model or Endpoint.Model)")
	case sp.N < 1:
		return fmt.Errorf("invalid sampling parameters: n = %d, must be at least 1", sp.N)
	case sp.Temperature < 0 || math.IsNaN(sp.Temperature) || math.IsInf(sp.Temperature, 0):
		return fmt.Errorf("invalid sampling parameters: temperature %v must be a finite number ≥ 0", sp.Temperature)
	case sp.Temperature > MaxTemperature:
		return fmt.Errorf("invalid sampling parameters: temperature %v is above %v, which vLLM refuses", sp.Temperature, MaxTemperature)
	case sp.Temperature > 0 && sp.Temperature < MinTemperature:
		return fmt.Errorf("invalid sampling parameters: temperature %v is below %v, which vLLM raises to %v; ask for 0 (greedy) or at least %v", sp.Temperature, MinTemperature, MinTemperature, MinTemperature)
	case sp.Temperature == 0 && sp.N > 1:
		return fmt.Errorf("invalid sampling parameters: temperature 0 is greedy sampling, for which vLLM requires n = 1 (got n = %d)", sp.N)
	case sp.TopK < -1:
		return fmt.Errorf("invalid sampling parameters: top_k %d must be -1 or 0 (all tokens) or at least 1", sp.TopK)
	case !(sp.MinP >= 0 && sp.MinP <= 1):
		return fmt.Errorf("invalid sampling parameters: min_p %v must be in [0, 1]", sp.MinP)
	case sp.RepetitionPenalty < 0 || math.IsNaN(sp.RepetitionPenalty) || math.IsInf(sp.RepetitionPenalty, 0):
		return fmt.Errorf("invalid sampling parameters: repetition_penalty %v must be a finite number > 0 (0 = none)", sp.RepetitionPenalty)
	case !(sp.PresencePenalty >= -2 && sp.PresencePenalty <= 2):
		return fmt.Errorf("invalid sampling parameters: presence_penalty %v must be in [-2, 2]", sp.PresencePenalty)
	case !(sp.FrequencyPenalty >= -2 && sp.FrequencyPenalty <= 2):
		return fmt.Errorf("invalid sampling parameters: frequency_penalty %v must be in [-2, 2]", sp.FrequencyPenalty)
	case !(sp.TopP >= 0 && sp.TopP <= 1):
		return fmt.Errorf("invalid sampling parameters: top_p %v must be in (0, 1] (0 = server default)", sp.TopP)
	case sp.MaxTokens < 0:
		return fmt.Errorf("invalid sampling parameters: max_tokens %d must not be negative", sp.MaxTokens)
	}
	return nil
}

// The temperature range vLLM accepts (vllm/sampling_params.py: _verify_args
// refuses temperature > 2; __post_init__ raises 0 < t < _MAX_TEMP = 0.01 to
// 0.01, and t = 0 is greedy, which needs n = 1).
const (
	MinTemperature = 0.01
	MaxTemperature = 2.0
)

// chatSamplingRequest builds the request and the extra fields of one call.
// Temperature, top_p and the penalties travel as extras: go-openai's
// float32 fields with omitempty would drop temperature 0 and send 0.8 as
// 0.800000011920929. The length cap goes as both max_completion_tokens
// (vLLM's current name, which it reads first) and the deprecated
// max_tokens (which older servers and llama.cpp's server read), so every
// server honours it.
func chatSamplingRequest(msgs []Message, sp SampleParams, n int, seed *int64, extras ChatRequestExtras) (openai.ChatCompletionRequest, map[string]any) {
	req := openai.ChatCompletionRequest{
		Model:               sp.Model,
		Messages:            toOpenAIMessages(msgs),
		MaxTokens:           sp.MaxTokens,
		MaxCompletionTokens: sp.MaxTokens,
		N:                   n,
		LogProbs:            true,
	}
	if seed != nil {
		s := int(*seed)
		req.Seed = &s
	}
	topK := sp.TopK
	if topK == -1 {
		topK = neutralTopK
	}
	rep := sp.RepetitionPenalty
	if rep == 0 {
		rep = neutralRepetitionPenalty
	}
	fields := map[string]any{
		"temperature":        sp.Temperature,
		"top_k":              topK,
		"min_p":              sp.MinP,
		"repetition_penalty": rep,
		"presence_penalty":   sp.PresencePenalty,
		"frequency_penalty":  sp.FrequencyPenalty,
	}
	if sp.TopP > 0 {
		fields["top_p"] = sp.TopP
	}
	if !sp.WithoutTokenIDs {
		fields["return_token_ids"] = true
	}
	for k, v := range extras {
		fields[k] = v
	}
	return req, fields
}

// request makes one chat call for n samples and decodes every choice. It
// returns fewer than n samples when the server returned fewer choices.
func (p *Policy) request(ctx context.Context, msgs []Message, sp SampleParams, n int, seed *int64) ([]Sample, error) {
	req, fields := chatSamplingRequest(msgs, sp, n, seed, p.chat.t.opts.extras)
	var samples []Sample
	err := p.chat.create(ctx, req, fields, func(reply *chatReply) *failure {
		if len(reply.Choices) == 0 {
			return permanentf("server returned an empty choice list (asked for %d)", n)
		}
		s, f := decodeSamples(reply)
		samples = s
		return f
	})
	if err != nil {
		return nil, err
	}
	return samples, nil
}

// decodeSamples turns a chat reply into samples ordered by choice index.
func decodeSamples(reply *chatReply) ([]Sample, *failure) {
	if len(reply.Choices) == 0 {
		return nil, permanentf("server returned an empty choice list")
	}
	choices := slices.Clone(reply.Choices)
	slices.SortStableFunc(choices, func(a, b chatChoice) int { return cmp.Compare(a.Index, b.Index) })
	out := make([]Sample, 0, len(choices))
	for i := range choices {
		c := &choices[i]
		if i > 0 && c.Index == choices[i-1].Index {
			return nil, permanentf("server returned choice index %d twice", c.Index)
		}
		s, f := decodeChoice(c)
		if f != nil {
			return nil, f
		}
		s.PromptTokenIDs = reply.PromptTokenIDs
		out = append(out, s)
	}
	return out, nil
}

// missingLogProb is vLLM's stand-in for a log-prob of -inf: it clamps
// log-probs to -9999.0 (vllm/logprobs.py, and ChatCompletionLogProb's
// default in vllm/entrypoints/openai/chat_completion/protocol.py), so a
// value at or below it is a missing number, not one to sum.
const missingLogProb = -9999.0

func decodeChoice(c *chatChoice) (Sample, *failure) {
	if !c.HasLogProbs || (len(c.LogProbs) == 0 && c.Content != "") {
		return Sample{}, permanentf("server returned no log-probs for choice %d (the sampler needs logprobs on chat completions)", c.Index)
	}
	if c.Reasoning != "" {
		return Sample{}, permanentf("choice %d has a reasoning part apart from its content (the server runs a reasoning parser, "+
			"vLLM's --reasoning-parser): its log-probs and token ids cover both parts, so the content alone cannot be scored; "+
			"serve the policy without a reasoning parser so the whole reply is the content", c.Index)
	}
	if !c.HasContent && len(c.LogProbs) > 0 {
		return Sample{}, permanentf("choice %d has log-probs for %d tokens but no content (null): the tokens went somewhere the sampler does not read, such as tool calls", c.Index, len(c.LogProbs))
	}
	var sum float64
	for j, lp := range c.LogProbs {
		if math.IsNaN(lp) || lp > 1e-6 {
			return Sample{}, permanentf("choice %d token %d has log-prob %v, not a log-probability", c.Index, j, lp)
		}
		if lp <= missingLogProb {
			return Sample{}, permanentf("choice %d token %d has log-prob %v, the server's stand-in for -inf (a token it gives zero probability): the sum is undefined", c.Index, j, lp)
		}
		sum += lp
	}
	if math.IsInf(sum, 0) {
		return Sample{}, permanentf("choice %d log-probs sum to %v, not a usable log-probability", c.Index, sum)
	}
	if c.TokenIDs != nil && len(c.TokenIDs) != len(c.LogProbs) {
		return Sample{}, permanentf("choice %d has %d token ids but %d log-probs", c.Index, len(c.TokenIDs), len(c.LogProbs))
	}
	return Sample{
		Content:      c.Content,
		Tokens:       len(c.LogProbs),
		LogProb:      sum,
		FinishReason: c.FinishReason,
		TokenIDs:     c.TokenIDs,
	}, nil
}

// parallel runs fn(0..n-1) concurrently and returns the first error; the
// others' context is cancelled as soon as one fails.
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx, i); err != nil {
				once.Do(func() {
					firstErr = err
					cancel()
				})
			}
		}()
	}
	wg.Wait()
	return firstErr
}
