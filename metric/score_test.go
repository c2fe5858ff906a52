package metric

import (
	"math"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// goldenPool is a pool of five pairs whose statistics are worked out by hand.
//
//	id  m_ex  m_im     |m_im|
//	1   7      1.375   1.375
//	2   1     -0.875   0.875
//	3   5      0.625   0.625
//	4   3     -1.0     1.0
//	5   4      1.125   1.125
//
// m_ex: mean = (7+1+5+3+4)/5 = 20/5 = 4; deviations 3, −3, 1, −1, 0; squares
// 9+9+1+1+0 = 20; population variance 20/5 = 4; std = 2 (the sample std,
// √(20/4) = √5, would give different z). z(m_ex) = 3/2, −3/2, 1/2, −1/2, 0.
//
// |m_im|: mean = (1.375+0.875+0.625+1+1.125)/5 = 5/5 = 1; deviations 0.375,
// −0.125, −0.375, 0, 0.125; squares 0.140625+0.015625+0.140625+0+0.015625 =
// 0.3125; variance 0.3125/5 = 0.0625; std = 0.25. z(|m_im|) = 1.5, −0.5,
// −1.5, 0, 0.5. (Signs of m_im do not matter: item 2 and 4 are negative.)
//
// Every number is a dyadic rational, so float64 represents them exactly.
func goldenPool() []Item {
	return []Item{
		{ID: 1, ExplicitMargin: 7, ImplicitMargin: 1.375},
		{ID: 2, ExplicitMargin: 1, ImplicitMargin: -0.875},
		{ID: 3, ExplicitMargin: 5, ImplicitMargin: 0.625},
		{ID: 4, ExplicitMargin: 3, ImplicitMargin: -1.0},
		{ID: 5, ExplicitMargin: 4, ImplicitMargin: 1.125},
	}
}

// md5Prefix is the first 13 hex digits of `printf '42:<id>' | md5sum`, taken
// from coreutils, not from this package:
//
//	42:1 590dd1ac9cf7cbada02b2915da269f69
//	42:2 77d58fd7432c3bbb773e0fcde8cbdeaa
//	42:3 3f473d2ed10aa31c881b3747f5b23aa7
//	42:4 9eff603f580f929e2183c120f84fbe1b
//	42:5 3be897c4226c4cd3cb07c0e199850444
//
// As fractions of 16^13 their leading digits give 0x59/256 ≈ 0.348,
// 0x77/256 ≈ 0.465, 0x3f/256 ≈ 0.246, 0x9e/256 ≈ 0.617, 0x3b/256 ≈ 0.230, so
// the random order is 4, 2, 1, 3, 5.
var md5Prefix = map[int64]string{
	1: "590dd1ac9cf7c",
	2: "77d58fd7432c3",
	3: "3f473d2ed10aa",
	4: "9eff603f580f9",
	5: "3be897c4226c4",
}

func randomFromHex(t *testing.T, hex string) float64 {
	t.Helper()
	u, err := strconv.ParseUint(hex, 16, 64)
	require.NoError(t, err)
	return float64(u) / math.Pow(16, 13)
}

func TestScoreGolden(t *testing.T) {
	t.Parallel()
	zEx := []float64{1.5, -1.5, 0.5, -0.5, 0}
	zIm := []float64{1.5, -0.5, -1.5, 0, 0.5}
	tests := []struct {
		name   string
		spec   Spec
		scores []float64 // by id 1..5; nil means the random values
		ap     []float64
		ranks  []int // by id 1..5
		chosen []int64
	}{
		{
			// AP = z_ex − z_im: 1.5−1.5 = 0, −1.5+0.5 = −1, 0.5+1.5 = 2,
			// −0.5−0 = −0.5, 0−0.5 = −0.5. Order 3, 1, then 4 and 5 tie at
			// −0.5 and the lower id goes first, then 2. k = ⌊0.4·5⌋ = 2.
			name:   "alignment_potential w=1",
			spec:   Spec{Metric: AlignmentPotential, ImplicitWeight: 1, Ratio: 0.4},
			scores: []float64{0, -1, 2, -0.5, -0.5},
			ap:     []float64{0, -1, 2, -0.5, -0.5},
			ranks:  []int{2, 5, 1, 3, 4},
			chosen: []int64{1, 3},
		},
		{
			// AP = z_ex − 2.5·z_im: 1.5−3.75 = −2.25, −1.5+1.25 = −0.25,
			// 0.5+3.75 = 4.25, −0.5−0 = −0.5, 0−1.25 = −1.25. Order 3, 2, 4, 5, 1.
			name:   "alignment_potential w=2.5",
			spec:   Spec{Metric: AlignmentPotential, ImplicitWeight: 2.5, Ratio: 0.4},
			scores: []float64{-2.25, -0.25, 4.25, -0.5, -1.25},
			ap:     []float64{-2.25, -0.25, 4.25, -0.5, -1.25},
			ranks:  []int{5, 2, 1, 3, 4},
			chosen: []int64{2, 3},
		},
		{
			// score = z_ex: 1.5, −1.5, 0.5, −0.5, 0. Order 1, 3, 5, 4, 2.
			name:   "explicit_margin",
			spec:   Spec{Metric: ExplicitMargin, ImplicitWeight: 1, Ratio: 0.4},
			scores: []float64{1.5, -1.5, 0.5, -0.5, 0},
			ap:     []float64{0, -1, 2, -0.5, -0.5},
			ranks:  []int{1, 5, 2, 4, 3},
			chosen: []int64{1, 3},
		},
		{
			// score = −z_im: −1.5, 0.5, 1.5, 0, −0.5. Order 3, 2, 4, 5, 1.
			name:   "implicit_margin",
			spec:   Spec{Metric: ImplicitMargin, ImplicitWeight: 1, Ratio: 0.4},
			scores: []float64{-1.5, 0.5, 1.5, 0, -0.5},
			ap:     []float64{0, -1, 2, -0.5, -0.5},
			ranks:  []int{5, 2, 1, 3, 4},
			chosen: []int64{2, 3},
		},
		{
			// score = md5 fraction (see md5Prefix): order 4, 2, 1, 3, 5.
			name:   "random seed 42",
			spec:   Spec{Metric: Random, ImplicitWeight: 1, Ratio: 0.4, Seed: 42},
			ap:     []float64{0, -1, 2, -0.5, -0.5},
			ranks:  []int{3, 2, 4, 1, 5},
			chosen: []int64{2, 4},
		},
		{
			// A count instead of a ratio: the top 3 by AP (w=1) are 3, 1, 4.
			name:   "alignment_potential count 3",
			spec:   Spec{Metric: AlignmentPotential, ImplicitWeight: 1, Count: 3},
			scores: []float64{0, -1, 2, -0.5, -0.5},
			ap:     []float64{0, -1, 2, -0.5, -0.5},
			ranks:  []int{2, 5, 1, 3, 4},
			chosen: []int64{1, 3, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			scored, err := Score(goldenPool(), tt.spec)
			require.NoError(t, err)
			require.NoError(t, Select(scored, tt.spec))
			require.Len(t, scored, 5)
			var chosen []int64
			for i, s := range scored {
				require.Equal(t, int64(i+1), s.ID, "input order is kept")
				require.InDelta(t, zEx[i], s.ExplicitZ, 1e-12, "explicit_z of id %d", s.ID)
				require.InDelta(t, zIm[i], s.ImplicitZ, 1e-12, "implicit_z of id %d", s.ID)
				require.InDelta(t, tt.ap[i], s.AlignmentPotential, 1e-12, "AP of id %d", s.ID)
				want := randomFromHex(t, md5Prefix[s.ID])
				if tt.scores != nil {
					want = tt.scores[i]
				}
				require.InDelta(t, want, s.Score, 1e-12, "score of id %d", s.ID)
				require.Equal(t, tt.ranks[i], s.Rank, "rank of id %d", s.ID)
				if s.Selected {
					chosen = append(chosen, s.ID)
				}
			}
			require.Equal(t, tt.chosen, chosen)
		})
	}
}

func TestScorerMomentsGolden(t *testing.T) {
	t.Parallel()
	pool := goldenPool()
	ex := make([]float64, len(pool))
	im := make([]float64, len(pool))
	for i, it := range pool {
		ex[i], im[i] = it.ExplicitMargin, it.ImplicitMargin
	}
	sc, err := NewScorer(ex, im, DefaultSpec())
	require.NoError(t, err)
	// Worked in the goldenPool comment.
	require.InDelta(t, 4.0, sc.Explicit().Mean(), 1e-12)
	require.InDelta(t, 2.0, sc.Explicit().Std(), 1e-12)
	require.InDelta(t, 1.0, sc.ImplicitAbs().Mean(), 1e-12)
	require.InDelta(t, 0.25, sc.ImplicitAbs().Std(), 1e-12)
}

func TestRandomScore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		seed, id int64
		hex      string // first 13 hex digits of md5 of "<seed>:<id>" from md5sum
	}{
		{name: "seed 42 id 1", seed: 42, id: 1, hex: "590dd1ac9cf7c"},
		{name: "seed 42 id 4", seed: 42, id: 4, hex: "9eff603f580f9"},
		// printf '0:0' | md5sum → 3eac1f3c2ef5215eb9bd13e28ae0975a
		{name: "zeros", seed: 0, id: 0, hex: "3eac1f3c2ef52"},
		// printf -- '-7:123456789012' | md5sum → 5a3a8d85a4de315da933fbc483028026
		{name: "negative seed", seed: -7, id: 123456789012, hex: "5a3a8d85a4de3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := RandomScore(tt.seed, tt.id)
			require.Equal(t, randomFromHex(t, tt.hex), got, "must match SQL exactly")
			require.GreaterOrEqual(t, got, 0.0)
			require.Less(t, got, 1.0)
		})
	}
}

