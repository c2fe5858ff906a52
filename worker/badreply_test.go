package worker_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/tinylm"
)

// marker puts a prompt's requests on tinylm's bad-reply path
// (--bad-reply-match): the policy call carries it in the prompt, and so
// does the reward call, which sends the conversation.
const marker = "BADREPLY"

// TestBadServerRepliesFailTheTaskNotTheWorker runs a worker process
// against a tinylm process that spoils the replies to some prompts in one
// way per subtest. Those tasks end failed with a reason naming the problem;
// the other tasks, and tasks published afterwards, are done by the same
// worker process.
func TestBadServerRepliesFailTheTaskNotTheWorker(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		kind   string
		reason string
	}{
		{"no choices", tinylm.BadReplyNoChoices, "sample: llm: policy endpoint (model \"tiny-0\") /v1/chat/completions: status 200: server returned an empty choice list"},
		{"fewer choices than asked", tinylm.BadReplyFewerChoices, "empty choice list (asked for 1)"},
		{"missing log-probs", tinylm.BadReplyNoLogprobs, "server returned no log-probs for choice 0"},
		{"NaN log-probs", tinylm.BadReplyNaNLogprobs, "non-finite number NaN"},
		{"reasoning split off the content (vLLM --reasoning-parser)", tinylm.BadReplyReasoning, "has a reasoning part apart from its content"},
		{"clamped -inf log-probs (vLLM's -9999.0)", tinylm.BadReplyInfLogprobs, "has log-prob -9999, the server's stand-in for -inf"},
		{"non-numeric reward", tinylm.BadReplyStringReward, "reward: llm: reward endpoint (model \"reward\") /classify: status 200: malformed response body: data[].probs[] is not a number"},
		{"too few rewards", tinylm.BadReplyMissingReward, "classify returned 0 results for 1 inputs"},
		{"too many rewards", tinylm.BadReplyExtraReward, "classify returned 2 results for 1 inputs"},
		{"HTML error page", tinylm.BadReplyHTML, "malformed response body: not JSON"},
		{"body cut off mid-JSON", tinylm.BadReplyTruncated, "malformed response body: truncated JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, "--bad-reply", tc.kind, "--bad-reply-match", marker)
			w := e.worker(t)
			bad := e.addTasks(t, "How do rivers start? "+marker, "Why do cats purr? "+marker)
			good := e.addTasks(t, "How do rivers start?", "Why do cats purr?", "What makes bread rise?")
			e.waitSettled(t, append(bad, good...))
			for _, id := range bad {
				tk := e.task(t, id)
				require.Equal(t, store.TaskFailed, tk.status, "prompt %d", id)
				require.Contains(t, tk.error, tc.reason, "prompt %d", id)
				require.Zero(t, tk.responses, "a failed task writes no responses")
			}
			e.requireDone(t, good)

			// The worker lives on and does later tasks.
			require.False(t, w.Exited(), "worker exited:\n%s", w.Tail(20))
			later := e.addTasks(t, "Is the moon moving away from the earth?", "How are mountains made?")
			e.waitSettled(t, later)
			e.requireDone(t, later)
			require.False(t, w.Exited(), "worker exited:\n%s", w.Tail(20))
			require.NotContains(t, strings.ToLower(w.Output()), "panic")
		})
	}
}
