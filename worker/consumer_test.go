package worker_test

import (
	"context"
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
	_, err := bus.EnsureStream(context.Background(), e.js, bus.StreamOptions{Name: e.stream, Deployment: e.deployment,
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
