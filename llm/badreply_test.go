package llm

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
)

// Bad replies from tinylm over HTTP: well-formed 200 responses with a body
// that is wrong. Every client must refuse them with a permanent *Error
// whose reason names the problem. A body that does not decode may be a
// glitch on the way, so it is retried first (max_retries = 1 here: two
// attempts); a body that decodes but breaks the protocol is refused at once.
func TestBadRepliesArePermanentWithAReason(t *testing.T) {
	t.Parallel()
	type call func(t *testing.T, b *liveBundle) error
	policy := func(t *testing.T, b *liveBundle) error {
		ep := b.endpoint("policy")
		ep.MaxRetries = 1
		p, err := NewPolicy(ep, b.opts()...)
		require.NoError(t, err)
		_, err = p.Sample(context.Background(), questionPrompt, defaultSampling(3, 1))
		return err
	}
	reward := func(extra ...Option) call {
		return func(t *testing.T, b *liveBundle) error {
			ep := b.endpoint("reward")
			ep.Kind, ep.Model, ep.MaxRetries = KindClassify, rewardModel, 1
			r, err := NewReward(ep, b.opts(extra...)...)
			require.NoError(t, err)
			_, err = r.Score(context.Background(), questionPrompt, []string{"water them early", "ignore them"})
			return err
		}
	}
	reference := func(t *testing.T, b *liveBundle) error {
		ep := b.endpoint("reference")
		ep.MaxRetries = 1
		r, err := NewReference(ep, b.opts()...)
		require.NoError(t, err)
		_, err = r.LogProbTokens(context.Background(), tinyModel, questionPrompt, []int{5, 6, 7})
		return err
	}
	tests := []struct {
		name     string
		kind     string
		call     call
		reason   string
		attempts int
	}{
		{"policy: no choices", tinylm.BadReplyNoChoices, policy, "server returned an empty choice list", 1},
		{"policy: fewer choices than asked", tinylm.BadReplyFewerChoices, policy, "empty choice list (asked for 1)", 1},
		{"policy: no log-probs", tinylm.BadReplyNoLogprobs, policy, "server returned no log-probs for choice 0", 1},
		{"policy: NaN log-probs", tinylm.BadReplyNaNLogprobs, policy, "non-finite number NaN", 2},
		// vLLM sends -9999.0 for -inf (chat_completion/serving.py, generate/base/serving.py).
		{"policy: clamped -inf log-probs", tinylm.BadReplyInfLogprobs, policy, "has log-prob -9999, the server's stand-in for -inf", 1},
		{"policy: HTML page", tinylm.BadReplyHTML, policy, "not JSON", 2},
		{"policy: reasoning split off the content", tinylm.BadReplyReasoning, policy, "has a reasoning part apart from its content", 1},
		{"policy: cut-off body", tinylm.BadReplyTruncated, policy, "truncated JSON", 2},
		{"reward: string score", tinylm.BadReplyStringReward, reward(), "data[].probs[] is not a number", 2},
		{"reward: missing score", tinylm.BadReplyMissingReward, reward(), "classify returned 0 results for 1 inputs", 1},
		{"reward batched: missing score", tinylm.BadReplyMissingReward, reward(WithChatTemplate(TemplateTinyLM)), "classify returned 1 results for 2 inputs", 1},
		{"reward batched: extra score", tinylm.BadReplyExtraReward, reward(WithChatTemplate(TemplateTinyLM)), "classify returned 3 results for 2 inputs", 1},
		{"reward: HTML page", tinylm.BadReplyHTML, reward(), "not JSON", 2},
		{"reward: cut-off body", tinylm.BadReplyTruncated, reward(), "truncated JSON", 2},
		{"reference: no choices", tinylm.BadReplyNoChoices, reference, "completions response has no choices", 1},
		{"reference: no prompt log-probs", tinylm.BadReplyNoLogprobs, reference, "no prompt_logprobs", 1},
		{"reference: NaN log-probs", tinylm.BadReplyNaNLogprobs, reference, "non-finite number NaN", 2},
		{"reference: cut-off body", tinylm.BadReplyTruncated, reference, "truncated JSON", 2},
		{"reference: clamped -inf log-probs", tinylm.BadReplyInfLogprobs, reference, "the server's stand-in for -inf", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startLive(t, tinylm.Faults{BadReply: tc.kind})
			err := tc.call(t, b)
			require.Error(t, err)
			var e *Error
			require.True(t, errors.As(err, &e), "%T: %v", err, err)
			require.True(t, e.Permanent, "%v", err)
			require.False(t, IsTransient(err))
			require.Equal(t, 200, e.Status)
			require.Contains(t, e.Error(), tc.reason)
			require.Equal(t, tc.attempts, e.Attempts, "%v", err)
		})
	}
}
