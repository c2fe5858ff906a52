package metric

import (
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSelectCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		n       int
		spec    Spec
		want    int
		wantErr string
	}{
		{name: "paper default", n: 5, spec: Spec{Ratio: 0.4}, want: 2},
		{name: "0.57 of 100 is 57 not 56", n: 100, spec: Spec{Ratio: 0.57}, want: 57},
		{name: "0.29 of 100 is 29 not 28", n: 100, spec: Spec{Ratio: 0.29}, want: 29},
		{name: "ratio 1 keeps all", n: 7, spec: Spec{Ratio: 1}, want: 7},
		{name: "floor", n: 9, spec: Spec{Ratio: 0.25}, want: 2},
		{name: "too small a pool", n: 2, spec: Spec{Ratio: 0.4}, want: 0},
		{name: "empty pool", n: 0, spec: Spec{Ratio: 0.4}, want: 0},
		{name: "count", n: 10, spec: Spec{Count: 3}, want: 3},
		{name: "count above pool", n: 10, spec: Spec{Count: 30}, want: 10},
		{name: "neither", n: 10, spec: Spec{}, wantErr: "set a selection ratio in (0, 1] or a positive count"},
		{name: "both", n: 10, spec: Spec{Ratio: 0.4, Count: 3}, wantErr: "not both"},
		{name: "ratio above one", n: 10, spec: Spec{Ratio: 1.5}, wantErr: "selection ratio 1.5 out of range"},
		{name: "negative ratio", n: 10, spec: Spec{Ratio: -0.1}, wantErr: "out of range"},
		{name: "NaN ratio", n: 10, spec: Spec{Ratio: math.NaN()}, wantErr: "out of range"},
		{name: "negative count", n: 10, spec: Spec{Count: -1}, wantErr: "count -1 must be positive"},
		{name: "negative pool", n: -1, spec: Spec{Count: 1}, wantErr: "pool size -1 is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := SelectCount(tt.n, tt.spec)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSelectLeavesPoolUntouchedOnError(t *testing.T) {
	t.Parallel()
	scored := []Scored{{ID: 1, Score: 2}, {ID: 2, Score: 1}}
	require.Error(t, Select(scored, Spec{}))
	require.Equal(t, []Scored{{ID: 1, Score: 2}, {ID: 2, Score: 1}}, scored)
}

// randomPool draws n items with integer-valued margins (so that ties happen)
// from a seeded generator.
func randomPool(rng *rand.Rand, n int) []Item {
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{
			ID:             int64(rng.IntN(1000 * (n + 1))),
			ExplicitMargin: float64(rng.IntN(20)),
			ImplicitMargin: float64(rng.IntN(21)-10) / 4,
		}
	}
	return items
}

func TestSelectExactlyFloorRatioN(t *testing.T) {
	t.Parallel()
	// Ratios as exact fractions p/q so ⌊p·N/q⌋ is integer arithmetic, not the
	// float expression under test.
	ratios := []struct{ p, q int }{{2, 5}, {57, 100}, {1, 4}, {1, 3}, {2, 3}, {7, 10}, {1, 1}, {29, 100}}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 5, 10, 99, 100, 101, 1000, 1234} {
		items := randomPool(rng, n)
		for _, r := range ratios {
			t.Run(strconv.Itoa(n)+"x"+strconv.Itoa(r.p)+"/"+strconv.Itoa(r.q), func(t *testing.T) {
				spec := Spec{Metric: AlignmentPotential, ImplicitWeight: 1, Ratio: float64(r.p) / float64(r.q)}
				scored, err := Score(items, spec)
				require.NoError(t, err)
				require.NoError(t, Select(scored, spec))
				selected, ranks := 0, make([]int, 0, n)
				for _, s := range scored {
					if s.Selected {
						selected++
						require.LessOrEqual(t, s.Rank, r.p*n/r.q)
					}
					ranks = append(ranks, s.Rank)
				}
				require.Equal(t, r.p*n/r.q, selected)
				slices.Sort(ranks)
				for i, rk := range ranks {
					require.Equal(t, i+1, rk, "ranks are a permutation of 1..N")
				}
			})
		}
	}
}

func TestSelectIsDeterministic(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	items := randomPool(rng, 500)
	for _, m := range Metrics {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			spec := Spec{Metric: m, ImplicitWeight: 1, Ratio: 0.4, Seed: 7}
			first, err := Score(items, spec)
			require.NoError(t, err)
			require.NoError(t, Select(first, spec))
			again, err := Score(items, spec)
			require.NoError(t, err)
			require.NoError(t, Select(again, spec))
			require.Equal(t, first, again)

			// The input order must not matter either: shuffle and compare by id.
			shuffled := slices.Clone(items)
			rand.New(rand.NewPCG(5, 6)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			other, err := Score(shuffled, spec)
			require.NoError(t, err)
			require.NoError(t, Select(other, spec))
			require.ElementsMatch(t, rankByID(first), rankByID(other))
		})
	}
}

type idRank struct {
	ID       int64
	Rank     int
	Selected bool
}

// rankByID lists (id, rank, selected); ids may repeat in a random pool, so
// it is compared as a multiset.
func rankByID(s []Scored) []idRank {
	out := make([]idRank, len(s))
	for i, x := range s {
		out[i] = idRank{x.ID, x.Rank, x.Selected}
	}
	return out
}

