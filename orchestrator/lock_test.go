package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestHookPrintingOutageWordsRunsOnce: a train hook that prints "conn
// closed" and exits 1 failed by itself; no outage is read from its words,
// so it runs once and the error blames the hook.
func TestHookPrintingOutageWordsRunsOnce(t *testing.T) {
	t.Parallel()
	counter := filepath.Join(t.TempDir(), "runs")
	l := startLoop(t, loopOptions{prompts: 12, samples: 2, ackWait: "5s", workerCon: 4,
		hook: `[/bin/sh, -c, 'echo run >> ` + counter + `; echo "FATAL: conn closed"; echo "connection refused"; exit 1']`})
	l.worker(t, "worker")
	run := l.orchestrator(t, "orchestrator")
	err := run.Wait(2 * time.Minute)
	require.Error(t, err, "the run fails with its hook")
	b, rerr := os.ReadFile(counter)
	require.NoError(t, rerr)
	require.Equal(t, 1, strings.Count(string(b), "run"), "the hook ran once")
	out := run.Output()
	require.Contains(t, out, "train hook")
	require.NotContains(t, out, "service unavailable; will retry")
	var stage, reason string
	require.NoError(t, l.pool.QueryRow(context.Background(), `SELECT stage, coalesce(error, '') FROM iterations WHERE ordinal = 0`).Scan(&stage, &reason))
	require.Equal(t, store.StageFailed, stage)
	require.Contains(t, reason, "train hook")
}

// TestDatabaseRestartDuringTraining: PostgreSQL restarts while the train
// hook runs. The run lock went with the database session: the
// orchestrator stops its work without recording anything for the
// iteration (it stays in training, never failed), takes the lock again,
// and the run finishes.
func TestDatabaseRestartDuringTraining(t *testing.T) {
	t.Parallel()
	srv := storetest.StartServer(t)
	pool, err := pgxpool.New(context.Background(), srv.URL)
	require.NoError(t, err)
	_, err = store.Migrate(context.Background(), pool)
	require.NoError(t, err)
	pool.Close()

	marks := filepath.Join(t.TempDir(), "hook")
	l := startLoop(t, loopOptions{prompts: 12, samples: 2, ackWait: "5s", workerCon: 4, db: srv.URL,
		hook: `[/bin/sh, -c, 'echo start >> ` + marks + `; sleep 3; echo end >> ` + marks + `']`})
	l.worker(t, "worker")
	run := l.orchestrator(t, "orchestrator")
	stage := func() string {
		var st string
		if err := l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations WHERE ordinal = 0`).Scan(&st); err != nil {
			return ""
		}
		return st
	}
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(marks)
		return stage() == store.StageTraining && strings.Contains(string(b), "start")
	}, 2*time.Minute, 20*time.Millisecond, "iteration 0 never started training")
	srv.Restart(time.Second)
	require.Eventually(t, func() bool { return stage() != "" }, time.Minute, 50*time.Millisecond)
	require.Equal(t, store.StageTraining, stage(), "the lost lock left the iteration as it was")

	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	require.Contains(t, run.Output(), "its lock was lost")
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE stage <> 'done'`))
	b, err := os.ReadFile(marks)
	require.NoError(t, err)
	t.Logf("hook marks: %q", strings.Fields(string(b)))
}
