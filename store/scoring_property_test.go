package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestEqualMarginsHaveZeroSpreadInSQL: ten explicit margins of 0.1 (not
// exact in binary) do not vary, so their z-term is 0 for every pair, as in
// Go. PostgreSQL's stddev_pop of them is 1.1e-17, not 0, which made every
// explicit z ±1.25 and every stored AP wrong.
func TestEqualMarginsHaveZeroSpreadInSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	mex := make([]float64, 10)
	mim := make([]float64, 10)
	for i := range mex {
		mex[i] = 0.1
		mim[i] = float64(i + 1) // |m_im| = 1..10: mean 5.5, std sqrt(8.25)
	}
	storetest.SeedPairs(t, pool, it, mex, mim)
	_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
	require.NoError(t, err)
	for _, s := range readScores(t, pool, it) {
		require.Zero(t, s.ExplicitZ, "pair %d", s.ID)
		// AP = 0 − 1·(|m_im| − 5.5)/sqrt(8.25): the smallest |m_im| ranks first.
		require.InDelta(t, -(s.Mim-5.5)/math.Sqrt(8.25), s.AP, 1e-12)
		require.Equal(t, s.Mim <= 4, s.Selected, "top 4 of 10 are |m_im| 1..4")
	}
}

// poolKind makes one quantity of a random pool.
type poolKind struct {
	name string
	make func(rng *rand.Rand, n int) []float64
}

var poolKinds = []poolKind{
	{"spread", func(rng *rand.Rand, n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = rng.ExpFloat64() * 3
		}
		return v
	}},
	{"equal", func(rng *rand.Rand, n int) []float64 {
		c := []float64{0.1, 0.7, 1.3, 1e-3}[rng.IntN(4)]
		v := make([]float64, n)
		for i := range v {
			v[i] = c
		}
		return v
	}},
	{"near-equal", func(rng *rand.Rand, n int) []float64 {
		// 0.1 plus a few ulps, or 0.3 times 1 + k·1e-15: spreads that are
		// all rounding.
		base := []float64{0.1, 0.3, 2.2}[rng.IntN(3)]
		v := make([]float64, n)
		for i := range v {
			if rng.IntN(2) == 0 {
				x := base
				for range rng.IntN(4) {
					x = math.Nextafter(x, 1e9)
				}
				v[i] = x
			} else {
				v[i] = base * (1 + float64(rng.IntN(5))*1e-15)
			}
		}
		return v
	}},
	{"tied", func(rng *rand.Rand, n int) []float64 {
		// Differences of integer judge rewards, and tenths.
		v := make([]float64, n)
		for i := range v {
			if rng.IntN(2) == 0 {
				v[i] = float64(1 + rng.IntN(3))
			} else {
				v[i] = float64(1+rng.IntN(3)) / 10
			}
		}
		return v
	}},
}

// TestScoringPropertyGoAgreesWithSQL runs random pools — equal, near-equal
// and tied margins, values not exact in binary — through metric.Score and
// metric.Select and through store.ScorePairs, and requires the same ranks
// and selections and values within 1e-9.
func TestScoringPropertyGoAgreesWithSQL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	rng := rand.New(rand.NewPCG(13, 2))
	ordinal := 0
	for _, ex := range poolKinds {
		for _, im := range poolKinds {
			for _, n := range []int{1, 2, 7, 40} {
				ordinal++
				it := newIterationNamed(t, pool, ordinal)
				mex, mim := ex.make(rng, n), im.make(rng, n)
				for i := range mim {
					if rng.IntN(2) == 0 {
						mim[i] = -mim[i] // only |m_im| counts
					}
				}
				storetest.SeedPairs(t, pool, it, mex, mim)
				for _, spec := range []metric.Spec{
					{Metric: metric.AlignmentPotential, ImplicitWeight: 1, Ratio: 0.4},
					{Metric: metric.AlignmentPotential, ImplicitWeight: 2.5, Ratio: 0.25},
					{Metric: metric.ExplicitMargin, ImplicitWeight: 1, Count: 3},
					{Metric: metric.ImplicitMargin, ImplicitWeight: 1, Ratio: 0.5},
				} {
					where := fmt.Sprintf("explicit %s, implicit %s, n %d, %s w=%g", ex.name, im.name, n, spec.Metric, spec.ImplicitWeight)
					_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{
						Metric: string(spec.Metric), ImplicitWeight: spec.ImplicitWeight, Ratio: spec.Ratio, Count: spec.Count,
					}, store.TrainSelection)
					require.NoError(t, err, where)
					got := readScores(t, pool, it)
					require.Len(t, got, n)
					want := goScores(t, got, spec)
					for i := range got {
						require.InDelta(t, want[i].ExplicitZ, got[i].ExplicitZ, 1e-9, where)
						require.InDelta(t, want[i].ImplicitZ, got[i].ImplicitZ, 1e-9, where)
						require.InDelta(t, want[i].AlignmentPotential, got[i].AP, 1e-9, where)
						require.InDelta(t, want[i].Score, got[i].Score, 1e-9, where)
						require.Equal(t, want[i].Rank, got[i].Rank, "%s: pair %d", where, got[i].ID)
						require.Equal(t, want[i].Selected, got[i].Selected, where)
						// The stored AP is computed again from the updated row;
						// ranked by AP, it is the very score the ranks came from.
						if spec.Metric == metric.AlignmentPotential {
							require.Equal(t, got[i].Score, got[i].AP, "%s: pair %d", where, got[i].ID)
						}
					}
					if ex.name == "equal" {
						for _, g := range got {
							require.Zero(t, g.ExplicitZ, where)
						}
					}
				}
			}
		}
	}
}
