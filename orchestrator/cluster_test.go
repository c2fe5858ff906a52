package orchestrator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
)

// TestClusterNodeKilledMidStage runs the loop on a three-node JetStream
// cluster with nats.replicas 3 and SIGKILLs the node that leads the
// stream while tasks are being done: the run finishes, no task is lost,
// failed or done twice.
func TestClusterNodeKilledMidStage(t *testing.T) {
	t.Parallel()
	c, l, run, prompts := clusterLoop(t)

	js := l.jetStream(t)
	s, err := js.Stream(context.Background(), l.stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, info.Config.Replicas, "nats.replicas reached the stream")
	require.NotNil(t, info.Cluster)
	require.Len(t, info.Cluster.Replicas, 2, "a leader and two replicas")
	leader := info.Cluster.Leader
	victim := -1
	for i := range c.Servers {
		if strings.HasSuffix(leader, fmt.Sprintf("-n%d", i)) {
			victim = i
		}
	}
	require.GreaterOrEqual(t, victim, 0, "leader %q is one of the test's servers", leader)
	c.Servers[victim].Kill()
	t.Logf("killed %s (the stream's leader) with %d tasks done", leader, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))

	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.faultReport(t, "JetStream cluster node (stream leader) SIGKILLed mid-generating", prompts)
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`))
}

// TestClusterQuorumLostMidStage SIGKILLs two of a three-node cluster's
// nodes for 20 s while tasks are being done (issue 22): JetStream answers
// the survivor's API requests with 503 "JetStream system temporarily
// unavailable" (err_code 10008) or no answer at all until the nodes are
// back. That is an outage, ridden out within orchestrator.outage_timeout:
// the run finishes with nothing failed, lost or done twice, and the
// orchestrator said why it waited.
func TestClusterQuorumLostMidStage(t *testing.T) {
	t.Parallel()
	c, l, run, prompts := clusterLoop(t)

	c.Servers[1].Kill()
	c.Servers[2].Kill()
	t.Logf("killed two of three nodes with %d tasks done", l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
	time.Sleep(20 * time.Second) // the outage itself, not a wait for a condition
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'failed'`), run.Tail(30))
	c.Servers[1].Start()
	c.Servers[2].Start()

	require.NoError(t, run.Wait(4*time.Minute), run.Tail(30))
	l.faultReport(t, "JetStream cluster: two of three nodes SIGKILLed for 20 s mid-generating", prompts)
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE stage <> 'done'`))
	require.Contains(t, run.Output(), "service unavailable; will retry", "the orchestrator logged the outage it rode out")
}

// clusterLoop runs the loop with two workers on a three-node JetStream
// cluster with nats.replicas 3 and returns once ten tasks are done.
func clusterLoop(t *testing.T) (*bustest.Cluster, *loop, *selfplaytest.Proc, int) {
	t.Helper()
	c := bustest.StartCluster(t, 3)
	prompts := scale(60, 400)
	l := startLoop(t, loopOptions{prompts: prompts, samples: 4, ackWait: "5s", workerCon: 3, nats: c.URL(), replicas: 3,
		lmArgs: []string{"--latency", "100ms"}})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	l.waitDone(t, 10)
	return c, l, run, prompts
}
