package metric

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func ref(v float64) *float64 { return &v }

func TestMakePairGolden(t *testing.T) {
	t.Parallel()
	samples := []Sample{
		{Index: 0, Content: "a", Tokens: 5, LogProb: -4, RefLogProb: ref(-5), Reward: 0.5},
		{Index: 1, Content: "b", Tokens: 4, LogProb: -8, RefLogProb: ref(-10), Reward: 2.0},
		{Index: 2, Content: "c", Tokens: 3, LogProb: -9, RefLogProb: ref(-7), Reward: -1.0},
		{Index: 3, Content: "d", Tokens: 2, LogProb: -1, RefLogProb: ref(-1), Reward: 2.0},
		{Index: 4, Content: "e", Tokens: 6, LogProb: -3, RefLogProb: ref(-3), Reward: 0.25},
	}
	// Chosen: rewards 2.0 tie between indexes 1 and 3 → lowest index, 1.
	// Rejected: lowest reward −1.0 → index 2.
	// m_ex = 2.0 − (−1.0) = 3.
	// m_im = −8/4 − (−9/3) = −2 + 3 = 1.
	// DPO, β = 0.1: 0.1·[(−8 − (−10)) − (−9 − (−7))] = 0.1·[2 − (−2)] = 0.4.
	p, reason, err := MakePair(samples, 0.1)
	require.NoError(t, err)
	require.Empty(t, reason)
	require.Equal(t, 1, p.Chosen)
	require.Equal(t, 2, p.Rejected)
	require.InDelta(t, 3.0, p.ExplicitMargin, 1e-12)
	require.InDelta(t, 1.0, p.ImplicitMargin, 1e-12)
	require.NotNil(t, p.DPOMargin)
	require.InDelta(t, 0.4, *p.DPOMargin, 1e-12)
}

func TestMakePairTies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		samples                []Sample
		wantChosen, wantReject int
	}{
		{
			name: "chosen tie goes to the lowest index",
			samples: []Sample{
				{Index: 2, Content: "x", Tokens: 1, Reward: 5},
				{Index: 0, Content: "y", Tokens: 1, Reward: 5},
				{Index: 1, Content: "z", Tokens: 1, Reward: 1},
			},
			wantChosen: 0, wantReject: 1,
		},
		{
			// numpy.argmin, which the authors' code takes, returns the
			// first lowest: of rewards [4, -1, _, -1, -1] that is index 1.
			name: "rejected tie goes to the lowest index",
			samples: []Sample{
				{Index: 3, Content: "x", Tokens: 1, Reward: -1},
				{Index: 0, Content: "y", Tokens: 1, Reward: 4},
				{Index: 4, Content: "z", Tokens: 1, Reward: -1},
				{Index: 1, Content: "w", Tokens: 1, Reward: -1},
			},
			wantChosen: 0, wantReject: 1,
		},
		{
			// Integer judge rewards [3, 1, 3, 1]: argmax 0, argmin 1.
			name: "integer rewards tied at both ends",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 1, Reward: 3},
				{Index: 1, Content: "b", Tokens: 1, Reward: 1},
				{Index: 2, Content: "c", Tokens: 1, Reward: 3},
				{Index: 3, Content: "d", Tokens: 1, Reward: 1},
			},
			wantChosen: 0, wantReject: 1,
		},
		{
			name: "an invalid sample with the best reward is dropped",
			samples: []Sample{
				{Index: 0, Content: "x", Tokens: 0, Reward: 9},
				{Index: 1, Content: "y", Tokens: 2, Reward: 3},
				{Index: 2, Content: "z", Tokens: 2, Reward: 1},
			},
			wantChosen: 1, wantReject: 2,
		},
		{
			name: "a sample with a NaN reference is dropped",
			samples: []Sample{
				{Index: 0, Content: "x", Tokens: 1, Reward: 3},
				{Index: 1, Content: "y", Tokens: 1, Reward: -5, RefLogProb: ref(math.NaN())},
				{Index: 2, Content: "z", Tokens: 1, Reward: 1},
			},
			wantChosen: 0, wantReject: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, reason, err := MakePair(tt.samples, DefaultBeta)
			require.NoError(t, err)
			require.Empty(t, reason)
			require.Equal(t, tt.wantChosen, p.Chosen)
			require.Equal(t, tt.wantReject, p.Rejected)
			require.Nil(t, p.DPOMargin, "no reference on both sides")
		})
	}
}

