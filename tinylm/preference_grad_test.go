package tinylm

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// gradPairs are a few preference pairs over testTokenizer's vocabulary, with
// responses of different lengths so SimPO's normalisation matters.
func gradPairs() []PreferencePair {
	return []PreferencePair{
		{Prompt: []int{UserID, 9, 10, 11, 12, EndID, AssistantID}, Chosen: []int{13, 14, 5, EndID}, Rejected: []int{6, 7, 8, 6, 7, EndID}},
		{Prompt: []int{UserID, 5, 6, EndID, AssistantID}, Chosen: []int{9, 10, 11, 12, EndID}, Rejected: []int{14, EndID}},
		{Prompt: []int{SystemID, 7, EndID, UserID, 8, 9, EndID, AssistantID}, Chosen: []int{5, 6, 7, 8, 13, EndID}, Rejected: []int{5, 6, 7, 8, 12, 12, EndID}},
	}
}

func logProbSum(t *testing.T, m *Model, prompt, resp []int) float64 {
	t.Helper()
	lps, err := m.ResponseLogProbs(prompt, resp)
	require.NoError(t, err)
	var s float64
	for _, x := range lps {
		s += x
	}
	return s
}

// TestPreferenceLossGradientsMatchFiniteDifferences checks the exact
// gradient of each loss, over a batch of pairs, against central finite
// differences in every parameter.
func TestPreferenceLossGradientsMatchFiniteDifferences(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts PreferenceOptions
	}{
		{name: "dpo", opts: PreferenceOptions{Loss: LossDPO, Beta: 0.7}},
		{name: "simpo with margin", opts: PreferenceOptions{Loss: LossSimPO, Beta: 2, Gamma: 0.5}},
		{name: "simpo without margin", opts: PreferenceOptions{Loss: LossSimPO, Beta: 1.5}},
		{name: "epsilon-dpo", opts: PreferenceOptions{Loss: LossEpsilonDPO, Beta: 0.7, Epsilon: 0.1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			policy := testModel(t)
			ref, err := NewModel(testTokenizer(t), 4, 0.7, 7)
			require.NoError(t, err)
			pairs := gradPairs()
			scale := 1 / float64(len(pairs))

			g := NewGrad(policy)
			steps := map[int]int{}
			for _, p := range pairs {
				r, err := PairLoss(policy, ref, p, tc.opts, g, scale)
				require.NoError(t, err)
				steps[r.Step]++
			}
			if tc.opts.Loss == LossEpsilonDPO {
				require.Less(t, steps[0], len(pairs), "some pair gets its own β_i, so the check covers β_i ≠ β")
			}
			mean := func() float64 {
				var s float64
				for _, p := range pairs {
					r, err := PairLoss(policy, ref, p, tc.opts, nil, 0)
					require.NoError(t, err)
					s += r.Loss
				}
				return s * scale
			}
			const eps = 1e-5
			params := map[string][2][]float64{"B": {policy.B, g.B}, "U": {policy.U, g.U}, "E": {policy.E, g.E}, "F": {policy.F, g.F}}
			var nonzero int
			for name, pg := range params {
				p, gr := pg[0], pg[1]
				for i := range p {
					old := p[i]
					p[i] = old + eps
					up := mean()
					p[i] = old - eps
					down := mean()
					p[i] = old
					num := (up - down) / (2 * eps)
					require.InDelta(t, num, gr[i], 1e-7, "%s[%d]", name, i)
					if math.Abs(gr[i]) > 1e-4 {
						nonzero++
					}
				}
			}
			require.Greater(t, nonzero, 50, "the check exercised real gradients")
		})
	}
}

