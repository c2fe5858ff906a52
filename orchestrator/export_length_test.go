package orchestrator_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestReselectWithLengthControl: a run selected with length_control none
// is re-exported with residual (in Go, over the stored margins and the
// stored fit) into its own folder, and gets the pairs, in the order, that
// scoring with residual in SQL then stores.
func TestReselectWithLengthControl(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it", PolicyModel: "m",
		Config: []byte(`{"selection": {"metric": "alignment_potential"}}`)}})
	require.NoError(t, err)
	it := its[0].ID
	mex := []float64{0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5}
	mim := []float64{0.1, -2, 0.3, 1.5, -0.2, 2.5, 0.05, -1, 0.4, 3}
	storetest.SeedPairs(t, pool, it, mex, mim)
	// Chosen replies of 1..10 tokens, unrelated to their margins' order.
	_, err = pool.Exec(ctx, `
		WITH c AS (SELECT chosen_id, 1 + (row_number() OVER (ORDER BY id) * 7) % 10 AS tokens FROM pairs WHERE iteration_id = $1),
		r AS (UPDATE responses SET token_count = c.tokens FROM c WHERE responses.id = c.chosen_id)
		UPDATE pairs p SET chosen_tokens = c.tokens FROM c WHERE p.chosen_id = c.chosen_id`, it)
	require.NoError(t, err)
	spec := store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}
	_, err = store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageDone, ""))
	storedNone := selectedPrompts(t, pool, it)

	dir := t.TempDir()
	ms := metric.Spec{Metric: metric.AlignmentPotential, ImplicitWeight: 1, Ratio: 0.4}
	res, err := orchestrator.Export(ctx, pool, orchestrator.ExportSpec{Dir: dir, Run: "r", Iteration: "it", IterationID: it,
		Reselect: &ms, LengthControl: "residual"})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "r", "it", "by-alignment_potential-0.4-w1-length_residual", "train.jsonl"), res.Dataset)
	var goResidual []int64
	for _, r := range readExport(t, res.Dataset) {
		goResidual = append(goResidual, r.PromptID)
	}
	require.Equal(t, storedNone, selectedPrompts(t, pool, it), "the stored selection is untouched")

	spec.LengthControl = "residual"
	_, err = store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
	require.NoError(t, err)
	sqlResidual := selectedPrompts(t, pool, it)
	require.Equal(t, sqlResidual, goResidual)
	require.NotEqual(t, storedNone, sqlResidual, "the length control changes this selection")
}

// selectedPrompts lists the prompt ids of an iteration's stored selection
// in rank order.
func selectedPrompts(t *testing.T, pool store.DBTX, it int64) []int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT prompt_id FROM pairs WHERE iteration_id = $1 AND selected ORDER BY rank`, it)
	require.NoError(t, err)
	var out []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		out = append(out, id)
	}
	require.NoError(t, rows.Err())
	return out
}
