package llm

import (
	"context"
	"fmt"
	"strings"
	"unicode"
)

// Reward scores responses with a reward model. The protocol follows
// Endpoint.Kind:
//
//   - classify: vLLM POST /classify with use_activation false, so the score
//     is the reward head's raw output data[i].probs[0].
//   - pooling: vLLM POST /pooling; the score is the last value of the pooled
//     output (see poolingResponse.scores).
//   - get_reward: OpenRLHF-style POST /get_reward {"query": [...],
//     "prompts": [...]} → {"rewards": [...]}; needs WithChatTemplate.
//   - judge: an LLM over chat completions asked for a 1–10 score with the
//     project's grading prompt (see judge.go).
//
// With a chat template (WithChatTemplate) classify and pooling send the n
// responses of a prompt in one request as rendered texts; without one they
// send the chat form (messages, rendered by the server with the model's own
// template), one request per response, concurrently. get_reward always sends
// one request; judge one chat call per response. Reward is safe for
// concurrent use.
type Reward struct {
	t     *transport
	kind  string
	chat  *chatClient // judge only
	route string      // classify, pooling, get_reward: the POST URL
	path  string      // its route, for errors and hooks
}

// NewReward builds a reward client for ep; ep.Kind selects the protocol.
func NewReward(ep Endpoint, opts ...Option) (*Reward, error) {
	t, err := newTransport(ep, opts)
	if err != nil {
		return nil, err
	}
	r := &Reward{t: t, kind: ep.Kind}
	switch ep.Kind {
	case KindClassify:
		r.path, r.route = "/classify", t.root+"/classify"
	case KindPooling:
		r.path, r.route = "/pooling", t.root+"/pooling"
	case KindGetReward:
		if t.opts.template == nil {
			return nil, fmt.Errorf("llm: %s endpoint: kind get_reward sends rendered text; set a chat template matching the reward model (WithChatTemplate; built-ins: chatml, llama3, tinylm, plain)", ep.Name)
		}
		if tmpl := *t.opts.template; strings.TrimSpace(tmpl.part(tmpl.Suffix, "assistant")) == "" {
			return nil, fmt.Errorf("llm: %s endpoint: chat template %q ends an assistant turn with no end token, and OpenRLHF's reward server (0.8.3 and later) reads the reward at the query's last token without appending an EOS: use a template whose turns end with the reward model's EOS token (chatml, llama3)", ep.Name, tmpl.Name)
		}
		// The address may name the route itself; every replica serves it
		// under its root.
		for _, rep := range t.bal.reps {
			rep.root = strings.TrimSuffix(rep.root, "/get_reward")
		}
		t.root = t.bal.reps[0].root
		r.path, r.route = "/get_reward", t.root+"/get_reward"
	case KindJudge:
		if ep.Model == "" {
			return nil, fmt.Errorf("llm: %s endpoint: kind judge needs the judge model name (Endpoint.Model)", ep.Name)
		}
		r.path = "/v1/chat/completions"
		r.chat = newChatClient(t)
	case "":
		return nil, fmt.Errorf("llm: %s endpoint: reward kind is empty (use classify, pooling, get_reward or judge)", ep.Name)
	default:
		return nil, fmt.Errorf("llm: %s endpoint: unknown reward kind %q (use classify, pooling, get_reward or judge)", ep.Name, ep.Kind)
	}
	return r, nil
}

