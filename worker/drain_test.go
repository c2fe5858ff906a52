package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// TestWorkerHoldsOnlyWhatItWorksOn: a worker of two slots on a queue of
// ten slow tasks has exactly two messages delivered to it, never a buffer
// of more. Told to stop (SIGTERM), it finishes those two, starts nothing
// else and exits; the other eight wait in the stream, undelivered, for the
// next worker.
func TestWorkerHoldsOnlyWhatItWorksOn(t *testing.T) {
	t.Parallel()
	e := setup(t, "--response-time", "3s") // a task takes at least 6 s: policy and reward
	ids := e.addTasks(t, "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9", "q10")
	cons, err := bus.RunConsumer(context.Background(), e.js, e.queue)
	require.NoError(t, err)

	// concurrency 2 instead of the schedule's 4
	w := e.workerWith(t, "worker: {concurrency: 2, ack_wait: 5s, max_deliver: 2}")
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 2
	}, 30*time.Second, 20*time.Millisecond)
	for range 5 { // while both tasks run, nothing more is delivered
		info, err := cons.Info(context.Background())
		require.NoError(t, err)
		require.EqualValues(t, 2, info.NumAckPending, "delivered to the worker: only what it works on")
		require.EqualValues(t, 8, info.NumPending)
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, w.Signal(syscall.SIGTERM))
	require.NoError(t, w.Wait(time.Minute), w.Tail(20))

	var done, started int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'done'), count(*) FILTER (WHERE attempts > 0)
		FROM tasks WHERE iteration_id = $1`, e.iterationID).Scan(&done, &started))
	require.Equal(t, 2, done, "the two in flight were finished")
	require.Equal(t, 2, started, "nothing else was started")
	// The worker acked both before it exited (its connection flushes on
	// close); the server applies an ack to the consumer on its own
	// goroutine, so the consumer may show it a moment later, and well
	// within ack_wait (5 s), after which a lost ack would show as two
	// messages pending again.
	var info *jetstream.ConsumerInfo
	require.Eventually(t, func() bool {
		info, err = cons.Info(context.Background())
		return err == nil && info.NumAckPending == 0
	}, 2*time.Second, 10*time.Millisecond, "the stopped worker holds nothing")
	require.EqualValues(t, 8, info.NumPending, "the rest wait, never delivered")
	require.Equal(t, uint64(8), e.streamMessages(t))

	e.worker(t)
	e.waitSettled(t, ids)
	e.requireDone(t, ids)
	for _, id := range ids {
		require.Equal(t, store.TaskDone, e.task(t, id).status)
	}
}

// workerWith starts a worker whose schedule file has this worker line in
// place of the environment's.
func (e *env) workerWith(t *testing.T, workerLine string) *selfplaytest.Proc {
	t.Helper()
	b, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)
	text := strings.Replace(string(b), "worker: {concurrency: 4, ack_wait: 5s, max_deliver: 2}", workerLine, 1)
	require.NotEqual(t, string(b), text)
	path := filepath.Join(t.TempDir(), "selfplay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return selfplaytest.Start(t, "worker", nil, "worker", "-c", path, "--log-level", "info")
}

// TestIdleWorkerKeepsOnePullWaiting: a worker of two free slots with
// nothing queued keeps one pull request waiting on its run's consumer
// (what `selfplay status` and the orchestrator's idle warning read), not
// one per slot, and says it serves the run. A task published then is
// taken at once.
func TestIdleWorkerKeepsOnePullWaiting(t *testing.T) {
	t.Parallel()
	e := setup(t)
	cons, err := bus.RunConsumer(context.Background(), e.js, e.queue)
	require.NoError(t, err)
	w := e.workerWith(t, "worker: {concurrency: 2, ack_wait: 5s, max_deliver: 2}")
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumWaiting == 1
	}, 30*time.Second, 20*time.Millisecond, w.Tail(20))
	for range 5 {
		info, err := cons.Info(context.Background())
		require.NoError(t, err)
		require.LessOrEqual(t, info.NumWaiting, 1, "one pull request at a time")
		time.Sleep(100 * time.Millisecond)
	}
	require.Contains(t, w.Output(), `msg="pulling a run's tasks" consumer=`+e.queue.Consumer())
	ids := e.addTasks(t, "Why is the sea salty?")
	e.waitSettled(t, ids)
	e.requireDone(t, ids)
}
