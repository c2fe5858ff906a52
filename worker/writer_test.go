package worker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestWriterBatchesAndIsolatesABadResult: results of tasks in flight
// together are written in one statement, and each caller learns only of
// its own: when one result cannot be written (PostgreSQL refuses a NUL
// byte in text), the batch is written again one by one, the others are
// recorded and only that one fails.
func TestWriterBatchesAndIsolatesABadResult(t *testing.T) {
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "writer", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "i", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	it := its[0].ID
	const n = 8
	var ps []prompt.Prompt
	for i := range 2 * n {
		ps = append(ps, prompt.New([]prompt.Message{{Role: "user", Content: fmt.Sprintf("q%d", i)}}, "test", ""))
	}
	ids, err := store.LoadPool(ctx, pool, it, ps)
	require.NoError(t, err)
	_, err = store.CreateGenerateTasks(ctx, pool, it)
	require.NoError(t, err)

	var busy atomic.Int64
	w, err := newWriter(pool, &busy, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	// Every batch waits for all n tasks in flight, however slowly they
	// come, so each round is one batch.
	w.linger = time.Hour
	busy.Store(n)
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.run(runCtx)
	}()

	completion := func(i int) store.Completion {
		r := []float64{1, 0.5}
		return store.Completion{Key: store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"}, Outcome: "paired", Attempts: 1,
			Responses: []store.Response{
				{SampleIndex: 0, Content: fmt.Sprintf("reply a to %d", i), TokenCount: 3, LogProbSum: -1, Reward: &r[0]},
				{SampleIndex: 1, Content: fmt.Sprintf("reply b to %d", i), TokenCount: 3, LogProbSum: -1, Reward: &r[1]},
			},
			Pair: &store.PairChoice{Chosen: 0, Rejected: 1, ExplicitMargin: 0.5}}
	}
	round := func(first int, bad int) []error {
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c := completion(first + i)
				if first+i == bad {
					c.Responses[1].Content = "a NUL \x00 byte"
				}
				errs[i] = w.complete(ctx, c)
			})
		}
		wg.Wait()
		return errs
	}

	for i, err := range round(0, -1) {
		require.NoError(t, err, "task %d", i)
	}
	require.Equal(t, 1, w.writes, "one statement for the round")

	const bad = n + 3
	for i, err := range round(n, bad) {
		if n+i == bad {
			require.ErrorContains(t, err, "complete generate task", "the bad result")
			continue
		}
		require.NoError(t, err, "task %d", n+i)
	}
	require.Equal(t, 1+n-1, w.writes, "the second round written again one by one")
	stop()
	<-stopped

	var done, responses, pairs int
	require.NoError(t, pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tasks WHERE iteration_id = $1 AND status = 'done'),
		(SELECT count(*) FROM responses WHERE iteration_id = $1),
		(SELECT count(*) FROM pairs WHERE iteration_id = $1)`, it).Scan(&done, &responses, &pairs))
	require.Equal(t, 2*n-1, done)
	require.Equal(t, 2*(2*n-1), responses)
	require.Equal(t, 2*n-1, pairs)
}
