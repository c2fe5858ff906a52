package metric

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

var ln = math.Log

// handWorkedPair is a three-token chosen and a three-token rejected response
// over a three-word vocabulary, with ε = 0.5 so the perturbed logits stay
// logarithms of integers. Perturbed logits are z ± ε·(z − z_ref):
// down = 1.5·z − 0.5·z_ref, up = 0.5·z + 0.5·z_ref.
//
// Chosen, tokens 0, 1, 2:
//
//	t0: z = [ln4, 0, 0], z_ref = [0, 0, 0]. policy 4/6 = 2/3; ref 1/3;
//	    down [ln8, 0, 0] → 8/10 = 4/5; up [ln2, 0, 0] → 2/4 = 1/2.
//	t1: z = [0, ln16, 0], z_ref = [0, ln4, 0]. policy 16/18 = 8/9; ref 4/6 = 2/3;
//	    down 1.5·4ln2 − 0.5·2ln2 = 5ln2 → 32/34 = 16/17;
//	    up 0.5·4ln2 + 0.5·2ln2 = 3ln2 → 8/10 = 4/5.
//	t2: z = z_ref = [ln2, ln3, ln5]: every distribution gives 5/10 = 1/2.
//
// Rejected, tokens 1, 1, 0:
//
//	t0: z = [ln4, 0, 0], z_ref = 0. policy 1/6; ref 1/3; down 1/10; up 1/4.
//	t1: z = [0, 0, 0], z_ref = [ln4, 0, 0]. policy 1/3; ref 1/6;
//	    down [−ln2, 0, 0] → 1/(0.5+1+1) = 2/5; up [ln2, 0, 0] → 1/4.
//	t2: z = z_ref = [ln2, ln3, ln5]: token 0 has 2/10 = 1/5 everywhere.
//
// Log-ratios (chosen − rejected), products of the per-token probabilities:
//
//	reference: (1/3·2/3·1/2)/(1/3·1/6·1/5)   = (1/9)/(1/90)    = 10
//	policy:    (2/3·8/9·1/2)/(1/6·1/3·1/5)   = (8/27)/(1/90)   = 80/3
//	down:      (4/5·16/17·1/2)/(1/10·2/5·1/5) = (32/85)/(1/125) = 800/17
//	up:        (1/2·4/5·1/2)/(1/4·1/4·1/5)   = (1/5)/(1/80)    = 16
//
// DPO logits h = ln(policy ratio) − ln(reference ratio):
// h = ln(8/3) ≈ 0.981, h_down = ln(80/17) ≈ 1.549, h_up = ln(1.6) ≈ 0.470.
// h_down > h > h_up, so s = +1 and β_i = β/(1+ε).
func handWorkedPair() (chosen, rejected Sequence) {
	chosen = Sequence{
		Tokens: []int{0, 1, 2},
		Policy: [][]float64{
			{ln(4), 0, 0},
			{0, ln(16), 0},
			{ln(2), ln(3), ln(5)},
		},
		Reference: [][]float64{
			{0, 0, 0},
			{0, ln(4), 0},
			{ln(2), ln(3), ln(5)},
		},
	}
	rejected = Sequence{
		Tokens: []int{1, 1, 0},
		Policy: [][]float64{
			{ln(4), 0, 0},
			{0, 0, 0},
			{ln(2), ln(3), ln(5)},
		},
		Reference: [][]float64{
			{0, 0, 0},
			{ln(4), 0, 0},
			{ln(2), ln(3), ln(5)},
		},
	}
	return chosen, rejected
}

