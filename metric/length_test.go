package metric

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestFitLength(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                 string
		tokens               []int
		rewards              []float64
		defined              bool
		slope, intercept, r2 float64
	}{
		// x̄ = 2.5, ȳ = 3; Sxx = 5, Sxy = 7, Syy = 14: slope 1.4,
		// intercept 3 − 1.4·2.5 = −0.5, R² = 49/70 = 0.7.
		{name: "by hand", tokens: []int{4, 1, 2, 3}, rewards: []float64{6, 1, 3, 2}, defined: true, slope: 1.4, intercept: -0.5, r2: 0.7},
		// A perfect line: reward = 0.1·tokens + 2 (0.1 inexact in binary).
		{name: "perfect line", tokens: []int{10, 20, 30}, rewards: []float64{3, 4, 5}, defined: true, slope: 0.1, intercept: 2, r2: 1},
		// Rewards all equal: a flat line that explains nothing.
		{name: "equal rewards", tokens: []int{1, 5, 9}, rewards: []float64{0.3, 0.3, 0.3}, defined: true, slope: 0, intercept: 0.3, r2: 0},
		// The same offset of 1e9 on every reward: only the spread matters.
		{name: "large offset", tokens: []int{4, 1, 2, 3}, rewards: []float64{1e9 + 6, 1e9 + 1, 1e9 + 3, 1e9 + 2}, defined: true, slope: 1.4, intercept: 1e9 - 0.5, r2: 0.7},
		{name: "same length", tokens: []int{7, 7, 7}, rewards: []float64{1, 2, 3}},
		{name: "one response", tokens: []int{3}, rewards: []float64{1}},
		{name: "none"},
	} {
		fit, err := FitLength(tc.tokens, tc.rewards)
		require.NoError(t, err, tc.name)
		require.Equal(t, len(tc.tokens), fit.N, tc.name)
		require.Equal(t, tc.defined, fit.Defined, tc.name)
		require.InDelta(t, tc.slope, fit.Slope, 1e-12, tc.name)
		require.InDelta(t, tc.intercept, fit.Intercept, 1e-6, tc.name)
		require.InDelta(t, tc.r2, fit.R2, 1e-12, tc.name)
	}

	_, err := FitLength([]int{1, 2}, []float64{1})
	require.EqualError(t, err, "2 token counts but 1 rewards")
	_, err = FitLength([]int{1, 2}, []float64{1, math.Inf(-1)})
	require.EqualError(t, err, "response 1: reward must be finite, got -Inf")
}

func TestResidualMargin(t *testing.T) {
	t.Parallel()
	// (r_w − s·t_w) − (r_l − s·t_l) with r_w = 6, t_w = 4, r_l = 1, t_l = 1,
	// s = 1.4: 0.4 − (−0.4) = 0.8 (to rounding: 1.4 is inexact).
	require.InDelta(t, 0.8, ResidualMargin(5, 1.4, 4, 1), 1e-15)
	// A shorter chosen reply gains: 1 − 1.4·(2 − 3) = 2.4.
	require.InDelta(t, 2.4, ResidualMargin(1, 1.4, 2, 3), 1e-15)
	// Equal lengths: the raw margin, exactly.
	require.Equal(t, 0.3, ResidualMargin(0.3, 1.4, 9, 9))
}

func TestLengthDrift(t *testing.T) {
	t.Parallel()
	require.InDelta(t, 0.25, LengthDrift(40, 50), 1e-15)
	require.InDelta(t, -0.5, LengthDrift(40, 20), 1e-15)
	require.Equal(t, 0.0, LengthDrift(0, 50), "nothing to compare with")
	require.Equal(t, 0.0, LengthDrift(math.NaN(), 50))
}
