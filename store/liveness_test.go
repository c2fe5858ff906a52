package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// Two databases cloned from one migrated template are two deployments:
// each gets a token of its own on its first read, and keeps it.
func TestDeploymentTokenIsPerDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := map[string]bool{}
	for range 2 {
		pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
		require.NoError(t, err)
		defer pool.Close()
		tok, err := store.DeploymentToken(ctx, pool)
		require.NoError(t, err)
		require.Regexp(t, `^[0-9a-f]{16}$`, tok, "usable as a NATS subject token and in a consumer name")
		again, err := store.DeploymentToken(ctx, pool)
		require.NoError(t, err)
		require.Equal(t, tok, again, "stable within a database")
		tokens[tok] = true
	}
	require.Len(t, tokens, 2, "databases copied from one template have different tokens")
}

// Publishing, losses and a retry, on five tasks, paged two at a time: a
// task settled since the consumer was read is never bumped; a retried task
// starts with fresh counters and a publication never used before.
func TestLossesAndRetryCounters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
	require.NoError(t, err)
	defer pool.Close()
	it, ids := newTasks(t, pool, 5)
	key := func(i int) store.TaskKey {
		return store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"}
	}

	// Never published: all five, in pages of two, in id order.
	var seen []int64
	var after int64
	for {
		page, err := store.Unpublished(ctx, pool, it, "generate", after, 2)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		require.LessOrEqual(t, len(page), 2)
		var pageIDs []int64
		for _, r := range page {
			require.Zero(t, r.Publications)
			pageIDs = append(pageIDs, r.PromptID)
		}
		require.NoError(t, store.MarkPublished(ctx, pool, it, "generate", pageIDs))
		seen = append(seen, pageIDs...)
		after = pageIDs[len(pageIDs)-1]
	}
	require.Equal(t, ids, seen)
	again, err := store.Unpublished(ctx, pool, it, "generate", 0, 10)
	require.NoError(t, err)
	require.Empty(t, again, "published tasks are not published again")

	// Task 0 is done and task 1 failed after three deliveries, then the
	// other three are found lost, twice.
	require.NoError(t, store.FinishTask(ctx, pool, key(0), "paired", 1))
	require.NoError(t, store.FailTask(ctx, pool, key(1), store.Failure{Reason: "boom"}, 3))
	for round := 1; round <= 2; round++ {
		var bumped []store.TaskRef
		after = 0
		for {
			page, err := store.BumpLost(ctx, pool, it, "generate", after, 2)
			require.NoError(t, err)
			if len(page) == 0 {
				break
			}
			bumped = append(bumped, page...)
			after = page[len(page)-1].PromptID
		}
		require.Equal(t, []store.TaskRef{
			{PromptID: ids[2], Publications: round, Losses: round},
			{PromptID: ids[3], Publications: round, Losses: round},
			{PromptID: ids[4], Publications: round, Losses: round},
		}, bumped, "round %d: only pending tasks, each once", round)
	}
	// An exhausted message of an old publication changes nothing; of the
	// current one, it counts a loss.
	_, ok, err := store.BumpLostTask(ctx, pool, key(2), 1)
	require.NoError(t, err)
	require.False(t, ok, "publication 1 is no longer task 2's message")
	ref, ok, err := store.BumpLostTask(ctx, pool, key(2), 2)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, store.TaskRef{PromptID: ids[2], Publications: 3, Losses: 3}, ref)
	_, ok, err = store.BumpLostTask(ctx, pool, key(0), 0)
	require.NoError(t, err)
	require.False(t, ok, "a done task is never brought back")

	// Task 2 fails; --retry-failed brings tasks 1 and 2 back with fresh
	// counters, past every publication they had.
	require.NoError(t, store.FailTask(ctx, pool, key(2), store.Failure{Reason: "lost"}, 0))
	n, err := store.RetryFailedTasks(ctx, pool, it)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	type row struct {
		status                       string
		attempts, publications, loss int
		published                    bool
	}
	read := func(i int) row {
		var r row
		require.NoError(t, pool.QueryRow(ctx, `SELECT status, attempts, publications, losses, published_at IS NOT NULL FROM tasks
			WHERE iteration_id = $1 AND prompt_id = $2 AND kind = 'generate'`, it, ids[i]).Scan(&r.status, &r.attempts, &r.publications, &r.loss, &r.published))
		return r
	}
	require.Equal(t, row{"pending", 0, 1, 0, false}, read(1))
	require.Equal(t, row{"pending", 0, 4, 0, false}, read(2))
	require.Equal(t, row{"done", 1, 0, 0, true}, read(0), "finished work is kept")
	next, err := store.Unpublished(ctx, pool, it, "generate", 0, 10)
	require.NoError(t, err)
	require.Equal(t, []store.TaskRef{{PromptID: ids[1], Publications: 1}, {PromptID: ids[2], Publications: 4}}, next)
}