func TestPerturbedLogProbsHandWorked(t *testing.T) {
	t.Parallel()
	chosen, rejected := handWorkedPair()
	tests := []struct {
		name string
		seq  Sequence
		want TokenLogProbs
	}{
		{
			name: "chosen",
			seq:  chosen,
			want: TokenLogProbs{
				Policy:    []float64{ln(2.0 / 3), ln(8.0 / 9), ln(0.5)},
				Reference: []float64{ln(1.0 / 3), ln(2.0 / 3), ln(0.5)},
				Down:      []float64{ln(4.0 / 5), ln(16.0 / 17), ln(0.5)},
				Up:        []float64{ln(0.5), ln(4.0 / 5), ln(0.5)},
			},
		},
		{
			name: "rejected",
			seq:  rejected,
			want: TokenLogProbs{
				Policy:    []float64{ln(1.0 / 6), ln(1.0 / 3), ln(0.2)},
				Reference: []float64{ln(1.0 / 3), ln(1.0 / 6), ln(0.2)},
				Down:      []float64{ln(0.1), ln(0.4), ln(0.2)},
				Up:        []float64{ln(0.25), ln(0.25), ln(0.2)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := PerturbedLogProbs(tt.seq, 0.5)
			require.NoError(t, err)
			require.InDeltaSlice(t, tt.want.Policy, got.Policy, 1e-12)
			require.InDeltaSlice(t, tt.want.Reference, got.Reference, 1e-12)
			require.InDeltaSlice(t, tt.want.Down, got.Down, 1e-12)
			require.InDeltaSlice(t, tt.want.Up, got.Up, 1e-12)
		})
	}
}

func TestEpsilonDPOStepHandWorked(t *testing.T) {
	t.Parallel()
	chosen, rejected := handWorkedPair()
	tests := []struct {
		name             string
		chosen, rejected Sequence
		h, down, up      float64
		step             int
		beta             float64
	}{
		{
			name: "confidence grows as beta goes down", chosen: chosen, rejected: rejected,
			h: ln(8.0 / 3), down: ln(80.0 / 17), up: ln(1.6),
			step: 1, beta: 0.1 / 1.5, // β/(1+ε) = 1/15
		},
		{
			// Swapping the responses negates every logit: −h_up > −h > −h_down.
			name: "swapped pair steps the other way", chosen: rejected, rejected: chosen,
			h: -ln(8.0 / 3), down: -ln(80.0 / 17), up: -ln(1.6),
			step: -1, beta: 0.1 / 0.5, // β/(1−ε) = 1/5
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EpsilonDPOStep(tt.chosen, tt.rejected, 0.1, 0.5)
			require.NoError(t, err)
			require.InDelta(t, tt.h, got.Logit, 1e-12)
			require.InDelta(t, tt.down, got.LogitDown, 1e-12)
			require.InDelta(t, tt.up, got.LogitUp, 1e-12)
			require.Equal(t, tt.step, got.Step)
			require.InDelta(t, tt.beta, got.Beta, 1e-15)
		})
	}
}

func TestEpsilonDPOStepPolicyEqualsReference(t *testing.T) {
	t.Parallel()
	// With π_θ = π_ref every perturbation is the policy itself, so the three
	// logits coincide exactly and there is no monotone trend: s = 0, β_i = β.
	rng := rand.New(rand.NewPCG(11, 12))
	seq := func(tokens, vocab int) Sequence {
		s := Sequence{Tokens: make([]int, tokens), Policy: make([][]float64, tokens), Reference: make([][]float64, tokens)}
		for t := range tokens {
			s.Tokens[t] = rng.IntN(vocab)
			row := make([]float64, vocab)
			for j := range row {
				row[j] = rng.NormFloat64() * 5
			}
			s.Policy[t], s.Reference[t] = row, append([]float64(nil), row...)
		}
		return s
	}
	tests := []struct {
		name         string
		tokens, vocb int
		epsilon      float64
	}{
		{name: "default epsilon", tokens: 7, vocb: 11, epsilon: DefaultEpsilon},
		{name: "large epsilon", tokens: 3, vocb: 3, epsilon: 0.9},
		{name: "long response", tokens: 200, vocb: 50, epsilon: 0.01},
	}
	for _, tt := range tests {
		w, l := seq(tt.tokens, tt.vocb), seq(tt.tokens+1, tt.vocb)
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EpsilonDPOStep(w, l, DefaultBeta, tt.epsilon)
			require.NoError(t, err)
			require.Equal(t, 0, got.Step)
			require.Equal(t, DefaultBeta, got.Beta)
			require.Equal(t, got.Logit, got.LogitDown)
			require.Equal(t, got.Logit, got.LogitUp)
			require.InDelta(t, 0, got.Logit, 1e-9, "policy log-ratio equals the reference log-ratio")
		})
	}
}