func TestSelectInvariantToRewardScaleAndShift(t *testing.T) {
	t.Parallel()
	// Pairs are built from samples with integer rewards; the same pools with
	// every reward mapped to c·r + s must select the same pairs: m_ex scales
	// by c, and z-scores do not change under positive scaling.
	rng := rand.New(rand.NewPCG(7, 8))
	type prompt struct{ samples []Sample }
	prompts := make([]prompt, 300)
	for i := range prompts {
		samples := make([]Sample, 5)
		for j := range samples {
			samples[j] = Sample{
				Index:   j,
				Content: strconv.Itoa(rng.IntN(1000)),
				Tokens:  1 + rng.IntN(50),
				LogProb: -float64(rng.IntN(200)),
				Reward:  float64(rng.IntN(11) - 5),
			}
		}
		prompts[i] = prompt{samples}
	}
	pool := func(t *testing.T, c, s float64) []Item {
		var items []Item
		for id, p := range prompts {
			samples := slices.Clone(p.samples)
			for j := range samples {
				samples[j].Reward = c*samples[j].Reward + s
			}
			pair, reason, err := MakePair(samples, DefaultBeta)
			require.NoError(t, err)
			if reason != "" {
				continue
			}
			item, err := pair.Item(int64(id), ImplicitSimPO)
			require.NoError(t, err)
			items = append(items, item)
		}
		return items
	}
	base := pool(t, 1, 0)
	require.Greater(t, len(base), 200, "most prompts form a pair")
	transforms := []struct {
		name string
		c, s float64
	}{
		{name: "times 4 minus 7", c: 4, s: -7},
		{name: "times 0.25 plus 10", c: 0.25, s: 10},
		{name: "times 3", c: 3, s: 0},
		{name: "shift only", c: 1, s: 123.5},
	}
	for _, m := range Metrics {
		for _, w := range []float64{0, 1, 2.5} {
			spec := Spec{Metric: m, ImplicitWeight: w, Ratio: 0.4, Seed: 42}
			want, err := Score(base, spec)
			require.NoError(t, err)
			require.NoError(t, Select(want, spec))
			for _, tr := range transforms {
				t.Run(string(m)+"/w="+strconv.FormatFloat(w, 'g', -1, 64)+"/"+tr.name, func(t *testing.T) {
					items := pool(t, tr.c, tr.s)
					require.Len(t, items, len(base), "the same prompts pair up")
					got, err := Score(items, spec)
					require.NoError(t, err)
					require.NoError(t, Select(got, spec))
					require.Equal(t, rankByID(want), rankByID(got))
				})
			}
		}
	}
}

func TestImplicitMarginPrefersSmallMagnitude(t *testing.T) {
	t.Parallel()
	// Distinct magnitudes, mixed signs: the rank order must be |m_im| ascending.
	items := []Item{
		{ID: 1, ExplicitMargin: 9, ImplicitMargin: 2.0},
		{ID: 2, ExplicitMargin: 1, ImplicitMargin: -0.1},
		{ID: 3, ExplicitMargin: 5, ImplicitMargin: -3.0},
		{ID: 4, ExplicitMargin: 2, ImplicitMargin: 0.5},
		{ID: 5, ExplicitMargin: 7, ImplicitMargin: -1.0},
	}
	spec := Spec{Metric: ImplicitMargin, Count: 2}
	scored, err := Score(items, spec)
	require.NoError(t, err)
	require.NoError(t, Select(scored, spec))
	// |m_im| ascending: 0.1 (id 2), 0.5 (id 4), 1.0 (id 5), 2.0 (id 1), 3.0 (id 3).
	wantRank := map[int64]int{2: 1, 4: 2, 5: 3, 1: 4, 3: 5}
	for _, s := range scored {
		require.Equal(t, wantRank[s.ID], s.Rank, "id %d", s.ID)
		require.Equal(t, wantRank[s.ID] <= 2, s.Selected)
	}
}

func TestAlignmentPotentialWeightZeroOrdersLikeExplicit(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{1, 2, 17, 400} {
		items := randomPool(rng, n)
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			ap := Spec{Metric: AlignmentPotential, ImplicitWeight: 0, Ratio: 0.4}
			ex := Spec{Metric: ExplicitMargin, ImplicitWeight: 1, Ratio: 0.4}
			a, err := Score(items, ap)
			require.NoError(t, err)
			require.NoError(t, Select(a, ap))
			e, err := Score(items, ex)
			require.NoError(t, err)
			require.NoError(t, Select(e, ex))
			for i := range a {
				require.Equal(t, e[i].Rank, a[i].Rank)
				require.Equal(t, e[i].Selected, a[i].Selected)
			}
		})
	}
}

func TestRankTiesByID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		scores []float64
		ids    []int64
		want   []int
	}{
		{name: "descending score", scores: []float64{1, 3, 2}, ids: []int64{1, 2, 3}, want: []int{3, 1, 2}},
		{name: "ties by id", scores: []float64{5, 5, 5}, ids: []int64{30, 10, 20}, want: []int{3, 1, 2}},
		{name: "equal ids by position", scores: []float64{1, 1}, ids: []int64{4, 4}, want: []int{1, 2}},
		{name: "negative zero equals zero", scores: []float64{0, math.Copysign(0, -1)}, ids: []int64{2, 1}, want: []int{2, 1}},
		{name: "empty", want: []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Rank(tt.scores, tt.ids))
		})
	}
	require.Panics(t, func() { Rank([]float64{1}, nil) })
}
