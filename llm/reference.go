package llm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Reference computes teacher-forced log-probabilities log p(y|x) on a
// vLLM-compatible server: the prompt x is rendered and tokenized by the
// server's /tokenize (messages, add_generation_prompt true), the response y
// by /tokenize (prompt text, add_special_tokens false), and
// /v1/completions scores the concatenated token ids with prompt_logprobs 0
// and max_tokens 1. The sum covers exactly the response positions, and the
// server's scored token ids are checked against the ids sent.
//
// End of turn: LogProb appends the model's end-of-turn token (found once
// per model from its chat template, see Probe) to y, because a vLLM policy
// sample that finished with "stop" includes that token in its log-prob sum
// and token count; the DPO margin then compares like with like. For exact
// agreement — including samples cut off by max_tokens, which carry no
// end-of-turn token, and tokenizations that differ from re-tokenizing the
// text — score the sampler's own ids with LogProbTokens.
//
// It is safe for concurrent use.
type Reference struct {
	t *transport
	// eot caches per model the end-of-turn token id (eotInfo).
	eot sync.Map
}

type eotInfo struct {
	id    int
	found bool
	err   error // permanent: the template cannot be split
}

// NewReference builds a reference scorer for ep. Call Probe before use to
// fail early when the server lacks the capability.
func NewReference(ep Endpoint, opts ...Option) (*Reference, error) {
	t, err := newTransport(ep, opts)
	if err != nil {
		return nil, err
	}
	return &Reference{t: t}, nil
}

// probeHint explains a failed probe.
const probeHint = "the reference scorer needs a vLLM-compatible server with /tokenize and " +
	"/v1/completions accepting token-id prompts and prompt_logprobs; capability probe failed: "

// Probe checks that the server can teacher-force model: it tokenizes a short
// text, scores a 3-token prompt with prompt_logprobs and locates the
// end-of-turn token of the chat template (which needs the chat form of
// /tokenize to render a prompt to tokens). A permanent *Error means the
// server lacks the capability — its reason says what is missing; a
// transient one that it was unreachable. Workers call it once at start.
func (r *Reference) Probe(ctx context.Context, model string) error {
	model = r.model(model)
	if err := r.needModel(model); err != nil {
		return err
	}
	ids, err := r.tokenizeText(ctx, model, "hello world")
	if err != nil {
		return probeError(err)
	}
	if len(ids) == 0 {
		return &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: probeHint + "tokenizing \"hello world\" gave no tokens"}
	}
	probe := make([]int, 3)
	for i := range probe {
		probe[i] = ids[i%len(ids)]
	}
	if _, err := r.score(ctx, model, probe[:1], probe[1:]); err != nil {
		return probeError(err)
	}
	if _, err := r.endOfTurn(ctx, model); err != nil {
		return probeError(err)
	}
	return nil
}

// MaxModelLen returns the context length of model on the reference server,
// prompt plus generated tokens, as vLLM's /tokenize reports it
// (TokenizeResponse.max_model_len); 0 when the server reports none.
// Scoring a reply sends prompt + reply as the prompt with max_tokens 1, so
// the longest reply it can score ends at MaxModelLen − 1 tokens.
func (r *Reference) MaxModelLen(ctx context.Context, model string) (int, error) {
	model = r.model(model)
	if err := r.needModel(model); err != nil {
		return 0, err
	}
	req := tokenizeTextRequest{Model: model, Prompt: "hello"}
	got, err := postJSON(ctx, r.t, model, "/tokenize", r.t.root+"/tokenize", req, (*tokenizeResponse).check)
	if err != nil {
		return 0, err
	}
	return got.MaxModelLen, nil
}

func probeError(err error) error {
	var e *Error
	if errors.As(err, &e) && e.Permanent {
		c := *e
		c.Reason = probeHint + e.Reason
		return &c
	}
	return err
}