func TestEpsilonDPOStepErrors(t *testing.T) {
	t.Parallel()
	chosen, rejected := handWorkedPair()
	bad := func(edit func(*Sequence)) Sequence {
		s := Sequence{Tokens: []int{0, 1}, Policy: [][]float64{{0, 1}, {1, 0}}, Reference: [][]float64{{0, 0}, {0, 0}}}
		edit(&s)
		return s
	}
	tests := []struct {
		name           string
		chosen, reject Sequence
		beta, epsilon  float64
		want           string
	}{
		{name: "zero epsilon", chosen: chosen, reject: rejected, beta: 0.1, epsilon: 0, want: "epsilon 0 out of range"},
		{name: "epsilon one", chosen: chosen, reject: rejected, beta: 0.1, epsilon: 1, want: "want 0 < ε < 1"},
		{name: "negative beta", chosen: chosen, reject: rejected, beta: -0.1, epsilon: 0.01, want: "beta must be"},
		{name: "no tokens", chosen: Sequence{}, reject: rejected, beta: 0.1, epsilon: 0.01, want: "chosen: sequence has no tokens"},
		{name: "missing rows", chosen: chosen, reject: bad(func(s *Sequence) { s.Reference = s.Reference[:1] }), beta: 0.1, epsilon: 0.01, want: "rejected: sequence has 2 tokens but 2 policy and 1 reference"},
		{name: "ragged rows", chosen: bad(func(s *Sequence) { s.Policy[1] = []float64{1, 2, 3} }), reject: rejected, beta: 0.1, epsilon: 0.01, want: "token 1: logit rows of length 3"},
		{name: "empty vocabulary", chosen: bad(func(s *Sequence) { s.Policy[0], s.Reference[0] = nil, nil }), reject: rejected, beta: 0.1, epsilon: 0.01, want: "empty logit row"},
		{name: "token out of vocabulary", chosen: bad(func(s *Sequence) { s.Tokens[1] = 2 }), reject: rejected, beta: 0.1, epsilon: 0.01, want: "token 1: id 2 outside the vocabulary [0, 2)"},
		{name: "NaN logit", chosen: bad(func(s *Sequence) { s.Reference[0][1] = math.NaN() }), reject: rejected, beta: 0.1, epsilon: 0.01, want: "token 0: non-finite logit at vocabulary index 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := EpsilonDPOStep(tt.chosen, tt.reject, tt.beta, tt.epsilon)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestLogSoftmaxLargeLogits(t *testing.T) {
	t.Parallel()
	// exp(1000) overflows; the max shift must keep this at log(1/2).
	seq := Sequence{Tokens: []int{0}, Policy: [][]float64{{1000, 1000}}, Reference: [][]float64{{1000, 1000}}}
	got, err := PerturbedLogProbs(seq, DefaultEpsilon)
	require.NoError(t, err)
	require.InDelta(t, ln(0.5), got.Policy[0], 1e-12)
	require.InDelta(t, ln(0.5), got.Down[0], 1e-12)
}

func TestNextBeta(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		beta  float64
		betas []float64
		want  float64
	}{
		{name: "empty batch keeps beta", beta: 0.01, want: 0.01},
		// (0.01/1.01 + 0.01 + 0.01/0.99)/3: the ±ε terms nearly cancel,
		// 0.00990099… + 0.01 + 0.01010101… = 0.03000200…, /3 = 0.01000066…
		{name: "one step each way", beta: 0.01, betas: []float64{0.01 / 1.01, 0.01, 0.01 / 0.99}, want: (0.01/1.01 + 0.01 + 0.01/0.99) / 3},
		// All pairs relax: mean is β/(1+ε) = 0.01/1.01.
		{name: "all down", beta: 0.01, betas: []float64{0.01 / 1.01, 0.01 / 1.01}, want: 0.01 / 1.01},
		{name: "halves", beta: 0.2, betas: []float64{0.1, 0.3}, want: 0.2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.InDelta(t, tt.want, NextBeta(tt.beta, tt.betas), 1e-15)
		})
	}
}

