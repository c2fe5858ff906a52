package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// learnIteration seeds ten pairs, selects the three (or four) with the
// largest explicit margin, and returns the iteration.
func learnIteration(t *testing.T, pool store.DBTX, selected int) int64 {
	t.Helper()
	ctx := context.Background()
	run, err := store.EnsureRun(ctx, pool, "learn", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it0", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	it := its[0].ID
	storetest.SeedPairs(t, pool, it, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1})
	n, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "explicit_margin", Count: selected, Seed: 1, ImplicitWeight: 1}, store.TrainSelection)
	require.NoError(t, err)
	require.EqualValues(t, selected, n)
	return it
}

func learnCounts(t *testing.T, pool store.DBTX, it int64) (sel, not int) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT p.selected, count(*) FROM tasks t
		JOIN pairs p ON p.iteration_id = t.iteration_id AND p.prompt_id = t.prompt_id
		WHERE t.iteration_id = $1 AND t.kind = 'learn' GROUP BY 1`, it)
	require.NoError(t, err)
	for rows.Next() {
		var s bool
		var n int
		require.NoError(t, rows.Scan(&s, &n))
		if s {
			sel = n
		} else {
			not = n
		}
	}
	require.NoError(t, rows.Err())
	return sel, not
}

// The sample takes round(m·S/N) selected pairs, half up, and the rest from
// the others; a second start adds nothing and keeps the first's model.
func TestLearningCheckSample(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		name             string
		selected, sample int
		wantSel, wantNot int
	}{
		{"5 of 10, 4 selected: 2 + 3", 4, 5, 2, 3},
		{"3 of 10, 4 selected: 1.2 rounds to 1", 4, 3, 1, 2},
		{"5 of 10, 3 selected: 1.5 rounds up to 2", 3, 5, 2, 3},
		{"more than the pool: all ten", 3, 2000, 3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := storetest.NewPool(t)
			it := learnIteration(t, pool, tc.selected)
			c, err := store.StartLearningCheck(ctx, pool, store.LearningCheck{IterationID: it, Model: "m-1", Implicit: "simpo", Beta: 0.01, Sample: tc.sample, Seed: 7})
			require.NoError(t, err)
			require.Equal(t, 10, c.Pairs)
			require.Equal(t, tc.wantSel+tc.wantNot, c.Sampled)
			sel, not := learnCounts(t, pool, it)
			require.Equal(t, tc.wantSel, sel)
			require.Equal(t, tc.wantNot, not)

			again, err := store.StartLearningCheck(ctx, pool, store.LearningCheck{IterationID: it, Model: "m-2", Implicit: "simpo", Beta: 0.01, Sample: 1, Seed: 8})
			require.NoError(t, err)
			require.Equal(t, "m-1", again.Model, "the stored check stands")
			require.Equal(t, c.Sampled, again.Sampled)
			sel2, not2 := learnCounts(t, pool, it)
			require.Equal(t, sel, sel2)
			require.Equal(t, not, not2)
		})
	}
}

// The dpo form samples only pairs with a dpo margin: none here.
func TestLearningCheckSampleDPOWithoutReference(t *testing.T) {
	t.Parallel()
	pool, _ := storetest.NewPool(t)
	it := learnIteration(t, pool, 3)
	c, err := store.StartLearningCheck(context.Background(), pool, store.LearningCheck{IterationID: it, Model: "m-1", Implicit: "dpo", Beta: 0.1, Sample: 5, Seed: 7})
	require.NoError(t, err)
	require.Zero(t, c.Pairs)
	require.Zero(t, c.Sampled)
}

// A pair's result is stored once: a second completion (a redelivery, a
// racing worker) keeps the first, and the task is done.
func TestCompleteLearnOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := learnIteration(t, pool, 3)
	_, err := store.StartLearningCheck(ctx, pool, store.LearningCheck{IterationID: it, Model: "m-1", Implicit: "simpo", Beta: 0.01, Sample: 1, Seed: 7})
	require.NoError(t, err)
	var prompt int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT prompt_id FROM tasks WHERE iteration_id = $1 AND kind = 'learn'`, it).Scan(&prompt))
	p, err := store.ReadLearnPair(ctx, pool, it, prompt)
	require.NoError(t, err)
	k := store.TaskKey{IterationID: it, PromptID: prompt, Kind: "learn"}
	first := store.PairLearning{PairID: p.PairID, Model: "m-1", ChosenLogProb: -1.5, RejectedLogProb: -3, ImplicitMargin: 0.75, OldImplicitMargin: p.ImplicitMargin}
	require.NoError(t, store.CompleteLearn(ctx, pool, k, 1, first))
	second := first
	second.ImplicitMargin = 9
	require.NoError(t, store.CompleteLearn(ctx, pool, k, 2, second))
	var n int
	var margin, delta float64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), min(implicit_margin), min(delta) FROM pair_learning`).Scan(&n, &margin, &delta))
	require.Equal(t, 1, n)
	require.Equal(t, 0.75, margin)
	require.Equal(t, 0.75-p.ImplicitMargin, delta)
	var status string
	require.NoError(t, pool.QueryRow(ctx, `SELECT status FROM tasks WHERE iteration_id = $1 AND kind = 'learn'`, it).Scan(&status))
	require.Equal(t, "done", status)
}
