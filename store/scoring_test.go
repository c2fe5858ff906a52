package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

type storedScore struct {
	ID        int64    `db:"id"`
	Mex       float64  `db:"explicit_margin"`
	Mim       float64  `db:"implicit_margin"`
	ExplicitZ float64  `db:"explicit_z"`
	ImplicitZ float64  `db:"implicit_z"`
	AP        float64  `db:"alignment_potential"`
	Score     float64  `db:"metric_score"`
	Rank      int      `db:"rank"`
	Selected  bool     `db:"selected"`
	EScore    *float64 `db:"evolve_score"`
	ERank     *int     `db:"evolve_rank"`
	ESelected bool     `db:"evolve_selected"`
}

func readScores(t *testing.T, db store.DBTX, iterationID int64) []storedScore {
	t.Helper()
	rows, err := db.Query(context.Background(), `SELECT id, explicit_margin, implicit_margin,
		coalesce(explicit_z, 'NaN') AS explicit_z, coalesce(implicit_z, 'NaN') AS implicit_z,
		coalesce(alignment_potential, 'NaN') AS alignment_potential, coalesce(metric_score, 'NaN') AS metric_score,
		coalesce(rank, 0) AS rank, selected, evolve_score, evolve_rank, evolve_selected
		FROM pairs WHERE iteration_id = $1 ORDER BY id`, iterationID)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByName[storedScore])
	require.NoError(t, err)
	return out
}

// goScores scores and selects the stored pairs' margins with Go, in the
// order given (readScores': by id).
func goScores(t *testing.T, stored []storedScore, spec metric.Spec) []metric.Scored {
	t.Helper()
	items := make([]metric.Item, len(stored))
	for i, g := range stored {
		items[i] = metric.Item{ID: g.ID, ExplicitMargin: g.Mex, ImplicitMargin: g.Mim}
	}
	want, err := metric.Score(items, spec)
	require.NoError(t, err)
	require.NoError(t, metric.Select(want, spec))
	return want
}

// TestSQLAgreesWithGo scores random pools with both implementations and
// requires the same selected set, ranks, and scores within 1e-9.
func TestSQLAgreesWithGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	rng := rand.New(rand.NewPCG(7, 11))
	pools := []int{0, 1, 2, 5, 37, 400}
	for pi, n := range pools {
		it := newIterationNamed(t, pool, pi)
		mex := make([]float64, n)
		mim := make([]float64, n)
		for i := range n {
			mex[i] = rng.ExpFloat64() * 3
			mim[i] = rng.NormFloat64() * 2
			if pi == 4 && i%5 == 0 { // ties in score
				mex[i], mim[i] = 1.5, -0.5
			}
		}
		if pi == 3 { // zero std of |m_im|
			for i := range mim {
				mim[i] = 0.25
			}
		}
		storetest.SeedPairs(t, pool, it, mex, mim)
		for _, m := range metric.Metrics {
			for _, spec := range []metric.Spec{
				{Metric: m, ImplicitWeight: 1, Ratio: 0.4, Seed: 42},
				{Metric: m, ImplicitWeight: 2.5, Ratio: 0.57, Seed: 9},
				{Metric: m, ImplicitWeight: 0, Count: 3, Seed: 42},
			} {
				_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{
					Metric: string(spec.Metric), ImplicitWeight: spec.ImplicitWeight, Ratio: spec.Ratio,
					Count: spec.Count, Seed: spec.Seed,
				}, store.TrainSelection)
				require.NoError(t, err)
				got := readScores(t, pool, it)
				require.Len(t, got, n)
				want := goScores(t, got, spec)
				k, err := metric.SelectCount(n, spec)
				require.NoError(t, err)
				selected := 0
				for i := range got {
					require.InDelta(t, want[i].ExplicitZ, got[i].ExplicitZ, 1e-9, "pool %d %v", n, spec)
					require.InDelta(t, want[i].ImplicitZ, got[i].ImplicitZ, 1e-9)
					require.InDelta(t, want[i].AlignmentPotential, got[i].AP, 1e-9)
					require.InDelta(t, want[i].Score, got[i].Score, 1e-9, "metric %s", spec.Metric)
					require.Equal(t, want[i].Rank, got[i].Rank, "pair %d, metric %s", got[i].ID, spec.Metric)
					require.Equal(t, want[i].Selected, got[i].Selected)
					require.False(t, math.IsNaN(got[i].Score))
					if got[i].Selected {
						selected++
					}
				}
				require.Equal(t, k, selected)
			}
		}
	}
}

func TestEvolveSelectionWritesItsOwnColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	// Hand-worked: m_ex = 1, 2, 3, 4 (mean 2.5, std sqrt(1.25)); |m_im| all
	// equal, so z(|m_im|) = 0 and AP orders by m_ex: the top 25% of 4 is
	// the single pair with m_ex = 4.
	storetest.SeedPairs(t, pool, it, []float64{1, 2, 3, 4}, []float64{0.5, -0.5, 0.5, -0.5})
	n, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 2.5, Ratio: 0.25}, store.EvolveSelection)
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	for _, s := range readScores(t, pool, it) {
		require.Equal(t, s.Mex == 4, s.ESelected)
		require.False(t, s.Selected, "train selection untouched")
		require.InDelta(t, (s.Mex-2.5)/math.Sqrt(1.25), *s.EScore, 1e-12)
	}
}

// TestTopPairsFollowTheSelection: scoring writes the first TopPairs ranks
// of the selection to top_pairs (all of it when smaller), and a second
// scoring of the iteration replaces them; the evolve selection leaves them
// alone, and another iteration's are untouched.
func TestTopPairsFollowTheSelection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	other := newIterationNamed(t, pool, 1)
	// 12,500 pairs, margins of every order; explicit margins 0..12,499,
	// implicit ones equal, so AP orders by explicit margin alone.
	const n = store.TopPairs + 2500
	mex, mim := make([]float64, n), make([]float64, n)
	for i := range n {
		mex[i], mim[i] = float64((i*7919)%n), 0.25
	}
	storetest.SeedPairs(t, pool, it, mex, mim)
	storetest.SeedPairs(t, pool, other, []float64{3, 1, 2}, []float64{0, 0, 0})
	_, err := store.ScorePairs(ctx, pool, other, store.ScoreSpec{Metric: "explicit_margin", ImplicitWeight: 1, Ratio: 0.5}, store.TrainSelection)
	require.NoError(t, err)

	top := func(iteration int64) (ranks []int, margins []float64) {
		t.Helper()
		rows, err := pool.Query(ctx, `SELECT t.rank, p.explicit_margin FROM top_pairs t JOIN pairs p ON p.id = t.pair_id
			WHERE t.iteration_id = $1 AND p.iteration_id = $1 AND p.rank = t.rank AND p.selected ORDER BY t.rank`, iteration)
		require.NoError(t, err)
		for rows.Next() {
			var r int
			var m float64
			require.NoError(t, rows.Scan(&r, &m))
			ranks, margins = append(ranks, r), append(margins, m)
		}
		require.NoError(t, rows.Err())
		return ranks, margins
	}
	score := func(spec store.ScoreSpec, target store.Target) {
		t.Helper()
		_, err := store.ScorePairs(ctx, pool, it, spec, target)
		require.NoError(t, err)
	}

	// 90% selected (11,250 pairs): top_pairs holds ranks 1..10,000, the
	// largest explicit margins first.
	score(store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.9}, store.TrainSelection)
	ranks, margins := top(it)
	require.Len(t, ranks, store.TopPairs)
	for i := range ranks {
		require.Equal(t, i+1, ranks[i])
		require.Equal(t, float64(n-1-i), margins[i], "rank %d", i+1)
	}

	// Scored again with 3 selected: top_pairs holds those 3 only.
	score(store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Count: 3}, store.TrainSelection)
	ranks, margins = top(it)
	require.Equal(t, []int{1, 2, 3}, ranks)
	require.Equal(t, []float64{n - 1, n - 2, n - 3}, margins)
	var rows int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM top_pairs WHERE iteration_id = $1`, it).Scan(&rows))
	require.Equal(t, 3, rows, "the earlier scoring's rows are gone")

	// The evolve selection writes its own columns and not top_pairs.
	score(store.ScoreSpec{Metric: "explicit_margin", ImplicitWeight: 1, Ratio: 0.5}, store.EvolveSelection)
	ranks, _ = top(it)
	require.Equal(t, []int{1, 2, 3}, ranks)

	ranks, margins = top(other)
	require.Equal(t, []int{1}, ranks, "floor(0.5 × 3) = 1 selected in the other iteration")
	require.Equal(t, []float64{3}, margins)
}

func newIterationNamed(t testing.TB, db store.DBTX, ordinal int) int64 {
	t.Helper()
	ctx := context.Background()
	run, err := store.EnsureRun(ctx, db, "score", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, db, run.ID, []store.IterationSpec{{Ordinal: ordinal, Name: "i" + string(rune('a'+ordinal)), PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	for _, it := range its {
		if it.Ordinal == ordinal {
			return it.ID
		}
	}
	t.Fatal("iteration not created")
	return 0
}

// BenchmarkScorePairsSQL1M scores and selects 1,000,000 pairs of one
// iteration in PostgreSQL (target: under 15 s).
func BenchmarkScorePairsSQL1M(b *testing.B) {
	ctx := context.Background()
	pool, it := seedMillionPairs(b)
	// The whole database, not only pairs: autovacuum would otherwise take
	// up the million new prompts (and their trigram index's pending list)
	// and responses while scoring is timed.
	_, err := pool.Exec(ctx, `VACUUM ANALYZE`)
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
		require.NoError(b, err)
	}
}

// seedMillionPairs stores 1,000,000 pairs of random margins in one
// iteration of a new database.
func seedMillionPairs(b *testing.B) (*pgxpool.Pool, int64) {
	pool, _ := storetest.NewPool(b)
	it := newIterationNamed(b, pool, 0)
	const n = 1_000_000
	rng := rand.New(rand.NewPCG(1, 2))
	mex := make([]float64, n)
	mim := make([]float64, n)
	for i := range n {
		mex[i], mim[i] = rng.ExpFloat64(), rng.NormFloat64()
	}
	storetest.SeedPairs(b, pool, it, mex, mim)
	return pool, it
}

// TestScoringConcurrentlyAndInACallersTransaction: scorings of one
// iteration at once all write every pair (they take turns, since the update
// addresses rows by ctid); another iteration's pairs are left alone; and a
// caller's transaction gets its planner settings back.
func TestScoringConcurrentlyAndInACallersTransaction(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	a, b := newIterationNamed(t, pool, 0), newIterationNamed(t, pool, 1)
	mex := make([]float64, 500)
	mim := make([]float64, 500)
	for i := range mex {
		mex[i], mim[i] = float64(i%37), float64(i%11)-5
	}
	storetest.SeedPairs(t, pool, a, mex, mim)
	storetest.SeedPairs(t, pool, b, mex, mim)
	spec := store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}

	errs := make(chan error, 4)
	for range 4 {
		go func() {
			n, err := store.ScorePairs(ctx, pool, a, spec, store.TrainSelection)
			if err == nil && n != 200 {
				err = fmt.Errorf("selected %d, want floor(0.4·500) = 200", n)
			}
			errs <- err
		}()
	}
	for range 4 {
		require.NoError(t, <-errs)
	}
	var scored, untouched int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE iteration_id = $1 AND rank IS NOT NULL),
		count(*) FILTER (WHERE iteration_id = $2 AND rank IS NULL AND NOT selected) FROM pairs`, a, b).Scan(&scored, &untouched))
	require.Equal(t, 500, scored)
	require.Equal(t, 500, untouched)

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, `SET LOCAL work_mem = '8MB'`)
	require.NoError(t, err)
	n, err := store.ScorePairs(ctx, tx, b, spec, store.TrainSelection)
	require.NoError(t, err)
	require.EqualValues(t, 200, n)
	var workMem, hashJoin, mergeJoin string
	require.NoError(t, tx.QueryRow(ctx, `SELECT current_setting('work_mem'), current_setting('enable_hashjoin'),
		current_setting('enable_mergejoin')`).Scan(&workMem, &hashJoin, &mergeJoin))
	require.Equal(t, []string{"8MB", "on", "on"}, []string{workMem, hashJoin, mergeJoin})
}

