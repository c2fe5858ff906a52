package orchestrator_test

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
)

// TestEndpointReplicaKilledMidStage: the policy and reward endpoints list
// two tinylm processes as replicas (base_urls); one is SIGKILLed while
// iteration 0 generates. Its requests in flight fail, are retried on the
// other replica, and the two-iteration run finishes on that one alone with
// no task failed, every invariant of a finished run holding.
func TestEndpointReplicaKilledMidStage(t *testing.T) {
	t.Parallel()
	l := startLoop(t, loopOptions{prompts: 60, samples: 4, ackWait: "30s", workerCon: 6,
		lmArgs: []string{"--latency", "50ms"}})

	// A second tinylm process serving the same models.
	second := selfplaytest.FreeAddr(t)
	lm2 := selfplaytest.StartLM(t, "lm-2", second, nil, append([]string{"--model", "tiny-0=builtin"}, l.lmArgs...)...)

	cfg, err := os.ReadFile(l.cfgPath)
	require.NoError(t, err)
	text := string(cfg)
	for _, suffix := range []string{"/v1", ""} {
		old := fmt.Sprintf(`base_url: "http://%s%s"`, l.lmAddr, suffix)
		require.Equal(t, 1, strings.Count(text, old), "schedule has %s", old)
		text = strings.Replace(text, old, fmt.Sprintf(`base_urls: ["http://%s%s", "http://%s%s"]`, l.lmAddr, suffix, second, suffix), 1)
	}
	require.NoError(t, os.WriteFile(l.cfgPath, []byte(text), 0o600))

	l.worker(t, "worker-1")
	run := l.orchestrator(t, "orchestrator")
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`) >= 10
	}, time.Minute, 20*time.Millisecond)
	require.NoError(t, l.lm.Signal(syscall.SIGKILL))
	l.lm.Kill()
	require.Less(t, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`), int64(60), "killed mid-stage")

	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.checkInvariants(t, 60)
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`), "no task failed for the lost replica")
	require.False(t, lm2.Exited(), "the second replica served to the end")
}
