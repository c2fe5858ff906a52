package orchestrator_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// TestTwoRunsInOneDatabaseKeepTheirSettings (issue 22): run A (ack_wait
// 30s) has tasks in flight, each taking two seconds (policy and reward
// answer after 1 s), when run B of the same database starts with ack_wait
// 1s and max_deliver 2. Each run has its own consumer with its own
// settings, the same workers serve both, and their heartbeats follow each
// message's own consumer: no task of either run is delivered twice, lost
// or failed, and both runs finish. When a run is done its consumer and
// messages are gone from the stream. (With one consumer per database, B's
// orchestrator rewrote A's consumer to 1s and A's healthy tasks were
// redelivered until failed as lost; later, B was refused at start.)
func TestTwoRunsInOneDatabaseKeepTheirSettings(t *testing.T) {
	t.Parallel()
	const prompts = 10
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "30s", maxDeliver: 5, workerCon: 4, single: true,
		lmArgs: []string{"--response-time", "1s"}})
	raw, err := os.ReadFile(l.cfgPath)
	require.NoError(t, err)
	b := strings.Replace(string(raw), "run: e2e", "run: e2e-b", 1)
	b = strings.Replace(b, "ack_wait: 30s, max_deliver: 5", "ack_wait: 1s, max_deliver: 2", 1)
	require.NotEqual(t, string(raw), b)
	bPath := filepath.Join(l.dir, "b.yaml")
	require.NoError(t, os.WriteFile(bPath, []byte(b), 0o600))

	w1, w2 := l.worker(t, "worker-1"), l.worker(t, "worker-2")
	runA := l.orchestrator(t, "orchestrator-a")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE attempts > 0`) >= 4
	}, time.Minute, 20*time.Millisecond, "run A never had tasks in flight")
	runB := selfplaytest.Start(t, "orchestrator-b", nil, "run", "-c", bPath)

	require.NoError(t, runA.Wait(3*time.Minute), runA.Tail(30))
	require.NoError(t, runB.Wait(3*time.Minute), runB.Tail(30))
	require.EqualValues(t, 2, l.count(t, `SELECT count(*) FROM runs`))
	require.EqualValues(t, 2, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'done'`))
	require.EqualValues(t, 2*prompts, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE attempts <> 1 OR losses <> 0`),
		"every task of both runs was delivered once: no healthy task redelivered under the other run's ack_wait")

	// Both runs are done: nothing of them is left in the stream.
	js := l.jetStream(t)
	dep, err := store.DeploymentToken(context.Background(), l.pool)
	require.NoError(t, err)
	queues := bus.NewQueues(js, l.stream, dep)
	_, err = queues.Refresh(context.Background())
	require.NoError(t, err)
	require.Empty(t, queues.List(), "a finished run's consumer is removed")
	require.Zero(t, l.deploymentMessages(t, js))
	for _, w := range []*selfplaytest.Proc{w1, w2} {
		require.NotContains(t, w.Output(), "panic")
	}
}
