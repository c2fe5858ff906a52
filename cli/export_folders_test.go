package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestExportFolders runs `selfplay export` as a user does: a reselection
// without --out goes to its own folder and leaves the orchestrator's export
// and its exports rows alone; a plain re-export keeps the exports rows
// true to the files; an iteration still generating is refused.
func TestExportFolders(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it", PolicyModel: "m",
		Config: []byte(`{"scoring": {"implicit": "simpo", "implicit_weight": 1}, "selection": {"metric": "alignment_potential", "ratio": 0.4, "seed": 42}}`)}})
	require.NoError(t, err)
	it := its[0].ID
	storetest.SeedPairs(t, pool, it, []float64{0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5},
		[]float64{0.1, -2, 0.3, 1.5, -0.2, 2.5, 0.05, -1, 0.4, 3})
	_, err = store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
	require.NoError(t, err)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `run: r
database: {url: %q}
export: {dir: %q}
iterations:
  - {name: it, policy_model: m, prompts: {files: [p.jsonl]}}
`, dbURL, filepath.Join(dir, "exports")), 0o600))
	own := filepath.Join(dir, "exports", "r", "it", "train.jsonl")
	sum := func(path string) string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		s := sha256.Sum256(b)
		return hex.EncodeToString(s[:])
	}
	recorded := func(kind string) (string, string) {
		var path, sha string
		require.NoError(t, pool.QueryRow(ctx, `SELECT path, sha256 FROM exports WHERE iteration_id = $1 AND kind = $2`, it, kind).Scan(&path, &sha))
		return path, sha
	}

	require.NoError(t, store.SetStage(ctx, pool, it, store.StageGenerating, ""))
	_, err = runCLI(t, "export", "-c", cfgPath, "--iteration", "it")
	require.ErrorContains(t, err, "iteration it is still generating")
	_, statErr := os.Stat(own)
	require.ErrorIs(t, statErr, os.ErrNotExist)
	_, err = runCLI(t, "export", "-c", cfgPath, "--iteration", "it", "--metric", "explicit_margin", "--ratio", "0.5", "--save-selection")
	require.ErrorContains(t, err, "iteration it is still generating")
	var selected int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, it).Scan(&selected))
	require.Equal(t, 4, selected, "the stored selection is not rewritten")

	require.NoError(t, store.SetStage(ctx, pool, it, store.StageDone, ""))
	out, err := runCLI(t, "export", "-c", cfgPath, "--iteration", "it")
	require.NoError(t, err, out)
	path, sha := recorded("jsonl")
	require.Equal(t, own, path)
	require.Equal(t, sum(own), sha)
	_, msha := recorded("manifest")
	require.Equal(t, sum(filepath.Join(filepath.Dir(own), "manifest.json")), msha, "the manifest's row follows the rewritten manifest")

	out, err = runCLI(t, "export", "-c", cfgPath, "--iteration", "it", "--metric", "explicit_margin", "--ratio", "0.5")
	require.NoError(t, err, out)
	re := filepath.Join(dir, "exports", "r", "it", "by-explicit_margin-0.5", "train.jsonl")
	require.Contains(t, out, re)
	require.FileExists(t, re)
	path, sha = recorded("jsonl")
	require.Equal(t, own, path)
	require.Equal(t, sum(own), sha, "the orchestrator's export is untouched")
}
