package metric_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
)

func TestRanksAverageTies(t *testing.T) {
	t.Parallel()
	a, b := 0.1, 0.2 // variables: Go's constant arithmetic would be exact
	for _, tc := range []struct {
		name string
		in   []float64
		want []float64
	}{
		{"no ties", []float64{30, 10, 20}, []float64{3, 1, 2}},
		{"one tie", []float64{10, 20, 20, 30}, []float64{1, 2.5, 2.5, 4}},
		// Three equal values span ranks 2, 3, 4: each gets 3.
		{"three tied, unsorted", []float64{0.5, 0.1, 0.5, 0.9, 0.5}, []float64{3, 1, 3, 5, 3}},
		{"all equal", []float64{-1, -1, -1, -1}, []float64{2.5, 2.5, 2.5, 2.5}},
		// 0.1+0.2 is not 0.3 in float64: they are different values.
		{"inexact in binary", []float64{a + b, 0.3}, []float64{2, 1}},
		{"empty", []float64{}, []float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, metric.Ranks(tc.in))
		})
	}
}

// Worked by hand: x = {1, 2, 2, 3} ranks {1, 2.5, 2.5, 4}, y = {10, 20, 30,
// 30} ranks {1, 2, 3.5, 3.5}; both mean 2.5; deviations {-1.5, 0, 0, 1.5}
// and {-1.5, -0.5, 1, 1}; Σdxdy = 2.25 + 1.5 = 3.75, Σdx² = Σdy² = 4.5, so
// ρ = 3.75/4.5 = 5/6. The no-ties shortcut 1 − 6Σd²/(n(n²−1)) would give
// 1 − 6·1.5/60 = 0.85: the helper must not use it.
func TestSpearmanHandWorkedTies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		x, y []float64
		want float64
	}{
		{"ties on both sides", []float64{1, 2, 2, 3}, []float64{10, 20, 30, 30}, 5.0 / 6},
		// ranks y {4.5, 4.5, 3, 1.5, 1.5}: Σdxdy = −9, Σdx² = 10, Σdy² = 9.
		{"negative with ties", []float64{1, 2, 3, 4, 5}, []float64{3, 3, 2, 1, 1}, -9 / math.Sqrt(90)},
		{"monotone with shared ties", []float64{1, 1, 2}, []float64{5, 5, 9}, 1},
		{"reversed, no ties", []float64{1, 2, 3}, []float64{3, 2, 1}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rho, ok := metric.Spearman(tc.x, tc.y)
			require.True(t, ok)
			require.InDelta(t, tc.want, rho, 1e-12)
		})
	}
}

func TestSpearmanUndefined(t *testing.T) {
	t.Parallel()
	_, ok := metric.Spearman([]float64{1, 1, 1}, []float64{1, 2, 3})
	require.False(t, ok, "a constant side")
	_, ok = metric.Spearman([]float64{1}, []float64{2})
	require.False(t, ok, "one value")
	_, ok = metric.Spearman([]float64{1, 2}, []float64{2})
	require.False(t, ok, "different lengths")
}

// numpy.percentile([1, 2, 3, 4], [2.5, 97.5]) is [1.075, 3.925]:
// positions 3·0.025 = 0.075 and 3·0.975 = 2.925.
func TestPercentileLinear(t *testing.T) {
	t.Parallel()
	s := []float64{1, 2, 3, 4}
	require.InDelta(t, 1.075, metric.Percentile(s, 2.5), 1e-12)
	require.InDelta(t, 3.925, metric.Percentile(s, 97.5), 1e-12)
	require.Equal(t, 4.0, metric.Percentile(s, 100))
	require.Equal(t, 1.0, metric.Percentile(s, 0))
	require.Equal(t, 7.0, metric.Percentile([]float64{7}, 50))
}

func TestSpearmanBootstrap(t *testing.T) {
	t.Parallel()
	// Strictly increasing together: every resample that is not constant
	// has ties on both sides at the same places, so ρ = 1 on each, and the
	// interval is [1, 1].
	x := []float64{1, 2, 3, 4, 5, 6}
	y := []float64{0.1, 0.4, 0.5, 0.9, 1.5, 2}
	iv, ok := metric.SpearmanBootstrap(x, y, 200, 7)
	require.True(t, ok)
	require.Equal(t, metric.Interval{Lo: 1, Hi: 1}, iv)

	// Noisy data: the interval holds the point estimate, is seeded, and
	// moves with the seed.
	x = []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	y = []float64{2, 1, 4, 3, 6, 5, 9, 7, 8, 12, 10, 11}
	rho, _ := metric.Spearman(x, y)
	a, ok := metric.SpearmanBootstrap(x, y, 500, 1)
	require.True(t, ok)
	b, _ := metric.SpearmanBootstrap(x, y, 500, 1)
	c, _ := metric.SpearmanBootstrap(x, y, 500, 2)
	require.Equal(t, a, b)
	require.NotEqual(t, a, c)
	require.Less(t, a.Lo, rho)
	require.Greater(t, a.Hi, rho)
	require.LessOrEqual(t, a.Hi, 1.0)

	_, ok = metric.SpearmanBootstrap([]float64{1, 1}, []float64{1, 2}, 100, 1)
	require.False(t, ok, "every resample has a constant side")
}

