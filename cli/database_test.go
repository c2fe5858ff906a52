package cli

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

func TestLogFlagsRefuseUnknownValues(t *testing.T) {
	_, err := runCLI(t, "worker", "--log-level", "verbose")
	require.EqualError(t, err, `invalid argument "verbose" for "--log-level" flag: expected one of debug, info, warn, error`)
	_, err = runCLI(t, "run", "--log-format", "xml")
	require.EqualError(t, err, `invalid argument "xml" for "--log-format" flag: expected one of text, json`)
	_, err = runCLI(t, "lm", "serve", "--log-level", "Warning")
	require.ErrorContains(t, err, "expected one of debug, info, warn, error")
}

// migrate needs only the database: SELFPLAY_DATABASE_URL with no schedule
// file at all, or a schedule that holds database.url and nothing else.
func TestMigrateNeedsOnlyTheDatabase(t *testing.T) {
	t.Chdir(t.TempDir()) // no selfplay.yaml here
	t.Setenv("SELFPLAY_CONFIG", "")
	t.Setenv("SELFPLAY_DATABASE_URL", storetest.NewEmptyDatabase(t))
	out, err := runCLI(t, "migrate")
	require.NoError(t, err)
	require.Contains(t, out, "applied")

	onlyDB := filepath.Join(t.TempDir(), "db.yaml")
	require.NoError(t, os.WriteFile(onlyDB, []byte("database: {url: \""+storetest.NewEmptyDatabase(t)+"\"}\n"), 0o600))
	t.Setenv("SELFPLAY_DATABASE_URL", "")
	os.Unsetenv("SELFPLAY_DATABASE_URL")
	out, err = runCLI(t, "migrate", "-c", onlyDB)
	require.NoError(t, err)
	require.Contains(t, out, "applied")

	// A schedule the user names must exist, and its keys are still checked.
	_, err = runCLI(t, "migrate", "-c", filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml: no such file")
	typo := filepath.Join(t.TempDir(), "typo.yaml")
	require.NoError(t, os.WriteFile(typo, []byte("databse: {url: postgres://x@y/z}\n"), 0o600))
	_, err = runCLI(t, "migrate", "-c", typo)
	require.ErrorContains(t, err, `databse: unknown key (did you mean "database"?)`)
}

// status, export and report work from SELFPLAY_DATABASE_URL alone, take
// the export folder from the run's stored schedule, and name the runs
// there are when --run names none of them.
func TestStatusExportReportFromTheDatabase(t *testing.T) {
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()

	exports := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("run: stored\nexport: {dir: "+exports+"}\niterations: [{name: iter0, policy_model: m, prompts: {files: [p.jsonl]}}]\n"), 0o600))
	cfg, err := config.Load(cfgFile)
	require.NoError(t, err)
	snap, err := cfg.Snapshot()
	require.NoError(t, err)
	r, err := store.EnsureRun(ctx, pool, "stored", snap)
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, r.ID, []store.IterationSpec{{Ordinal: 0, Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	storetest.SeedPairs(t, pool, its[0].ID, []float64{0.5, 1, 2}, []float64{0.1, 0.2, 0.3})
	_, err = store.ScorePairs(ctx, pool, its[0].ID, store.ScoreSpec{Metric: "explicit_margin", Ratio: 0.5, Implicit: "simpo", ImplicitWeight: 1}, store.TrainSelection)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, its[0].ID, store.StageDone, ""))

	t.Chdir(t.TempDir())
	t.Setenv("SELFPLAY_CONFIG", "")
	t.Setenv("SELFPLAY_DATABASE_URL", dbURL)

	out, err := runCLI(t, "status")
	require.NoError(t, err)
	require.Contains(t, out, "stored")
	_, err = runCLI(t, "status", "--run", "nosuchrun")
	require.EqualError(t, err, `run "nosuchrun" does not exist in this database: its runs are stored`)

	_, err = runCLI(t, "export", "--run", "nosuchrun", "--iteration", "iter0")
	require.EqualError(t, err, `run "nosuchrun" does not exist in this database: its runs are stored`)
	out, err = runCLI(t, "export", "--iteration", "iter0")
	require.NoError(t, err, "the database's only run")
	require.Contains(t, out, "wrote 1 pairs to "+filepath.Join(exports, "stored", "iter0", "train.jsonl"))
	require.FileExists(t, filepath.Join(exports, "stored", "iter0", "manifest.json"))

	dir := t.TempDir()
	out, err = runCLI(t, "report", "--iteration", "iter0", "--out", dir)
	require.NoError(t, err)
	require.Contains(t, out, filepath.Join(dir, "report.html"))
	require.FileExists(t, filepath.Join(dir, "report.html"))
	fresh := filepath.Join(t.TempDir(), "new") + string(os.PathSeparator)
	_, err = runCLI(t, "report", "--iteration", "iter0", "--out", fresh)
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(fresh, "report.html"))

	// With a second run, which one is no longer a guess.
	_, err = store.EnsureRun(ctx, pool, "another", snap)
	require.NoError(t, err)
	_, err = runCLI(t, "report", "--iteration", "iter0")
	require.EqualError(t, err, "--run is required without a schedule: its runs are another, stored")
}
