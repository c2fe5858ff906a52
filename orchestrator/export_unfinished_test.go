package orchestrator_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

func fileSum(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestExportRefusesUnfinishedIterations: an iteration still generating, or
// failed, is not exported — no files, no exports rows — and the error says
// why (it exited 0 with a 0-pair train.jsonl in the orchestrator's folder).
func TestExportRefusesUnfinishedIterations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	it := its[0].ID
	storetest.SeedPairs(t, pool, it, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
	dir := t.TempDir()
	spec := orchestrator.ExportSpec{Dir: dir, Run: "r", Iteration: "it", IterationID: it, Record: true}

	require.NoError(t, store.SetStage(ctx, pool, it, store.StageGenerating, ""))
	_, err = orchestrator.Export(ctx, pool, spec)
	require.ErrorContains(t, err, "iteration it is still generating: it can be exported once its selection is final")

	require.NoError(t, store.SetStage(ctx, pool, it, store.StageFailed, "generating: 3 of 3 generate tasks failed"))
	_, err = orchestrator.Export(ctx, pool, spec)
	require.ErrorContains(t, err, "iteration it failed (generating: 3 of 3 generate tasks failed)")
	require.ErrorContains(t, err, "--retry-failed")

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing written")
	var recorded int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM exports`).Scan(&recorded))
	require.Zero(t, recorded)
}

// TestReselectionGoesToItsOwnFolder: export --metric/--ratio without --out
// writes to by-METRIC-RATIO inside the iteration's folder, rows in the
// reselection's own rank order, and leaves the orchestrator's export and
// its exports rows as they were (it overwrote them, and the rows kept the
// old sha256 and count).
func TestReselectionGoesToItsOwnFolder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it", PolicyModel: "m",
		Config: []byte(`{"selection": {"metric": "alignment_potential"}}`)}})
	require.NoError(t, err)
	it := its[0].ID
	// m_ex ascending with id, |m_im| mixed: AP and explicit_margin rank
	// these ten pairs differently.
	mex := []float64{0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5}
	mim := []float64{0.1, -2, 0.3, 1.5, -0.2, 2.5, 0.05, -1, 0.4, 3}
	storetest.SeedPairs(t, pool, it, mex, mim)
	_, err = store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageDone, ""))
	dir := t.TempDir()
	own, err := orchestrator.Export(ctx, pool, orchestrator.ExportSpec{Dir: dir, Run: "r", Iteration: "it", IterationID: it, Record: true})
	require.NoError(t, err)
	ownSum := fileSum(t, own.Dataset)

	spec := metric.Spec{Metric: metric.ExplicitMargin, ImplicitWeight: 1, Ratio: 0.5}
	res, err := orchestrator.Export(ctx, pool, orchestrator.ExportSpec{Dir: dir, Run: "r", Iteration: "it", IterationID: it, Reselect: &spec})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "r", "it", "by-explicit_margin-0.5", "train.jsonl"), res.Dataset)
	require.Equal(t, "by-alignment_potential-0.4-w2.5", orchestrator.ReselectFolder(metric.Spec{Metric: metric.AlignmentPotential, ImplicitWeight: 2.5, Ratio: 0.4}))
	require.Equal(t, "by-random-n100-seed7", orchestrator.ReselectFolder(metric.Spec{Metric: metric.Random, Count: 100, Seed: 7}))

	// By explicit margin, the top half of ten is m_ex 5, 4.5, 4, 3.5, 3 —
	// in that order.
	var got []float64
	for _, r := range readExport(t, res.Dataset) {
		got = append(got, r.ExplicitMargin)
	}
	require.Equal(t, []float64{5, 4.5, 4, 3.5, 3}, got)

	// The orchestrator's export is untouched, and its rows describe it.
	require.Equal(t, ownSum, fileSum(t, own.Dataset))
	var sum string
	var rows int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT sha256, rows FROM exports WHERE iteration_id = $1 AND kind = 'jsonl'`, it).Scan(&sum, &rows))
	require.Equal(t, ownSum, sum)
	require.EqualValues(t, 4, rows)
	require.Len(t, readExport(t, own.Dataset), 4)
}
