package tinylm_test

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/corpus"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

func TestReadPreferences(t *testing.T) {
	t.Parallel()
	good := []struct {
		name string
		line string
		want tinylm.Preference
	}{
		{
			name: "conversational, as selfplay exports",
			line: `{"prompt":[{"role":"system","content":"be brief"},{"role":"user","content":"how do i cook rice?"}],"chosen":[{"role":"assistant","content":"rinse it."}],"rejected":[{"role":"assistant","content":"no"}],"prompt_id":7,"score_chosen":2.5}`,
			want: tinylm.Preference{Prompt: []tinylm.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "how do i cook rice?"}}, Chosen: "rinse it.", Rejected: "no"},
		},
		{
			name: "standard strings",
			line: `{"prompt":"how do i cook rice?","chosen":"rinse it.","rejected":"no"}`,
			want: tinylm.Preference{Prompt: []tinylm.Message{{Role: "user", Content: "how do i cook rice?"}}, Chosen: "rinse it.", Rejected: "no"},
		},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tinylm.ReadPreferences(strings.NewReader("\n"+tc.line+"\n\n"), "train.jsonl")
			require.NoError(t, err)
			require.Equal(t, []tinylm.Preference{tc.want}, got)
		})
	}
	bad := []struct {
		name string
		text string
		want string
	}{
		{name: "empty", text: "\n\n", want: "train.jsonl: no preference pairs"},
		{name: "not JSON", text: `{"prompt":` + "\n", want: "train.jsonl:1: not a JSON object"},
		{name: "missing rejected", text: `{"prompt":"a","chosen":"b"}`, want: `train.jsonl:1: "rejected" is missing`},
		{name: "two chosen messages", text: `{"prompt":"a","chosen":[{"role":"assistant","content":"b"},{"role":"user","content":"c"}],"rejected":"d"}`, want: `want exactly one assistant message, got roles [assistant user]`},
		{name: "chosen from the user", text: `{"prompt":"a","chosen":[{"role":"user","content":"b"}],"rejected":"d"}`, want: `"chosen": want exactly one assistant message`},
		{name: "bad role on line 2", text: `{"prompt":"a","chosen":"b","rejected":"c"}` + "\n" + `{"prompt":[{"role":"bot","content":"a"}],"chosen":"b","rejected":"c"}`, want: `train.jsonl:2: "prompt": unknown chat role "bot"`},
		{name: "empty prompt list", text: `{"prompt":[],"chosen":"b","rejected":"c"}`, want: `"prompt" is empty`},
		{name: "number as chosen", text: `{"prompt":"a","chosen":3,"rejected":"c"}`, want: `"chosen": want a string or a list of messages`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tinylm.ReadPreferences(strings.NewReader(tc.text), "train.jsonl")
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// selfPlayPairs is a best-vs-worst dataset sampled from the built-in model,
// encoded for it.
func selfPlayPairs(t *testing.T, m *tinylm.Model, prompts int, seed uint64) []tinylm.PreferencePair {
	t.Helper()
	prefs := tinylmtest.Preferences(t, m, corpus.Prompts(seed, prompts), 4, seed)
	require.Greater(t, len(prefs), prompts/2, "most prompts give a pair")
	pairs := make([]tinylm.PreferencePair, len(prefs))
	for i, p := range prefs {
		var err error
		pairs[i], err = m.Tok.EncodePreference(p)
		require.NoError(t, err)
		require.Equal(t, tinylm.EndID, pairs[i].Chosen[len(pairs[i].Chosen)-1])
	}
	return pairs
}

func TestTrainPreferenceLowersLoss(t *testing.T) {
	t.Parallel()
	data := selfPlayPairs(t, tinylm.Builtin(), 40, 11)
	tests := []struct {
		name string
		opts tinylm.PreferenceOptions
	}{
		{name: "dpo", opts: tinylm.PreferenceOptions{Loss: tinylm.LossDPO}},
		{name: "simpo", opts: tinylm.PreferenceOptions{Loss: tinylm.LossSimPO, Gamma: 0.5}},
		{name: "epsilon-dpo", opts: tinylm.PreferenceOptions{Loss: tinylm.LossEpsilonDPO, Beta: 0.1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			policy := tinylm.Builtin()
			ref := tinylm.Builtin()
			before, err := tinylm.PreferenceLoss(policy, ref, data, tc.opts)
			require.NoError(t, err)
			var seen []int
			opts := tc.opts
			opts.Epochs = 4
			opts.Seed = 3
			opts.Progress = func(s tinylm.EpochStats) { seen = append(seen, s.Epoch) }
			hist, err := tinylm.TrainPreference(policy, ref, data, opts)
			require.NoError(t, err)
			require.Equal(t, []int{1, 2, 3, 4}, seen)
			require.Len(t, hist, 4)
			require.Less(t, hist[3].Loss, hist[0].Loss, "the training loss goes down")
			after, err := tinylm.PreferenceLoss(policy, ref, data, tc.opts)
			require.NoError(t, err)
			require.Less(t, after.Loss, before.Loss-0.05, "the trained policy fits the pairs better")
			require.Greater(t, after.RewardAccuracy, 0.75)
			require.Greater(t, after.RewardAccuracy, before.RewardAccuracy)
			if tc.opts.Loss == tinylm.LossDPO {
				require.InDelta(t, math.Ln2, before.Loss, 1e-12, "the untrained policy is its reference")
			}
			if tc.opts.Loss == tinylm.LossEpsilonDPO {
				// The first batch sees policy = reference, so s = 0 there;
				// afterwards pairs get their own β_i and the base β moves.
				require.Positive(t, hist[3].Relaxed+hist[3].Tightened)
				require.NotEqual(t, 0.1, hist[3].Beta)
				steps := float64(4 * ((len(data) + 7) / 8))
				require.InDelta(t, 0.1, hist[3].Beta, 0.1*(math.Pow(1/0.99, steps)-1), "β moves by at most a factor 1/(1±ε) a step")
			}
		})
	}
}

func TestTrainPreferenceIsDeterministic(t *testing.T) {
	t.Parallel()
	data := selfPlayPairs(t, tinylm.Builtin(), 16, 5)
	train := func(seed uint64) *tinylm.Model {
		m := tinylm.Builtin()
		_, err := tinylm.TrainPreference(m, tinylm.Builtin(), data, tinylm.PreferenceOptions{Loss: tinylm.LossEpsilonDPO, Epochs: 2, BatchSize: 4, Seed: seed})
		require.NoError(t, err)
		return m
	}
	a, b, c := train(1), train(1), train(2)
	for _, p := range [][3][]float64{{a.B, b.B, c.B}, {a.U, b.U, c.U}, {a.E, b.E, c.E}, {a.F, b.F, c.F}} {
		require.True(t, slices.Equal(p[0], p[1]), "the same seed gives the same weights")
	}
	require.False(t, slices.Equal(a.U, c.U), "another seed shuffles differently")
	require.False(t, slices.Equal(a.U, tinylm.Builtin().U), "training changed the model")
}

func TestTrainPreferenceRejectsBadInput(t *testing.T) {
	t.Parallel()
	m := tinylm.Builtin()
	data := []tinylm.PreferencePair{{Prompt: []int{tinylm.UserID, tinylm.EndID, tinylm.AssistantID}, Chosen: []int{tinylm.EndID}, Rejected: []int{tinylm.EndID}}}
	tests := []struct {
		name string
		ref  *tinylm.Model
		data []tinylm.PreferencePair
		opts tinylm.PreferenceOptions
		want string
	}{
		{name: "no pairs", ref: tinylm.Builtin(), opts: tinylm.PreferenceOptions{Loss: tinylm.LossDPO}, want: "no preference pairs"},
		{name: "reference is the policy", ref: m, data: data, opts: tinylm.PreferenceOptions{Loss: tinylm.LossDPO}, want: "must not be the policy"},
		{name: "no reference", data: data, opts: tinylm.PreferenceOptions{Loss: tinylm.LossEpsilonDPO}, want: "needs a reference model"},
		{name: "no loss", ref: tinylm.Builtin(), data: data, want: `unknown loss ""`},
		{name: "negative epochs", ref: tinylm.Builtin(), data: data, opts: tinylm.PreferenceOptions{Loss: tinylm.LossDPO, Epochs: -1}, want: "epochs -1"},
		{name: "bad pair", ref: tinylm.Builtin(), data: []tinylm.PreferencePair{{Prompt: []int{1}, Chosen: []int{-1}, Rejected: []int{1}}}, opts: tinylm.PreferenceOptions{Loss: tinylm.LossDPO}, want: "pair 0: token id -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tinylm.TrainPreference(m, tc.ref, tc.data, tc.opts)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