// Score returns one reward per response to the conversation msgs, in the
// order of responses. Errors are *Error values (see IsPermanent).
func (r *Reward) Score(ctx context.Context, msgs []Message, responses []string) ([]float64, error) {
	model := r.t.ep.Model
	if err := validateMessages(msgs); err != nil {
		return nil, &Error{Endpoint: r.t.ep.Name, Model: model, Path: r.path, Reason: "invalid prompt: " + err.Error(), Permanent: true}
	}
	if len(responses) == 0 {
		return []float64{}, nil
	}
	switch r.kind {
	case KindClassify, KindPooling:
		if r.t.opts.template != nil {
			return r.pooled(ctx, classifyRequest{Model: model, Input: renderReplies(*r.t.opts.template, msgs, responses)})
		}
		out := make([]float64, len(responses))
		err := parallel(ctx, len(responses), func(ctx context.Context, i int) error {
			s, err := r.pooled(ctx, classifyRequest{Model: model, Messages: withReply(msgs, responses[i])})
			if err != nil {
				return err
			}
			out[i] = s[0]
			return nil
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	case KindGetReward:
		req := newGetRewardRequest(*r.t.opts.template, msgs, responses)
		got, err := postJSON(ctx, r.t, model, r.path, r.route, req, func(v *getRewardResponse) *failure {
			return v.check(len(responses))
		})
		if err != nil {
			return nil, err
		}
		return got.Rewards, nil
	default: // KindJudge
		out := make([]float64, len(responses))
		err := parallel(ctx, len(responses), func(ctx context.Context, i int) error {
			s, err := r.judge(ctx, msgs, responses[i])
			out[i] = s
			return err
		})
		if err != nil {
			return nil, err
		}
		return out, nil
	}
}

// pooled sends one classify or pooling request and returns its scores in
// input order (one per input, or one for the chat form).
func (r *Reward) pooled(ctx context.Context, req classifyRequest) ([]float64, error) {
	n := len(req.Input)
	if req.Messages != nil {
		n = 1
	}
	var scores []float64
	check := func(f func(int) ([]float64, *failure)) *failure {
		s, fail := f(n)
		scores = s
		return fail
	}
	var err error
	if r.kind == KindClassify {
		_, err = postJSON(ctx, r.t, req.Model, r.path, r.route, req, func(v *classifyResponse) *failure { return check(v.scores) })
	} else {
		_, err = postJSON(ctx, r.t, req.Model, r.path, r.route, req, func(v *poolingResponse) *failure { return check(v.scores) })
	}
	if err != nil {
		return nil, err
	}
	return scores, nil
}

// renderReplies renders the conversation once per reply, each closed as a
// finished assistant turn.
func renderReplies(t ChatTemplate, msgs []Message, replies []string) []string {
	out := make([]string, len(replies))
	for i, reply := range replies {
		out[i] = t.Render(withReply(msgs, reply), false)
	}
	return out
}

// newGetRewardRequest builds the OpenRLHF request: each query is prompt and
// reply rendered; prompts repeat the prompt with the generation prompt.
//
// A query ends at the reply's end-of-turn token, without the whitespace a
// template writes after it. OpenRLHF's reward server (openrlhf/cli/
// serve_rm.py, get_reward) scores each query as sent since OpenRLHF 0.8.3
// (PR #1038 removed strip_sequence and the appended EOS): it tokenizes it
// without special tokens and reads the reward at its last token. Its
// reward models are trained on texts that end with the tokenizer's EOS
// (openrlhf/datasets/reward_dataset.py: the text right-stripped of
// newlines, then " " + eos unless it ends with eos already), so the query
// must end with that token and nothing after it: the end-of-turn token of
// ChatML and Llama 3 templates is their instruct models' EOS. Servers
// before 0.8.3 stripped EOS and pad tokens from both ends and appended one
// EOS, which leaves such a query as it is; whitespace after the end token
// would have defeated their strip too. The response's rewards are read;
// 0.8.3 also sends the same list as scores, with extra_logs.
func newGetRewardRequest(t ChatTemplate, msgs []Message, replies []string) getRewardRequest {
	req := getRewardRequest{Query: renderReplies(t, msgs, replies), Prompts: make([]string, len(replies))}
	for i, q := range req.Query {
		req.Query[i] = strings.TrimRightFunc(q, unicode.IsSpace)
	}
	prompt := t.Render(msgs, true)
	for i := range req.Prompts {
		req.Prompts[i] = prompt
	}
	return req
}

// withReply appends the assistant's reply to a prompt conversation.
func withReply(msgs []Message, reply string) []Message {
	out := make([]Message, len(msgs), len(msgs)+1)
	copy(out, msgs)
	return append(out, Message{Role: "assistant", Content: reply})
}