// LogProb returns log p(response | msgs) under model (empty: Endpoint.Model)
// with the end-of-turn token counted as part of the response (see
// Reference).
func (r *Reference) LogProb(ctx context.Context, model string, msgs []Message, response string) (float64, error) {
	model = r.model(model)
	if err := r.needModel(model); err != nil {
		return 0, err
	}
	if err := validateMessages(msgs); err != nil {
		return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Reason: "invalid prompt: " + err.Error(), Permanent: true}
	}
	var promptIDs, respIDs []int
	var eot eotInfo
	err := parallel(ctx, 3, func(ctx context.Context, i int) error {
		var err error
		switch i {
		case 0:
			promptIDs, err = r.tokenizeChat(ctx, model, msgs, true)
		case 1:
			if response != "" {
				respIDs, err = r.tokenizeText(ctx, model, response)
			}
		default:
			eot, err = r.endOfTurn(ctx, model)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if eot.found {
		respIDs = append(respIDs, eot.id)
	}
	return r.score(ctx, model, promptIDs, respIDs)
}

// LogProbTokens returns log p(y | msgs) for the response token ids y as
// given, typically Sample.TokenIDs from the policy sampler (which include
// the end-of-turn token exactly when the policy emitted it).
func (r *Reference) LogProbTokens(ctx context.Context, model string, msgs []Message, responseIDs []int) (float64, error) {
	model = r.model(model)
	if err := r.needModel(model); err != nil {
		return 0, err
	}
	if err := validateMessages(msgs); err != nil {
		return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Reason: "invalid prompt: " + err.Error(), Permanent: true}
	}
	for i, id := range responseIDs {
		if id < 0 {
			return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/v1/completions", Permanent: true,
				Reason: fmt.Sprintf("invalid response token id %d at position %d", id, i)}
		}
	}
	promptIDs, err := r.tokenizeChat(ctx, model, msgs, true)
	if err != nil {
		return 0, err
	}
	return r.score(ctx, model, promptIDs, responseIDs)
}

// LogProbSample returns log p(y | msgs) under model for a sample from the
// policy sampler, scoring what the policy conditioned on and produced as
// closely as the sample allows: its prompt token ids when the server
// returned them (vLLM's prompt_token_ids) instead of re-rendering the
// prompt, and its token ids when present. Without token ids it tokenizes
// the content and appends the end-of-turn token only when FinishReason is
// "stop": a sample cut off by max_tokens ("length") has none. Using the
// sample's ids assumes, as LogProbTokens does, that the reference model
// shares the policy's tokenizer (DPO's reference is the initial policy).
func (r *Reference) LogProbSample(ctx context.Context, model string, msgs []Message, s Sample) (float64, error) {
	model = r.model(model)
	if err := r.needModel(model); err != nil {
		return 0, err
	}
	if err := validateMessages(msgs); err != nil {
		return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Reason: "invalid prompt: " + err.Error(), Permanent: true}
	}
	for i, id := range slices.Concat(s.PromptTokenIDs, s.TokenIDs) {
		if id < 0 {
			return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/v1/completions", Permanent: true,
				Reason: fmt.Sprintf("invalid token id %d at position %d of prompt and response", id, i)}
		}
	}
	promptIDs, respIDs := s.PromptTokenIDs, s.TokenIDs
	var eot eotInfo
	err := parallel(ctx, 3, func(ctx context.Context, i int) error {
		var err error
		switch {
		case i == 0 && promptIDs == nil:
			promptIDs, err = r.tokenizeChat(ctx, model, msgs, true)
		case i == 1 && respIDs == nil && s.Content != "":
			respIDs, err = r.tokenizeText(ctx, model, s.Content)
		case i == 2 && s.TokenIDs == nil && s.FinishReason == "stop":
			eot, err = r.endOfTurn(ctx, model)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if eot.found {
		respIDs = append(slices.Clip(respIDs), eot.id)
	}
	return r.score(ctx, model, promptIDs, respIDs)
}

func (r *Reference) model(m string) string {
	if m == "" {
		return r.t.ep.Model
	}
	return m
}

func (r *Reference) needModel(model string) error {
	if model == "" {
		return &Error{Endpoint: r.t.ep.Name, Path: "/v1/completions", Permanent: true,
			Reason: "no model named (pass one or set Endpoint.Model)"}
	}
	return nil
}

// score teacher-forces prompt+resp and sums the log-probs of resp.
func (r *Reference) score(ctx context.Context, model string, prompt, resp []int) (float64, error) {
	if len(resp) == 0 {
		return 0, nil
	}
	if len(prompt) == 0 {
		return 0, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/v1/completions", Permanent: true,
			Reason: "the prompt rendered to no tokens, so the first response token has no context"}
	}
	ids := make([]int, 0, len(prompt)+len(resp))
	ids = append(append(ids, prompt...), resp...)
	req := completionRequest{Model: model, Prompt: ids, MaxTokens: 1, PromptLogprobs: 0}
	var sum float64
	_, err := postJSON(ctx, r.t, model, "/v1/completions", r.t.v1+"/completions", req, func(v *completionResponse) *failure {
		s, f := v.teacherForced(ids, len(prompt))
		sum = s
		return f
	})
	if err != nil {
		return 0, err
	}
	return sum, nil
}

// notVLLMTokenize explains an empty tokenization of non-empty input: the
// server did not read vLLM's /tokenize request. llama.cpp's llama-server,
// for one, reads {"content": …} and answers {"tokens": []} to vLLM's
// {"prompt": …} and {"messages": …} (tools/server/server-context.cpp,
// handle_tokenize, in ggml-org/llama.cpp). Summing over no tokens would
// store a log-prob of 0, so it is an error.
const notVLLMTokenize = "; the server does not speak vLLM's /tokenize ({\"prompt\": …} and {\"messages\": …}, " +
	"as llama.cpp's llama-server does not): the reference endpoint must be vLLM or a server with vLLM's /tokenize " +
	"and prompt_logprobs"

func (r *Reference) tokenizeText(ctx context.Context, model, text string) ([]int, error) {
	req := tokenizeTextRequest{Model: model, Prompt: text, AddSpecialTokens: false}
	got, err := postJSON(ctx, r.t, model, "/tokenize", r.t.root+"/tokenize", req, (*tokenizeResponse).check)
	if err != nil {
		return nil, err
	}
	if len(got.Tokens) == 0 && text != "" {
		return nil, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: fmt.Sprintf("tokenizing %d bytes of text gave no tokens", len(text)) + notVLLMTokenize}
	}
	return got.Tokens, nil
}