func TestScoreDegeneratePools(t *testing.T) {
	t.Parallel()
	t.Run("empty pool", func(t *testing.T) {
		t.Parallel()
		scored, err := Score(nil, DefaultSpec())
		require.NoError(t, err)
		require.Empty(t, scored)
		require.NoError(t, Select(scored, DefaultSpec()))
	})
	t.Run("one pair", func(t *testing.T) {
		t.Parallel()
		spec := Spec{Metric: AlignmentPotential, ImplicitWeight: 1, Count: 1}
		scored, err := Score([]Item{{ID: 9, ExplicitMargin: 3, ImplicitMargin: -2}}, spec)
		require.NoError(t, err)
		require.NoError(t, Select(scored, spec))
		require.Equal(t, []Scored{{ID: 9, Rank: 1, Selected: true}}, scored)
	})
	t.Run("zero std gives zero z not NaN", func(t *testing.T) {
		t.Parallel()
		// Explicit margins all 0.1 (not exactly representable, so a naive
		// mean could differ from 0.1 by rounding); |m_im| = 1, 2, 3 with
		// mean 2, std √(2/3).
		items := []Item{
			{ID: 1, ExplicitMargin: 0.1, ImplicitMargin: 1},
			{ID: 2, ExplicitMargin: 0.1, ImplicitMargin: -2},
			{ID: 3, ExplicitMargin: 0.1, ImplicitMargin: 3},
		}
		scored, err := Score(items, Spec{Metric: AlignmentPotential, ImplicitWeight: 2})
		require.NoError(t, err)
		s := math.Sqrt(2.0 / 3.0)
		wantIZ := []float64{-1 / s, 0, 1 / s}
		for i, sc := range scored {
			require.Zero(t, sc.ExplicitZ)
			require.InDelta(t, wantIZ[i], sc.ImplicitZ, 1e-12)
			require.InDelta(t, -2*wantIZ[i], sc.AlignmentPotential, 1e-12)
		}
	})
	t.Run("everything equal", func(t *testing.T) {
		t.Parallel()
		items := make([]Item, 7)
		for i := range items {
			items[i] = Item{ID: int64(i), ExplicitMargin: 0.3, ImplicitMargin: -0.7}
		}
		spec := Spec{Metric: AlignmentPotential, ImplicitWeight: 1, Ratio: 0.5}
		scored, err := Score(items, spec)
		require.NoError(t, err)
		require.NoError(t, Select(scored, spec))
		for i, sc := range scored {
			require.Zero(t, sc.ExplicitZ)
			require.Zero(t, sc.ImplicitZ)
			require.Zero(t, sc.Score)
			require.Equal(t, i+1, sc.Rank, "all tied: id order")
			require.Equal(t, i < 3, sc.Selected, "k = ⌊0.5·7⌋ = 3")
		}
	})
}

func TestScoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		items []Item
		spec  Spec
		want  string
	}{
		{name: "NaN explicit", items: []Item{{ID: 1, ExplicitMargin: math.NaN()}}, spec: DefaultSpec(), want: "margins must be finite"},
		{name: "Inf implicit", items: []Item{{ID: 1, ImplicitMargin: math.Inf(-1)}}, spec: DefaultSpec(), want: "margins must be finite"},
		{name: "no metric", spec: Spec{ImplicitWeight: 1}, want: `unknown metric ""`},
		{name: "misspelt metric", spec: Spec{Metric: "alignment-potential"}, want: `did you mean "alignment_potential"`},
		{name: "padded metric", spec: Spec{Metric: " random"}, want: "surrounding space"},
		{name: "negative weight", spec: Spec{Metric: AlignmentPotential, ImplicitWeight: -1}, want: "implicit weight -1 out of range"},
		{name: "NaN weight", spec: Spec{Metric: AlignmentPotential, ImplicitWeight: math.NaN()}, want: "out of range"},
		{name: "huge weight", spec: Spec{Metric: AlignmentPotential, ImplicitWeight: 1e300}, want: "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Score(tt.items, tt.spec)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestParseMetric(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    Metric
		wantErr string
	}{
		{name: "alignment potential", in: "alignment_potential", want: AlignmentPotential},
		{name: "explicit", in: "explicit_margin", want: ExplicitMargin},
		{name: "implicit", in: "implicit_margin", want: ImplicitMargin},
		{name: "random with spaces", in: " random\n", want: Random},
		{name: "hyphens", in: "explicit-margin", wantErr: `did you mean "explicit_margin"?`},
		{name: "capitals", in: "Random", wantErr: `did you mean "random"?`},
		{name: "prefix", in: "implicit", wantErr: `did you mean "implicit_margin"?`},
		{name: "typo", in: "alignment_potental", wantErr: `did you mean "alignment_potential"?`},
		{name: "unrelated", in: "bleu", wantErr: "want one of alignment_potential, explicit_margin, implicit_margin, random"},
		{name: "empty", in: "", wantErr: `unknown metric ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseMetric(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	_, err := ParseMetric("bleu")
	require.NotContains(t, err.Error(), "did you mean", "no suggestion for an unrelated name")
}

func TestMomentsHugeMargins(t *testing.T) {
	t.Parallel()
	// Near the float64 limit a naive sum overflows to +Inf. The values are
	// −M, 0, M: mean 0, variance 2M²/3, so z = −√1.5, 0, √1.5.
	const m = 1.5e308
	scored, err := Score([]Item{
		{ID: 1, ExplicitMargin: -m, ImplicitMargin: 1},
		{ID: 2, ExplicitMargin: 0, ImplicitMargin: 1},
		{ID: 3, ExplicitMargin: m, ImplicitMargin: 1},
	}, Spec{Metric: ExplicitMargin})
	require.NoError(t, err)
	r := math.Sqrt(1.5)
	require.InDelta(t, -r, scored[0].Score, 1e-12)
	require.InDelta(t, 0, scored[1].Score, 1e-12)
	require.InDelta(t, r, scored[2].Score, 1e-12)
}
