package store_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// countedByHand groups the run's tasks the way the triggers keep them,
// straight from the tasks table.
func countedByHand(t *testing.T, pool *pgxpool.Pool) []store.TaskGroup {
	t.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT i.name AS iteration, t.kind, t.status,
		       CASE WHEN t.kind = 'generate' THEN coalesce(t.outcome, '') ELSE '' END AS outcome, count(*) AS n
		FROM tasks t JOIN iterations i ON i.id = t.iteration_id
		GROUP BY i.ordinal, 1, 2, 3, 4 ORDER BY i.ordinal, 2, 3, 4`)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[store.TaskGroup])
	require.NoError(t, err)
	return got
}

// TestTaskCountsFollowTasks: the counts the triggers keep equal a GROUP BY
// over tasks after inserts, settles from many connections at once,
// updates that change no count, a retry back to pending and deletes.
func TestTaskCountsFollowTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 40)

	groups, err := store.RunTaskCounts(ctx, pool, "r")
	require.NoError(t, err)
	require.Equal(t, []store.TaskGroup{{Iteration: "i", Kind: "generate", Status: "pending", N: 40}}, groups)

	var wg sync.WaitGroup
	for i, id := range ids[:30] {
		wg.Go(func() {
			k := store.TaskKey{IterationID: it, PromptID: id, Kind: "generate"}
			var err error
			switch {
			case i%3 == 0:
				err = store.FailTask(ctx, pool, k, store.Failure{Reason: "boom"}, 1)
			case i%3 == 1:
				err = store.FinishTask(ctx, pool, k, "paired", 1)
			default:
				err = store.FinishTask(ctx, pool, k, "all_rewards_equal", 1)
			}
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// Changes no count: same status and outcome.
	_, err = pool.Exec(ctx, `UPDATE tasks SET attempts = attempts + 1 WHERE iteration_id = $1`, it)
	require.NoError(t, err)
	// A failed task retried, a done one deleted with its pool entry.
	_, err = pool.Exec(ctx, `UPDATE tasks SET status = 'pending', error = NULL WHERE iteration_id = $1 AND prompt_id = $2`, it, ids[0])
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM iteration_prompts WHERE iteration_id = $1 AND prompt_id = $2`, it, ids[1])
	require.NoError(t, err)

	// Read-only, before any fold: the counts kept plus the changes since.
	var pending int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM task_count_deltas`).Scan(&pending))
	require.Positive(t, pending, "changes not folded yet")
	unfolded, err := store.IterationTaskCounts(ctx, pool, it)
	require.NoError(t, err)
	require.Equal(t, countedByHand(t, pool), unfolded)

	groups, err = store.RunTaskCounts(ctx, pool, "r")
	require.NoError(t, err)
	require.Equal(t, unfolded, groups)
	// By hand: of ids[0..29], 10 failed (i%3==0), 10 paired, 10
	// all_rewards_equal; ids[0] back to pending, ids[1] (paired) deleted.
	require.Equal(t, []store.TaskGroup{
		{Iteration: "i", Kind: "generate", Status: "done", Outcome: "all_rewards_equal", N: 10},
		{Iteration: "i", Kind: "generate", Status: "done", Outcome: "paired", N: 9},
		{Iteration: "i", Kind: "generate", Status: "failed", N: 9},
		{Iteration: "i", Kind: "generate", Status: "pending", N: 11},
	}, groups)
	require.Equal(t, countedByHand(t, pool), groups)

	c, err := store.CountTasks(ctx, pool, it, "generate")
	require.NoError(t, err)
	require.Equal(t, store.TaskCounts{Pending: 11, Done: 19, Failed: 9}, c)
	c, err = store.CountTasks(ctx, pool, it, "evolve")
	require.NoError(t, err)
	require.Equal(t, store.TaskCounts{}, c)

	var deltas int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM task_count_deltas`).Scan(&deltas))
	require.Zero(t, deltas, "folded")
	// Folding again with nothing new changes nothing.
	again, err := store.RunTaskCounts(ctx, pool, "r")
	require.NoError(t, err)
	require.Equal(t, groups, again)
	folded, err := store.IterationTaskCounts(ctx, pool, it)
	require.NoError(t, err)
	require.Equal(t, groups, folded, "after the fold")
	none, err := store.IterationTaskCounts(ctx, pool, it+1000)
	require.NoError(t, err)
	require.Empty(t, none)
	other, err := store.RunTaskCounts(ctx, pool, "no-such-run")
	require.NoError(t, err)
	require.Empty(t, other)
}

// TestTaskCountsConcurrentFolds: folds running while tasks settle apply
// every change exactly once.
func TestTaskCountsConcurrentFolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 60)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 3 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := store.CompactTaskCounts(ctx, pool); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var settle sync.WaitGroup
	for _, id := range ids {
		settle.Go(func() {
			if err := store.FinishTask(ctx, pool, store.TaskKey{IterationID: it, PromptID: id, Kind: "generate"}, "paired", 1); err != nil {
				t.Error(err)
			}
		})
	}
	settle.Wait()
	close(stop)
	wg.Wait()
	groups, err := store.RunTaskCounts(ctx, pool, "r")
	require.NoError(t, err)
	require.Equal(t, []store.TaskGroup{{Iteration: "i", Kind: "generate", Status: "done", Outcome: "paired", N: 60}}, groups)
}
