package orchestrator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

func readExport(t *testing.T, path string) []orchestrator.Row {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var rows []orchestrator.Row
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r orchestrator.Row
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		rows = append(rows, r)
	}
	require.NoError(t, sc.Err())
	return rows
}

func TestExportStoredAndReselected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it", PolicyModel: "m",
		Config: []byte(`{"selection": {"metric": "alignment_potential"}}`)}})
	require.NoError(t, err)
	it := its[0].ID
	// Ten pairs; margins chosen so AP and random order them differently.
	mex := []float64{0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5}
	mim := []float64{0.1, -2, 0.3, 1.5, -0.2, 2.5, 0.05, -1, 0.4, 3}
	storetest.SeedPairs(t, pool, it, mex, mim)
	_, err = store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, it, store.StageDone, ""))

	dir := t.TempDir()
	res, err := orchestrator.Export(ctx, pool, orchestrator.ExportSpec{Dir: dir, Run: "r", Iteration: "it", IterationID: it, Record: true})
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "r", "it", "train.jsonl"), res.Dataset)
	rows := readExport(t, res.Dataset)
	require.Len(t, rows, 4) // floor(0.4 · 10)
	var stored []int64
	r2, err := pool.Query(ctx, `SELECT prompt_id FROM pairs WHERE iteration_id = $1 AND selected ORDER BY rank`, it)
	require.NoError(t, err)
	for r2.Next() {
		var id int64
		require.NoError(t, r2.Scan(&id))
		stored = append(stored, id)
	}
	require.Len(t, stored, 4)
	for i, r := range rows {
		require.Equal(t, stored[i], r.PromptID, "rows in rank order")
		require.InDelta(t, r.ScoreChosen-r.ScoreRejected, r.ExplicitMargin, 1e-12)
	}
	var manifest orchestrator.Manifest
	b, err := os.ReadFile(res.Manifest)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &manifest))
	require.EqualValues(t, 4, manifest.Files["train.jsonl"].Rows)
	require.EqualValues(t, 10, manifest.Counts.Pairs)
	require.EqualValues(t, 4, manifest.Metric.Selected.N)
	var recorded int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM exports WHERE iteration_id = $1`, it).Scan(&recorded))
	require.Equal(t, 2, recorded)
	entries, err := os.ReadDir(filepath.Dir(res.Dataset))
	require.NoError(t, err)
	require.Len(t, entries, 2, "no temporary files left behind")

	// Reselect by random, count 3, to another folder: the file follows the
	// Go selection; the stored selection is untouched.
	spec := metric.Spec{Metric: metric.Random, ImplicitWeight: 1, Count: 3, Seed: 5}
	out := filepath.Join(dir, "again")
	res2, err := orchestrator.Export(ctx, pool, orchestrator.ExportSpec{Run: "r", Iteration: "it", IterationID: it, OutDir: out, Reselect: &spec})
	require.NoError(t, err)
	var items []metric.Item
	r3, err := pool.Query(ctx, `SELECT id, explicit_margin, implicit_margin, prompt_id FROM pairs WHERE iteration_id = $1 ORDER BY id`, it)
	require.NoError(t, err)
	promptOf := map[int64]int64{}
	for r3.Next() {
		var item metric.Item
		var pid int64
		require.NoError(t, r3.Scan(&item.ID, &item.ExplicitMargin, &item.ImplicitMargin, &pid))
		items = append(items, item)
		promptOf[item.ID] = pid
	}
	scored, err := metric.Score(items, spec)
	require.NoError(t, err)
	require.NoError(t, metric.Select(scored, spec))
	want := map[int64]bool{}
	for _, s := range scored {
		if s.Selected {
			want[promptOf[s.ID]] = true
		}
	}
	got := map[int64]bool{}
	for _, r := range readExport(t, res2.Dataset) {
		got[r.PromptID] = true
	}
	require.Equal(t, want, got)
	var storedAfter int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, it).Scan(&storedAfter))
	require.Equal(t, 4, storedAfter)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM exports WHERE iteration_id = $1`, it).Scan(&recorded))
	require.Equal(t, 2, recorded, "a re-export records nothing")
}