// TestHugeAndNonFiniteMarginsAgreeWithGo: margins near the float64 limit,
// beyond 2^199, or so small that their squares underflow are scored by SQL
// as by Go (scaled by the same power of two, never overflowing), and a
// pool with a margin of ±Inf or NaN is rejected by both, naming the pair,
// and leaves the stored scores untouched.
func TestHugeAndNonFiniteMarginsAgreeWithGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	spec := metric.Spec{Metric: metric.AlignmentPotential, ImplicitWeight: 1, Ratio: 0.5}
	sqlSpec := store.ScoreSpec{Metric: string(spec.Metric), ImplicitWeight: 1, Ratio: 0.5}

	for i, tc := range []struct {
		name     string
		mex, mim []float64
	}{
		// PostgreSQL's sums of these overflow unless scaled.
		{"near the float64 limit", []float64{1.7e308, 1.2e308, 1, 9e307}, []float64{-1.6e308, 1e308, 2, 1.7e308}},
		// Above 2^199 (6.3e59): the one-pass moments leave them out and
		// the pool is scored again, scaled.
		{"beyond 2^199", []float64{1e100, 3e100, 2e100, 7}, []float64{1, 2, 3, 4}},
		// Deviations of 1e-300 square to 0: unscaled, the std would be 0
		// and every z 0.
		{"tiny", []float64{1e-300, 2e-300, 3e-300, 5e-300}, []float64{2e-301, 1e-300, -3e-300, 4e-300}},
		{"subnormal", []float64{5e-324, 1e-323, 2.5e-323, 1.5e-323}, []float64{1, 1.5, 2, 3.5}},
	} {
		it := newIterationNamed(t, pool, 10+i)
		storetest.SeedPairs(t, pool, it, tc.mex, tc.mim)
		_, err := store.ScorePairs(ctx, pool, it, sqlSpec, store.TrainSelection)
		require.NoError(t, err, tc.name)
		got := readScores(t, pool, it)
		want := goScores(t, got, spec)
		for i := range got {
			require.NotZero(t, want[i].ExplicitZ, "%s: every explicit margin differs from the mean", tc.name)
			require.InDelta(t, want[i].ExplicitZ, got[i].ExplicitZ, 1e-9, tc.name)
			require.InDelta(t, want[i].ImplicitZ, got[i].ImplicitZ, 1e-9, tc.name)
			require.Equal(t, want[i].Rank, got[i].Rank, tc.name)
			require.Equal(t, want[i].Selected, got[i].Selected, tc.name)
		}
	}

	for i, tc := range []struct {
		name     string
		mex, mim []float64
	}{
		{"explicit +Inf", []float64{1, math.Inf(1), 3}, []float64{0.5, 0.25, 1}},
		{"implicit -Inf", []float64{1, 2, 3}, []float64{0.5, math.Inf(-1), 1}},
		{"explicit NaN", []float64{1, math.NaN(), 3}, []float64{0.5, 0.25, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			it := newIterationNamed(t, pool, 1+i)
			storetest.SeedPairs(t, pool, it, tc.mex, tc.mim)
			stored := readScores(t, pool, it)
			_, err := store.ScorePairs(ctx, pool, it, sqlSpec, store.TrainSelection)
			require.ErrorContains(t, err, fmt.Sprintf("pair %d: margins must be finite", stored[1].ID))
			after := readScores(t, pool, it)
			for _, s := range after {
				require.Zero(t, s.Rank, "rolled back: no pair ranked")
				require.False(t, s.Selected)
			}

			items := make([]metric.Item, len(stored))
			for i, g := range stored {
				items[i] = metric.Item{ID: g.ID, ExplicitMargin: g.Mex, ImplicitMargin: g.Mim}
			}
			_, err = metric.Score(items, spec)
			require.ErrorContains(t, err, "item 1: margins must be finite")
		})
	}
}