func (r *Reference) tokenizeChat(ctx context.Context, model string, msgs []Message, generationPrompt bool) ([]int, error) {
	req := tokenizeChatRequest{Model: model, Messages: msgs, AddGenerationPrompt: generationPrompt}
	got, err := postJSON(ctx, r.t, model, "/tokenize", r.t.root+"/tokenize", req, (*tokenizeResponse).check)
	if err != nil {
		return nil, err
	}
	if len(got.Tokens) == 0 {
		return nil, &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: fmt.Sprintf("the chat template rendered %d messages to no tokens", len(msgs)) + notVLLMTokenize}
	}
	return got.Tokens, nil
}

// endOfTurn finds the token the chat template puts right after an
// assistant reply, by rendering a one-turn chat with and without a reply:
// tokens(prompt + reply) must be tokens(prompt with generation prompt) +
// tokens(reply) + [end of turn] + anything. A template that adds nothing
// after the reply has no end-of-turn token. The result is cached per model.
func (r *Reference) endOfTurn(ctx context.Context, model string) (eotInfo, error) {
	if v, ok := r.eot.Load(model); ok {
		info := v.(eotInfo)
		return info, info.err
	}
	const word = "hello"
	user := []Message{{Role: "user", Content: word}}
	var prompt, full, reply []int
	err := parallel(ctx, 3, func(ctx context.Context, i int) error {
		var err error
		switch i {
		case 0:
			prompt, err = r.tokenizeChat(ctx, model, user, true)
		case 1:
			full, err = r.tokenizeChat(ctx, model, withReply(user, word), false)
		default:
			reply, err = r.tokenizeText(ctx, model, word)
		}
		return err
	})
	if err != nil {
		return eotInfo{}, err
	}
	var info eotInfo
	switch {
	case !hasPrefix(full, prompt) || !hasPrefix(full[len(prompt):], reply):
		info.err = &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: "cannot locate the end-of-turn token: the chat template does not render prompt + reply as " +
				"the prompt's tokens followed by the reply's; score the sampler's token ids with LogProbTokens instead"}
	case len(full) > len(prompt)+len(reply):
		info.id, info.found = full[len(prompt)+len(reply)], true
	default:
		// A policy sample that stopped on its own counts the end-of-turn
		// token; a reference log-prob without it would not compare like
		// with like.
		info.err = &Error{Endpoint: r.t.ep.Name, Model: model, Path: "/tokenize", Permanent: true,
			Reason: "the chat template adds no end-of-turn token after an assistant reply, so a reply's " +
				"reference log-prob cannot count it as the policy's does"}
	}
	r.eot.Store(model, info)
	return info, info.err
}

func hasPrefix(s, prefix []int) bool {
	return len(s) >= len(prefix) && slices.Equal(s[:len(prefix)], prefix)
}
