package orchestrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestScheduleChangesApplyOnlyToIterationsNotStarted walks the rule of one
// schedule per run: a change to an iteration not yet started is stored; a
// change to a started one is refused with the differences; a failed
// iteration that did no work takes the change when retried.
func TestScheduleChangesApplyOnlyToIterationsNotStarted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	d := config.Defaults()
	schedule := func(samples0, samples1 int, policy0 string) *config.Config {
		c := config.Defaults()
		c.Run = "r"
		for i, name := range []string{"iter0", "iter1"} {
			it := config.Iteration{Name: name, PolicyModel: policy0, Generation: d.Generation, Scoring: d.Scoring,
				Selection: d.Selection, Evolve: d.Evolve}
			it.Generation.Samples = samples0
			if i == 1 {
				it.PolicyModel, it.Generation.Samples = "tiny-1", samples1
			}
			c.Iterations = append(c.Iterations, it)
		}
		return &c
	}
	ensure := func(c *config.Config, retry bool) ([]store.Iteration, error) {
		run, err := store.EnsureRun(ctx, pool, c.Run, []byte(`{}`))
		require.NoError(t, err)
		var specs []store.IterationSpec
		for i, it := range c.Iterations {
			b, err := json.Marshal(it.Settings())
			require.NoError(t, err)
			specs = append(specs, store.IterationSpec{Ordinal: i, Name: it.Name, PolicyModel: it.PolicyModel, Config: b})
		}
		its, err := store.EnsureIterations(ctx, pool, run.ID, specs)
		require.NoError(t, err)
		o := &Orchestrator{cfg: c, pool: pool, opts: Options{RetryFailed: retry}, log: slog.New(slog.DiscardHandler)}
		return o.checkSchedule(ctx, its, specs)
	}
	samplesOf := func(it store.Iteration) int {
		s, err := storedSettings(it)
		require.NoError(t, err)
		return s.Generation.Samples
	}

	its, err := ensure(schedule(2, 2, "tiny-0"), false)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, its[0].ID, store.StageGenerating, ""))

	// iter1 has not started: its change is stored.
	its, err = ensure(schedule(2, 5, "tiny-0"), false)
	require.NoError(t, err)
	require.Equal(t, 5, samplesOf(its[1]))

	// iter0 has: refused, with what differs.
	_, err = ensure(schedule(3, 5, "tiny-0"), false)
	require.ErrorContains(t, err, "iter0 (generating): generation.samples: stored 2, schedule 3")
	require.NotContains(t, err.Error(), "iter1")

	// iter0 failed before any task was done (a misspelt model): retried,
	// it takes the schedule's settings; without --retry-failed it does not.
	require.NoError(t, store.SetStage(ctx, pool, its[0].ID, store.StageFailed, "generating: policy_model \"tiny-O\" is not served"))
	_, err = ensure(schedule(2, 5, "tiny-00"), false)
	require.ErrorContains(t, err, `iter0 (failed): policy_model: stored "tiny-0", schedule "tiny-00"`)
	its, err = ensure(schedule(2, 5, "tiny-00"), true)
	require.NoError(t, err)
	require.Equal(t, "tiny-00", its[0].PolicyModel)
	s, err := storedSettings(its[0])
	require.NoError(t, err)
	require.Equal(t, "tiny-00", s.PolicyModel)

	// Once one of its tasks is done, a failed iteration keeps its settings.
	_, err = store.LoadPool(ctx, pool, its[0].ID, []prompt.Prompt{prompt.New([]prompt.Message{{Role: "user", Content: "q"}}, "p.jsonl", "")})
	require.NoError(t, err)
	_, err = store.CreateGenerateTasks(ctx, pool, its[0].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE tasks SET status = 'done' WHERE iteration_id = $1`, its[0].ID)
	require.NoError(t, err)
	_, err = ensure(schedule(4, 5, "tiny-00"), true)
	require.ErrorContains(t, err, "iter0 (failed): generation.samples: stored 2, schedule 4")
}