func TestMakePairNoPair(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		samples []Sample
		want    NoPairReason
	}{
		{name: "no samples", want: NoPairTooFewValidSamples},
		{name: "one sample", samples: []Sample{{Index: 0, Content: "a", Tokens: 3, Reward: 1}}, want: NoPairTooFewValidSamples},
		{
			name: "invalid samples leave one",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 3, Reward: 1},
				{Index: 1, Content: "b", Tokens: 0, Reward: 2},
				{Index: 2, Content: "c", Tokens: -1, Reward: 3},
				{Index: 3, Content: "d", Tokens: 3, Reward: 4, LogProb: math.NaN()},
				{Index: 4, Content: "e", Tokens: 3, Reward: math.Inf(1)},
				{Index: 5, Content: "f", Tokens: 3, Reward: 5, LogProb: math.Inf(-1)},
				{Index: 6, Content: "g", Tokens: 3, Reward: 6, RefLogProb: ref(math.Inf(-1))},
				{Index: 7, Content: "h", Tokens: 3, Reward: math.NaN()},
			},
			want: NoPairTooFewValidSamples,
		},
		{
			name: "all rewards equal",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 3, Reward: 0.5},
				{Index: 1, Content: "b", Tokens: 4, Reward: 0.5},
				{Index: 2, Content: "c", Tokens: 5, Reward: 0.5},
			},
			want: NoPairAllRewardsEqual,
		},
		{
			name: "valid rewards equal once the invalid one is dropped",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 3, Reward: 0.5},
				{Index: 1, Content: "b", Tokens: 0, Reward: 9},
				{Index: 2, Content: "c", Tokens: 5, Reward: 0.5},
			},
			want: NoPairAllRewardsEqual,
		},
		{
			name: "explicit margin overflows",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 3, Reward: 1e308},
				{Index: 1, Content: "b", Tokens: 3, Reward: -1e308},
			},
			want: NoPairMarginNotFinite,
		},
		{
			name: "implicit margin overflows",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 1, Reward: 2, LogProb: 1.5e308},
				{Index: 1, Content: "b", Tokens: 1, Reward: 1, LogProb: -1.5e308},
			},
			want: NoPairMarginNotFinite,
		},
		{
			name: "dpo margin overflows",
			samples: []Sample{
				{Index: 0, Content: "a", Tokens: 1, Reward: 2, LogProb: -1, RefLogProb: ref(-1.7e308)},
				{Index: 1, Content: "b", Tokens: 1, Reward: 1, LogProb: -1, RefLogProb: ref(1.7e308)},
			},
			want: NoPairMarginNotFinite,
		},
		{
			name: "chosen and rejected texts identical",
			samples: []Sample{
				{Index: 0, Content: "same", Tokens: 3, Reward: 2},
				{Index: 1, Content: "other", Tokens: 3, Reward: 1},
				{Index: 2, Content: "same", Tokens: 3, Reward: 0},
			},
			want: NoPairIdenticalTexts,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, reason, err := MakePair(tt.samples, DefaultBeta)
			require.NoError(t, err)
			require.Equal(t, tt.want, reason)
			require.Equal(t, Pair{}, p)
		})
	}
}

func TestMakePairErrors(t *testing.T) {
	t.Parallel()
	two := []Sample{{Index: 0, Content: "a", Tokens: 1, Reward: 1}, {Index: 1, Content: "b", Tokens: 1}}
	tests := []struct {
		name    string
		samples []Sample
		beta    float64
		want    string
	}{
		{name: "zero beta", samples: two, beta: 0, want: "beta must be a positive finite number"},
		{name: "NaN beta", samples: two, beta: math.NaN(), want: "beta must be"},
		{name: "infinite beta", samples: two, beta: math.Inf(1), want: "beta must be"},
		{name: "duplicate index", samples: append(two, Sample{Index: 1, Content: "c", Tokens: 1}), beta: 0.1, want: "sample index 1 appears twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := MakePair(tt.samples, tt.beta)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestPairItem(t *testing.T) {
	t.Parallel()
	withRef := Pair{ExplicitMargin: 2, ImplicitMargin: -0.5, DPOMargin: ref(0.03)}
	tests := []struct {
		name    string
		pair    Pair
		form    ImplicitForm
		want    Item
		wantErr string
	}{
		{name: "simpo", pair: withRef, form: ImplicitSimPO, want: Item{ID: 7, ExplicitMargin: 2, ImplicitMargin: -0.5}},
		{name: "dpo", pair: withRef, form: ImplicitDPO, want: Item{ID: 7, ExplicitMargin: 2, ImplicitMargin: 0.03}},
		{name: "dpo without reference", pair: Pair{ExplicitMargin: 2}, form: ImplicitDPO, wantErr: "has no DPO margin"},
		{name: "unknown form", pair: withRef, form: "ipo", wantErr: `unknown implicit margin form "ipo"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.pair.Item(7, tt.form)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseImplicitForm(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     ImplicitForm
		ok       bool
	}{
		{name: "simpo", in: "simpo", want: ImplicitSimPO, ok: true},
		{name: "dpo padded", in: " dpo ", want: ImplicitDPO, ok: true},
		{name: "unknown", in: "orpo"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseImplicitForm(tt.in)
			if !tt.ok {
				require.ErrorContains(t, err, `want "simpo" or "dpo"`)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
