package orchestrator_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// soak makes the fault scenarios long: more prompts, longer outages,
// more kills. `go test ./orchestrator -run Fault -v -soak 10m`.
var soak = flag.Duration("soak", 0, "run the fault scenarios as a soak of about this duration (0: the short CI versions)")

// scale returns the short value in CI and the long one under -soak.
func scale[T any](short, long T) T {
	if *soak > 0 {
		return long
	}
	return short
}

// faultReport checks the invariants every scenario must end with and
// logs the scenario's figures: tasks, retries, failures, duplicates.
func (l *loop) faultReport(t *testing.T, scenario string, prompts int) {
	t.Helper()
	l.checkInvariants(t, prompts)
	tasks := l.count(t, `SELECT count(*) FROM tasks`)
	retries := l.count(t, `SELECT coalesce(sum(greatest(attempts - 1, 0)), 0) FROM tasks`)
	failed := l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`)
	dups := l.count(t, `SELECT
		(SELECT count(*) - count(DISTINCT (iteration_id, prompt_id, sample_index)) FROM responses) +
		(SELECT count(*) - count(DISTINCT (iteration_id, prompt_id)) FROM pairs) +
		(SELECT count(*) - count(DISTINCT messages) FROM prompts) +
		(SELECT count(*) - count(DISTINCT (iteration_id, kind)) FROM exports) +
		(SELECT count(*) - count(DISTINCT (iteration_id, prompt_id, kind)) FROM tasks)`)
	require.Zero(t, dups, "duplicates")
	// Failed tasks are only those with a permanent error: none gave up on
	// a transient one, none was lost.
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'
		AND (error LIKE 'gave up after%' OR error LIKE 'lost %')`))
	losses := l.count(t, `SELECT coalesce(sum(losses), 0) FROM tasks`)
	t.Logf("FAULT REPORT scenario=%q tasks=%d redeliveries=%d client_retries=%d failed=%d duplicates=%d losses=%d",
		scenario, tasks, retries, l.clientRetries(t), failed, dups, losses)
}

// waitDone waits for generate tasks to make progress.
func (l *loop) waitDone(t *testing.T, n int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`) >= n
	}, 2*time.Minute, 20*time.Millisecond)
}

func TestFaultWorkersKilledRepeatedly(t *testing.T) {
	t.Parallel()
	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "2s", workerCon: 2,
		lmArgs: []string{"--latency", "150ms"}})
	workers := []*selfplaytest.Proc{l.worker(t, "worker-0"), l.worker(t, "worker-1")}
	run := l.orchestrator(t, "orchestrator")
	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for !run.Exited() {
		time.Sleep(1200 * time.Millisecond)
		if run.Exited() {
			break
		}
		i := rng.IntN(len(workers))
		require.NoError(t, workers[i].Signal(syscall.SIGKILL))
		workers[i].Kill()
		kills++
		workers[i] = l.worker(t, fmt.Sprintf("worker-%d", kills+1))
	}
	require.NoError(t, run.Wait(time.Second), run.Tail(30))
	require.GreaterOrEqual(t, kills, 5, "the run ended before five worker kills")
	t.Logf("worker kills: %d", kills)
	l.faultReport(t, "worker SIGKILL every 1.2s", prompts)
}

func TestFaultOrchestratorKilledInEachStage(t *testing.T) {
	t.Parallel()
	prompts := scale(40, 200)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "5s", workerCon: 4,
		hook: `[sleep, "1"]`})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	delays := []string{"--debug-stage-delay", "generating=1500ms,scoring=1500ms,selecting=1500ms,evolving=1500ms,exporting=1500ms,training=1500ms"}
	start := func(name string) *selfplaytest.Proc {
		l.waitRunUnlocked(t)
		return selfplaytest.Start(t, name, nil, append([]string{"run", "-c", l.cfgPath}, delays...)...)
	}
	run := start("orchestrator-0")
	for i, stage := range []string{"generating", "scoring", "selecting", "evolving", "exporting", "training"} {
		require.Eventually(t, func() bool {
			var st string
			err := l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations WHERE ordinal = 0`).Scan(&st)
			return err == nil && st == stage
		}, 2*time.Minute, 10*time.Millisecond, "iteration 0 never reached %s", stage)
		require.NoError(t, run.Signal(syscall.SIGKILL))
		run.Kill()
		run = start(fmt.Sprintf("orchestrator-%d", i+1))
	}
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.faultReport(t, "orchestrator SIGKILL in each stage", prompts)
}

func TestFaultPostgresRestarted(t *testing.T) {
	t.Parallel()
	// A private server: restarting the shared one would disturb every
	// other test running at the same time.
	srv := storetest.StartServer(t)
	pool, err := pgxpool.New(context.Background(), srv.URL)
	require.NoError(t, err)
	_, err = store.Migrate(context.Background(), pool)
	require.NoError(t, err)
	pool.Close()

	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "5s", workerCon: 3, db: srv.URL,
		lmArgs: []string{"--latency", "100ms"}})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	l.waitDone(t, 10)
	srv.Restart(scale(2*time.Second, 10*time.Second))
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	require.Contains(t, run.Output(), "service unavailable; will retry")
	l.faultReport(t, "PostgreSQL restarted mid-generating", prompts)
}

func TestFaultNATSRestarted(t *testing.T) {
	t.Parallel()
	srv := bustest.StartServer(t)
	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "5s", workerCon: 3, nats: srv.URL,
		lmArgs: []string{"--latency", "100ms"}})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	l.waitDone(t, 10)
	srv.Restart(scale(time.Second, 10*time.Second))
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.faultReport(t, "NATS restarted mid-generating", prompts)
}

func TestFaultEndpointMisbehaves(t *testing.T) {
	t.Parallel()
	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "30s", workerCon: 8, timeout: "2s",
		lmArgs: []string{"--error-rate", "0.2", "--rate-limit-rate", "0.1", "--retry-after", "1s",
			"--hang-rate", "0.05", "--malformed-rate", "0.02", "--fault-seed", "7"}})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(5*time.Minute), run.Tail(30))
	l.faultReport(t, "endpoint: 20% 500, 10% 429, 5% hangs, 2% malformed", prompts)
}

func TestFaultEndpointDown30s(t *testing.T) {
	t.Parallel()
	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "30s", workerCon: 4, timeout: "2s",
		lmArgs: []string{"--latency", "50ms"}})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	l.waitDone(t, 10)
	require.NoError(t, l.lm.Signal(syscall.SIGKILL))
	l.lm.Kill()
	down := time.Now()
	time.Sleep(30 * time.Second)
	l.startLM(t)
	t.Logf("policy and reward endpoint down for %s", time.Since(down).Round(time.Second))
	require.NoError(t, run.Wait(5*time.Minute), run.Tail(30))
	l.faultReport(t, "endpoint down 30s", prompts)
}
