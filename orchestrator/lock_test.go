package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
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
// hook runs. The run lock went with the database session; pg_locks shows
// nobody holds it, so the orchestrator takes it again on a new session
// and the run goes on: the hook is not killed (it runs once, to its end),
// nothing is recorded as failed, and the run finishes.
func TestDatabaseRestartDuringTraining(t *testing.T) {
	t.Parallel()
	l, run, marks, srv := trainingLoop(t, "3")
	stage := func() string {
		var st string
		if err := l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations WHERE ordinal = 0`).Scan(&st); err != nil {
			return ""
		}
		return st
	}
	srv.Restart(time.Second)
	require.Eventually(t, func() bool { return stage() != "" }, time.Minute, 50*time.Millisecond)
	require.Equal(t, store.StageTraining, stage(), "the lost session left the iteration as it was")

	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	require.Contains(t, run.Output(), "run lock taken again on a new database session")
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE stage <> 'done'`))
	b, err := os.ReadFile(marks)
	require.NoError(t, err)
	require.Equal(t, []string{"start", "end", "start", "end"}, strings.Fields(string(b)),
		"each iteration's hook ran once, to its end: the restart killed none")
}

// lockHolder is the backend pid holding run's advisory lock, 0 for none.
func lockHolder(t *testing.T, pool *pgxpool.Pool, run string) int {
	t.Helper()
	var pid int
	require.NoError(t, pool.QueryRow(context.Background(), `
		SELECT coalesce(min(pid), 0) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = 7321
		  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND objid::bigint = (hashtext($1)::bigint & 4294967295)`, run).Scan(&pid))
	return pid
}

// trainingLoop starts a run on a private PostgreSQL (its backends are
// processes of this machine the test may signal) whose train hook marks
// its start and end around a sleep (the first hook only), and waits until
// iteration 0 trains.
func trainingLoop(t *testing.T, sleep string) (*loop, *selfplaytest.Proc, string, *storetest.Server) {
	t.Helper()
	srv := storetest.StartServer(t)
	pool, err := pgxpool.New(context.Background(), srv.URL)
	require.NoError(t, err)
	_, err = store.Migrate(context.Background(), pool)
	require.NoError(t, err)
	pool.Close()
	marks := filepath.Join(t.TempDir(), "hook")
	l := startLoop(t, loopOptions{prompts: 12, samples: 2, ackWait: "5s", workerCon: 4, db: srv.URL,
		hook: `[/bin/sh, -c, 'echo start >> ` + marks + `; grep -q end ` + marks + ` || sleep ` + sleep + `; echo end >> ` + marks + `']`})
	l.worker(t, "worker")
	run := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(marks)
		return strings.Contains(string(b), "start")
	}, 2*time.Minute, 20*time.Millisecond, "iteration 0 never started training")
	return l, run, marks, srv
}

// TestStalledLockSessionIsNotACompetitor (issue 22): the backend holding
// the run's lock is SIGSTOPped for 25 s while the train hook runs. Its
// session stops answering but still holds the lock; pg_locks names that
// backend, the orchestrator's own, so it is ended (pg_terminate_backend)
// and the lock taken again once it is gone. The hook is never killed, and
// the orchestrator never says another one holds the run.
func TestStalledLockSessionIsNotACompetitor(t *testing.T) {
	t.Parallel()
	l, run, marks, _ := trainingLoop(t, "35")
	pid := lockHolder(t, l.pool, "e2e")
	require.NotZero(t, pid)
	require.NoError(t, syscall.Kill(pid, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	time.Sleep(25 * time.Second) // the stall itself, not a wait for a condition
	require.Equal(t, pid, lockHolder(t, l.pool, "e2e"), "the stopped backend still holds the lock")
	require.Contains(t, run.Output(), "held by this orchestrator's own stalled session", run.Tail(20))
	require.NoError(t, syscall.Kill(pid, syscall.SIGCONT))

	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	require.Contains(t, run.Output(), "run lock taken again on a new database session")
	require.NotContains(t, run.Output(), "another orchestrator")
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE stage <> 'done'`))
	b, err := os.ReadFile(marks)
	require.NoError(t, err)
	require.Equal(t, []string{"start", "end", "start", "end"}, strings.Fields(string(b)), "no hook was killed")
}

// TestCompetitorTakingTheLockStopsTheRun: the run's lock session ends and
// another session takes the lock at once (another orchestrator). That one
// really holds the run: the orchestrator stops its work, the train hook
// included, records nothing for the iteration and exits saying so.
func TestCompetitorTakingTheLockStopsTheRun(t *testing.T) {
	t.Parallel()
	l, run, marks, _ := trainingLoop(t, "30")
	pid := lockHolder(t, l.pool, "e2e")
	require.NotZero(t, pid)
	other, err := l.pool.Acquire(context.Background())
	require.NoError(t, err)
	defer other.Release()
	_, err = other.Exec(context.Background(), `SELECT pg_terminate_backend($1)`, pid)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var ok bool
		require.NoError(t, other.QueryRow(context.Background(), `SELECT pg_try_advisory_lock(7321, hashtext('e2e'))`).Scan(&ok))
		return ok
	}, 10*time.Second, 5*time.Millisecond, "the competitor takes the freed lock")

	err = run.Wait(time.Minute)
	require.Error(t, err, "the orchestrator stops")
	require.Contains(t, run.Output(), "another orchestrator runs \"e2e\"", run.Tail(20))
	var stage string
	require.NoError(t, l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations WHERE ordinal = 0`).Scan(&stage))
	require.Equal(t, store.StageTraining, stage, "nothing recorded for the iteration the competitor holds")
	b, err := os.ReadFile(marks)
	require.NoError(t, err)
	require.Equal(t, []string{"start"}, strings.Fields(string(b)), "the hook was stopped with the run")
}