// TestEpsilonDPOSharedVectors checks EpsilonDPOStep, EpsilonStep.Loss and
// NextBeta against testdata/epsilon_dpo_vectors.json, the vectors the
// Python trainer (examples/vllm/epsilon_dpo.py) is checked against too.
// Their expected values come from 60-digit decimal arithmetic
// (testdata/make_epsilon_dpo_vectors.py). The first two are handWorkedPair
// and its swap, at β = 0.1, ε = 0.5, worked by hand above: h = ln(8/3),
// h_down = ln(80/17), h_up = ln(1.6); s = +1, β_i = 0.1/1.5 = 1/15 and
// loss = ln(1 + e^(−h/15)) = ln(1 + (3/8)^(1/15)) ≈ 0.66099; swapped,
// s = −1, β_i = 0.1/0.5 = 1/5 and loss = ln(1 + (8/3)^(1/5)) ≈ 0.79603.
// The third is a policy equal to its reference: every logit 0, s = 0 and
// loss = ln 2. NextBeta of the two hand-worked β_i is (1/15 + 1/5)/2 = 2/15.
func TestEpsilonDPOSharedVectors(t *testing.T) {
	t.Parallel()
	type sequence struct {
		Tokens    []int       `json:"tokens"`
		Policy    [][]float64 `json:"policy"`
		Reference [][]float64 `json:"reference"`
	}
	var file struct {
		Pairs []struct {
			Name     string   `json:"name"`
			Beta     float64  `json:"beta"`
			Epsilon  float64  `json:"epsilon"`
			Chosen   sequence `json:"chosen"`
			Rejected sequence `json:"rejected"`
			Want     struct {
				Logit     float64 `json:"logit"`
				LogitDown float64 `json:"logit_down"`
				LogitUp   float64 `json:"logit_up"`
				Step      int     `json:"step"`
				Beta      float64 `json:"beta"`
				Loss      float64 `json:"loss"`
			} `json:"want"`
		} `json:"pairs"`
		NextBeta []struct {
			Name      string    `json:"name"`
			Beta      float64   `json:"beta"`
			PairBetas []float64 `json:"pair_betas"`
			Want      float64   `json:"want"`
		} `json:"next_beta"`
	}
	b, err := os.ReadFile(filepath.Join("testdata", "epsilon_dpo_vectors.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &file))
	require.GreaterOrEqual(t, len(file.Pairs), 8)

	handWorked := []struct{ logit, down, up, beta, loss float64 }{
		{ln(8.0 / 3), ln(80.0 / 17), ln(1.6), 1.0 / 15, math.Log1p(math.Pow(3.0/8, 1.0/15))},
		{-ln(8.0 / 3), -ln(80.0 / 17), -ln(1.6), 1.0 / 5, math.Log1p(math.Pow(8.0/3, 1.0/5))},
		{0, 0, 0, 0.01, math.Ln2},
	}
	steps := map[int]int{}
	for i, v := range file.Pairs {
		t.Run(v.Name, func(t *testing.T) {
			seq := func(s sequence) Sequence { return Sequence{Tokens: s.Tokens, Policy: s.Policy, Reference: s.Reference} }
			got, err := EpsilonDPOStep(seq(v.Chosen), seq(v.Rejected), v.Beta, v.Epsilon)
			require.NoError(t, err)
			require.InDelta(t, v.Want.Logit, got.Logit, 1e-9)
			require.InDelta(t, v.Want.LogitDown, got.LogitDown, 1e-9)
			require.InDelta(t, v.Want.LogitUp, got.LogitUp, 1e-9)
			require.Equal(t, v.Want.Step, got.Step)
			require.InDelta(t, v.Want.Beta, got.Beta, 1e-9)
			require.InDelta(t, v.Want.Loss, got.Loss(), 1e-9)
			if i < len(handWorked) {
				// The file's expected values are the hand-worked ones.
				hw := handWorked[i]
				require.InDelta(t, hw.logit, v.Want.Logit, 1e-12)
				require.InDelta(t, hw.down, v.Want.LogitDown, 1e-12)
				require.InDelta(t, hw.up, v.Want.LogitUp, 1e-12)
				require.InDelta(t, hw.beta, v.Want.Beta, 1e-15)
				require.InDelta(t, hw.loss, v.Want.Loss, 1e-12)
			}
		})
		steps[v.Want.Step]++
	}
	require.Positive(t, steps[1], "a vector with s = +1")
	require.Positive(t, steps[-1], "a vector with s = -1")
	require.GreaterOrEqual(t, steps[0], 2, "a tie and a non-monotone pair, s = 0")

	require.InDelta(t, 2.0/15, file.NextBeta[0].Want, 1e-15, file.NextBeta[0].Name)
	for _, c := range file.NextBeta {
		require.InDelta(t, c.Want, NextBeta(c.Beta, c.PairBetas), 1e-12, c.Name)
	}
}

func TestEpsilonStepLossIsFiniteFarOut(t *testing.T) {
	t.Parallel()
	// log(1 + e^x): x for large x, e^x for very negative x.
	require.Equal(t, 800.0, EpsilonStep{Beta: 1, Logit: -800}.Loss())
	require.InDelta(t, math.Exp(-800), EpsilonStep{Beta: 1, Logit: 800}.Loss(), 1e-300)
	require.Equal(t, math.Ln2, EpsilonStep{Beta: 0.1, Logit: 0}.Loss())
}
