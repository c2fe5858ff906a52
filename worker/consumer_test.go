package worker_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/store"
)

// TestTheConsumersSettingsDecide: the orchestrator wrote the deployment's
// consumer with max_deliver 3 and ack_wait 4s while this worker's own
// configuration says 2 and 5s. The worker says so at start, and the
// consumer's max_deliver read from the broker decides the last delivery:
// a task that always meets a server error fails after three deliveries,
// not two.
func TestTheConsumersSettingsDecide(t *testing.T) {
	t.Parallel()
	e := setup(t, "--error-rate", "1")
	_, err := bus.EnsureConsumer(context.Background(), e.js, bus.StreamOptions{Name: e.stream, Deployment: e.deployment, Run: e.queue.Run,
		AckWait: 4 * time.Second, MaxDeliver: 3})
	require.NoError(t, err)
	w := e.worker(t)
	ids := e.addTasks(t, "Why is the sky blue?")
	require.Eventually(t, func() bool {
		return strings.Contains(w.Output(), "worker.max_deliver in this worker's configuration differs from the consumer's")
	}, 30*time.Second, 50*time.Millisecond, w.Tail(20))
	require.Contains(t, w.Output(), "worker.ack_wait in this worker's configuration differs from the consumer's")
	e.waitSettled(t, ids)
	tk := e.task(t, ids[0])
	require.Equal(t, store.TaskFailed, tk.status)
	require.Contains(t, tk.error, "gave up after 3 deliveries", "the consumer's max_deliver, not the worker's 2")
	var attempts int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT attempts FROM tasks WHERE prompt_id = $1`, ids[0]).Scan(&attempts))
	require.Equal(t, 3, attempts)
	require.Zero(t, e.streamMessages(t), "the failure was recorded, so the message was terminated")
}

// TestHeartbeatFollowsTheConsumersAckWait (issue 22): the worker works on
// a task under the run's consumer with ack_wait 9s when the orchestrator
// shortens it to 2s; the server checks the delivered message against the
// new value when its timer, set for 9 s, fires. The task takes sixteen
// seconds (policy and reward answer after 8 s each) and is still delivered
// once: the worker beats at least every second and follows the consumer's
// ack_wait as it is now. (Beating every third of the ack_wait it read at
// start, every 3 s, the task was delivered a second time.)
func TestHeartbeatFollowsTheConsumersAckWait(t *testing.T) {
	t.Parallel()
	e := setup(t, "--response-time", "8s")
	raw, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(e.cfgPath, bytes.ReplaceAll(raw, []byte("timeout: 5s"), []byte("timeout: 30s")), 0o600))
	opts := bus.StreamOptions{Name: e.stream, Deployment: e.deployment, Run: e.queue.Run, AckWait: 9 * time.Second, MaxDeliver: 2}
	cons, err := bus.EnsureConsumer(context.Background(), e.js, opts)
	require.NoError(t, err)
	w := e.worker(t)
	ids := e.addTasks(t, "Why do leaves change colour?")
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 1
	}, 30*time.Second, 20*time.Millisecond, w.Tail(20))

	opts.AckWait = 2 * time.Second
	_, err = bus.EnsureConsumer(context.Background(), e.js, opts)
	require.NoError(t, err)
	e.waitSettled(t, ids)
	e.requireDone(t, ids)
	info, err := cons.Info(context.Background())
	require.NoError(t, err)
	require.EqualValues(t, 1, info.Delivered.Consumer, "delivered once: the heartbeat kept up with the shortened ack_wait")
}