// A summary worked by hand over five pairs, two selected.
func TestSummarizeLearning(t *testing.T) {
	t.Parallel()
	rows := []metric.LearningRow{
		{PairID: 1, Selected: true, ExplicitMargin: 3, OldImplicit: -0.5, NewImplicit: 0.25, Delta: 0.75, AlignmentPotential: 2, Random: 0.5},
		{PairID: 2, Selected: true, ExplicitMargin: 2, OldImplicit: 0.5, NewImplicit: 1, Delta: 0.5, AlignmentPotential: 1, Random: 0.1},
		{PairID: 3, Selected: false, ExplicitMargin: 1, OldImplicit: 1, NewImplicit: 1.25, Delta: 0.25, AlignmentPotential: 0, Random: 0.9},
		{PairID: 4, Selected: false, ExplicitMargin: 1, OldImplicit: -2, NewImplicit: -2, Delta: 0, AlignmentPotential: -1, Random: 0.3},
		{PairID: 5, Selected: false, ExplicitMargin: 0.5, OldImplicit: 2, NewImplicit: 1.75, Delta: -0.25, AlignmentPotential: -2, Random: 0.7},
	}
	s := metric.SummarizeLearning(rows, 100, 3)
	require.Equal(t, 5, s.Checked)
	require.Equal(t, 2, s.Selected.N)
	require.InDelta(t, 0.625, *s.Selected.MeanDelta, 1e-15)
	require.Equal(t, 0.5, *s.Selected.LearnedBefore)
	require.Equal(t, 1.0, *s.Selected.Learned)
	require.Equal(t, 3, s.NotSelected.N)
	require.InDelta(t, 0.0, *s.NotSelected.MeanDelta, 1e-15)
	require.InDelta(t, 2.0/3, *s.NotSelected.LearnedBefore, 1e-15)
	require.InDelta(t, 2.0/3, *s.NotSelected.Learned, 1e-15)

	// Δ = {0.75, 0.5, 0.25, 0, −0.25} falls as AP {2, 1, 0, −1, −2} falls: ρ = 1.
	require.InDelta(t, 1, *s.Spearman[metric.AlignmentPotential].Rho, 1e-12)
	// m_ex {3, 2, 1, 1, 0.5} ranks {5, 4, 2.5, 2.5, 1}; Δ ranks {5, 4, 3, 2, 1}:
	// deviations {2, 1, −0.5, −0.5, −2} and {2, 1, 0, −1, −2}; Σ = 4+1+0+0.5+4 = 9.5,
	// Σdx² = 4+1+0.25+0.25+4 = 9.5, Σdy² = 10: ρ = 9.5/√95.
	require.InDelta(t, 9.5/math.Sqrt(95), *s.Spearman[metric.ExplicitMargin].Rho, 1e-12)
	// −|m_im| {−0.5, −0.5, −1, −2, −2} ranks {4.5, 4.5, 3, 1.5, 1.5}: deviations
	// {1.5, 1.5, 0, −1.5, −1.5}; Σ = 3+1.5+0+1.5+3 = 9, Σ² = 9: ρ = 9/√90.
	require.InDelta(t, 9/math.Sqrt(90), *s.Spearman[metric.ImplicitMargin].Rho, 1e-12)
	// random {0.5, 0.1, 0.9, 0.3, 0.7} ranks {3, 1, 5, 2, 4}: deviations
	// {0, −2, 2, −1, 1}·{2, 1, 0, −1, −2} = 0−2+0+1−2 = −3: ρ = −3/10.
	require.InDelta(t, -0.3, *s.Spearman[metric.Random].Rho, 1e-12)
	for _, m := range metric.LearningMetrics {
		c := s.Spearman[m]
		require.NotNil(t, c.Interval, m)
		require.LessOrEqual(t, c.Interval.Lo, c.Interval.Hi, m)
	}

	empty := metric.SummarizeLearning(nil, 100, 3)
	require.Nil(t, empty.Selected.MeanDelta)
	require.Nil(t, empty.Spearman[metric.AlignmentPotential].Rho)
}

func TestImplicitMarginOf(t *testing.T) {
	t.Parallel()
	ref := func(v float64) *float64 { return &v }
	w := metric.Sample{Tokens: 4, LogProb: -2, RefLogProb: ref(-3)}
	l := metric.Sample{Tokens: 2, LogProb: -3, RefLogProb: ref(-2.5)}
	m, err := metric.ImplicitMarginOf(metric.ImplicitSimPO, 0.1, w, l)
	require.NoError(t, err)
	require.Equal(t, -0.5-(-1.5), m) // −2/4 − (−3/2)
	m, err = metric.ImplicitMarginOf(metric.ImplicitDPO, 0.5, w, l)
	require.NoError(t, err)
	require.Equal(t, 0.5*((-2+3)-(-3+2.5)), m) // 0.5·(1 + 0.5)
	_, err = metric.ImplicitMarginOf(metric.ImplicitDPO, 0.5, w, metric.Sample{Tokens: 1})
	require.ErrorContains(t, err, "reference log-probs")
	_, err = metric.ImplicitMarginOf(metric.ImplicitSimPO, 0.5, w, metric.Sample{})
	require.ErrorContains(t, err, "positive token counts")
}