// TestDPOPoolAgreesWithGo: with scoring.implicit dpo the pool is the pairs
// that have a dpo_margin, and |dpo_margin| is the implicit quantity. SQL
// scores those as Go scores them from the same margins, leaves the others
// unranked and unselected, and a second scoring ranks and selects the same
// pairs.
func TestDPOPoolAgreesWithGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	rng := rand.New(rand.NewPCG(5, 9))
	const n = 60
	mex, mim := make([]float64, n), make([]float64, n)
	for i := range n {
		mex[i], mim[i] = rng.ExpFloat64(), 100+rng.NormFloat64() // the simpo margins would rank differently
	}
	storetest.SeedPairs(t, pool, it, mex, mim)
	// Every third pair has no reference log-probs; the others a dpo margin,
	// some of them negative and some tied.
	_, err := pool.Exec(ctx, `UPDATE pairs SET dpo_margin = CASE WHEN id % 4 = 0 THEN 0.25 ELSE (id % 7) / 10.0 - 0.3 END
		WHERE iteration_id = $1 AND id % 3 <> 0`, it)
	require.NoError(t, err)
	spec := metric.Spec{Metric: metric.AlignmentPotential, ImplicitWeight: 1.5, Ratio: 0.3}
	sqlSpec := store.ScoreSpec{Metric: string(spec.Metric), ImplicitWeight: 1.5, Ratio: 0.3, Implicit: "dpo"}
	selected, err := store.ScorePairs(ctx, pool, it, sqlSpec, store.TrainSelection)
	require.NoError(t, err)
	first := readScores(t, pool, it)

	rows, err := pool.Query(ctx, `SELECT id, explicit_margin, dpo_margin FROM pairs
		WHERE iteration_id = $1 AND dpo_margin IS NOT NULL ORDER BY id`, it)
	require.NoError(t, err)
	var items []metric.Item
	for rows.Next() {
		var item metric.Item
		require.NoError(t, rows.Scan(&item.ID, &item.ExplicitMargin, &item.ImplicitMargin))
		items = append(items, item)
	}
	require.NoError(t, rows.Err())
	require.Len(t, items, 40, "pairs 1..60 without the multiples of 3")
	want, err := metric.Score(items, spec)
	require.NoError(t, err)
	require.NoError(t, metric.Select(want, spec))
	require.EqualValues(t, 12, selected, "floor(0.3·40)")
	byID := map[int64]storedScore{}
	for _, s := range first {
		byID[s.ID] = s
	}
	for _, w := range want {
		got := byID[w.ID]
		require.InDelta(t, w.ExplicitZ, got.ExplicitZ, 1e-9, "pair %d", w.ID)
		require.InDelta(t, w.ImplicitZ, got.ImplicitZ, 1e-9, "pair %d", w.ID)
		require.InDelta(t, w.AlignmentPotential, got.AP, 1e-9, "pair %d", w.ID)
		require.Equal(t, w.Rank, got.Rank, "pair %d", w.ID)
		require.Equal(t, w.Selected, got.Selected, "pair %d", w.ID)
		delete(byID, w.ID)
	}
	require.Len(t, byID, 20)
	for id, s := range byID {
		require.Zero(t, s.Rank, "pair %d has no dpo margin", id)
		require.False(t, s.Selected, "pair %d", id)
	}

	// Scoring again ranks and selects the same pairs. The values may differ
	// in their last bits: the sums run in the order the scan reads the
	// pairs, and the first scoring's updates moved them within their pages.
	_, err = store.ScorePairs(ctx, pool, it, sqlSpec, store.TrainSelection)
	require.NoError(t, err)
	for i, again := range readScores(t, pool, it) {
		was := first[i]
		require.Equal(t, was.ID, again.ID)
		require.Equal(t, was.Rank, again.Rank, "pair %d", was.ID)
		require.Equal(t, was.Selected, again.Selected, "pair %d", was.ID)
		if was.Rank == 0 {
			require.True(t, math.IsNaN(again.AP), "pair %d is not in the pool", was.ID)
			continue
		}
		require.InDelta(t, was.AP, again.AP, 1e-12, "pair %d", was.ID)
	}
}