// TestPairLossValues checks each loss against its formula written out from
// the sequence log-probabilities.
func TestPairLossValues(t *testing.T) {
	t.Parallel()
	policy := testModel(t)
	ref, err := NewModel(testTokenizer(t), 4, 0.7, 7)
	require.NoError(t, err)
	p := gradPairs()[0]
	lw, ll := logProbSum(t, policy, p.Prompt, p.Chosen), logProbSum(t, policy, p.Prompt, p.Rejected)
	rw, rl := logProbSum(t, ref, p.Prompt, p.Chosen), logProbSum(t, ref, p.Prompt, p.Rejected)
	h := (lw - rw) - (ll - rl)
	nll := func(u float64) float64 { return -math.Log(1 / (1 + math.Exp(-u))) }

	t.Run("dpo", func(t *testing.T) {
		t.Parallel()
		r, err := PairLoss(policy, ref, p, PreferenceOptions{Loss: LossDPO, Beta: 0.3}, nil, 0)
		require.NoError(t, err)
		require.InDelta(t, nll(0.3*h), r.Loss, 1e-12)
		require.InDelta(t, 0.3*h, r.Margin, 1e-12)
		require.Equal(t, h > 0, r.Correct)
		require.Equal(t, 0.3, r.Beta)
	})
	t.Run("dpo against itself is log 2", func(t *testing.T) {
		t.Parallel()
		// h = 0 exactly when the policy is its own reference: σ(0) = 1/2.
		r, err := PairLoss(policy, policy.Clone(), p, PreferenceOptions{Loss: LossDPO}, nil, 0)
		require.NoError(t, err)
		require.InDelta(t, math.Ln2, r.Loss, 1e-12)
		require.Zero(t, r.Margin)
		require.False(t, r.Correct)
		require.Equal(t, 0.1, r.Beta, "dpo's default β")
	})
	t.Run("simpo", func(t *testing.T) {
		t.Parallel()
		nw, nl := float64(len(p.Chosen)), float64(len(p.Rejected))
		r, err := PairLoss(policy, nil, p, PreferenceOptions{Loss: LossSimPO, Beta: 2.5, Gamma: 1.2}, nil, 0)
		require.NoError(t, err)
		require.InDelta(t, nll(2.5*(lw/nw-ll/nl)-1.2), r.Loss, 1e-12)
		require.InDelta(t, 2.5*(lw/nw-ll/nl), r.Margin, 1e-12)
	})
	t.Run("epsilon-dpo", func(t *testing.T) {
		t.Parallel()
		const beta, eps = 0.4, 0.05
		r, err := PairLoss(policy, ref, p, PreferenceOptions{Loss: LossEpsilonDPO, Beta: beta, Epsilon: eps}, nil, 0)
		require.NoError(t, err)
		require.Contains(t, []int{-1, 0, 1}, r.Step)
		require.InDelta(t, beta/(1+eps*float64(r.Step)), r.Beta, 1e-15)
		require.InDelta(t, nll(r.Beta*h), r.Loss, 1e-9)
	})
}

func TestResponseLogitsAgreeWithLogProbs(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	p := gradPairs()[2]
	rows, err := m.ResponseLogits(p.Prompt, p.Chosen)
	require.NoError(t, err)
	lps, err := m.ResponseLogProbs(p.Prompt, p.Chosen)
	require.NoError(t, err)
	require.Len(t, rows, len(p.Chosen))
	for i, row := range rows {
		require.Len(t, row, m.V())
		require.InDelta(t, lps[i], row[p.Chosen[i]]-LogSumExp(row), 1e-12, "token %d", i)
	}
	_, err = m.ResponseLogits(nil, p.Chosen)
	require.ErrorContains(t, err, "empty prompt")
	_, err = m.ResponseLogits(p.Prompt, []int{m.V()})
	require.ErrorContains(t, err, "outside the vocabulary")
}

func TestPairLossRejectsBadInput(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	other, err := NewModel(mustTokenizer(t, []string{TokUnk, TokSystem, TokUser, TokAssistant, TokEnd, "x"}), 4, 0.1, 1)
	require.NoError(t, err)
	good := gradPairs()[0]
	tests := []struct {
		name string
		ref  *Model
		pair PreferencePair
		opts PreferenceOptions
		want string
	}{
		{name: "unknown loss", ref: m, pair: good, opts: PreferenceOptions{Loss: "ipo"}, want: `unknown loss "ipo"`},
		{name: "dpo without reference", pair: good, opts: PreferenceOptions{Loss: LossDPO}, want: "needs a reference model"},
		{name: "other vocabulary", ref: other, pair: good, opts: PreferenceOptions{Loss: LossDPO}, want: "vocabularies differ"},
		{name: "negative beta", ref: m, pair: good, opts: PreferenceOptions{Loss: LossDPO, Beta: -1}, want: "beta -1"},
		{name: "epsilon of one", ref: m, pair: good, opts: PreferenceOptions{Loss: LossEpsilonDPO, Epsilon: 1}, want: "epsilon 1"},
		{name: "negative gamma", pair: good, opts: PreferenceOptions{Loss: LossSimPO, Gamma: -0.5}, want: "gamma -0.5"},
		{name: "empty rejected", ref: m, pair: PreferencePair{Prompt: good.Prompt, Chosen: good.Chosen}, opts: PreferenceOptions{Loss: LossDPO}, want: "empty chosen or rejected"},
		{name: "id outside vocabulary", ref: m, pair: PreferencePair{Prompt: good.Prompt, Chosen: []int{99}, Rejected: good.Rejected}, opts: PreferenceOptions{Loss: LossDPO}, want: "outside the vocabulary"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := PairLoss(m, tc.ref, tc.pair, tc.opts, nil, 0)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func mustTokenizer(t *testing.T, words []string) *Tokenizer {
	t.Helper()
	tok, err := NewTokenizer(words)
	require.NoError(t, err)
	return tok
}
