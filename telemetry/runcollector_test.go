package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
	"github.com/selfplay/selfplay/telemetry"
)

// TestRunCollectorFollowsTheRun: the run metrics follow tasks as they
// settle and selection as it happens, scrape after scrape.
func TestRunCollectorFollowsTheRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "demo", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it0", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	it := its[0].ID
	storetest.SeedPairs(t, pool, it, []float64{1, 2, 3, 4}, []float64{0.5, 0.5, 0.5, 0.5})
	made, err := store.CreateGenerateTasks(ctx, pool, it)
	require.NoError(t, err)
	require.EqualValues(t, 4, made)
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageGenerating, ""))

	reg := prometheus.NewRegistry()
	reg.MustRegister(telemetry.NewRunCollector(pool, "demo", discard))
	url := serve(t, reg) + "/metrics"

	fams := scrape(t, url)
	require.EqualValues(t, 4, value(fams, "selfplay_run_tasks", "iteration", "it0", "kind", "generate", "status", "pending"))
	require.EqualValues(t, 4, value(fams, "selfplay_pair_outcomes", "iteration", "it0", "outcome", "pending"))
	require.EqualValues(t, 0, value(fams, "selfplay_pairs_selected", "iteration", "it0"))

	rows, err := pool.Query(ctx, `SELECT prompt_id FROM tasks WHERE iteration_id = $1 ORDER BY prompt_id`, it)
	require.NoError(t, err)
	var ids []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	key := func(i int) store.TaskKey { return store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"} }
	require.NoError(t, store.FinishTask(ctx, pool, key(0), "paired", 1))
	require.NoError(t, store.FinishTask(ctx, pool, key(1), "identical_texts", 1))
	require.NoError(t, store.FailTask(ctx, pool, key(2), store.Failure{Reason: "boom"}, 1))

	fams = scrape(t, url)
	require.EqualValues(t, 2, value(fams, "selfplay_run_tasks", "iteration", "it0", "kind", "generate", "status", "done"))
	require.EqualValues(t, 1, value(fams, "selfplay_run_tasks", "iteration", "it0", "kind", "generate", "status", "failed"))
	require.EqualValues(t, 1, value(fams, "selfplay_run_tasks", "iteration", "it0", "kind", "generate", "status", "pending"))
	require.EqualValues(t, 1, value(fams, "selfplay_pair_outcomes", "iteration", "it0", "outcome", "paired"))
	require.EqualValues(t, 1, value(fams, "selfplay_pair_outcomes", "iteration", "it0", "outcome", "identical_texts"))
	require.EqualValues(t, 1, value(fams, "selfplay_pair_outcomes", "iteration", "it0", "outcome", "failed"))

	// Selection: counted at every scrape while selecting, then once more
	// in the next stage.
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageSelecting, ""))
	_, err = pool.Exec(ctx, `UPDATE pairs SET selected = explicit_margin >= 3 WHERE iteration_id = $1`, it)
	require.NoError(t, err)
	require.EqualValues(t, 2, value(scrape(t, url), "selfplay_pairs_selected", "iteration", "it0"))
	_, err = pool.Exec(ctx, `UPDATE pairs SET selected = explicit_margin >= 2 WHERE iteration_id = $1`, it)
	require.NoError(t, err)
	require.EqualValues(t, 3, value(scrape(t, url), "selfplay_pairs_selected", "iteration", "it0"))
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageDone, ""))
	fams = scrape(t, url)
	require.EqualValues(t, 3, value(fams, "selfplay_pairs_selected", "iteration", "it0"))
	require.EqualValues(t, 1, value(fams, "selfplay_iteration_stage", "iteration", "it0", "stage", "done"))
	require.EqualValues(t, 0, value(fams, "selfplay_current_iteration"))
}
