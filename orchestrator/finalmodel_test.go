package orchestrator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestFinalModelNeverServedSaysWhy: the train hook runs after the last
// iteration, but the server never lists hooks.final_model. The run fails
// saying the server answered without that model, not "(last error:
// <nil>)".
func TestFinalModelNeverServedSaysWhy(t *testing.T) {
	t.Parallel()
	l := startLoop(t, loopOptions{prompts: 6, samples: 2, ackWait: "30s", workerCon: 4,
		hook: "[/bin/true]\n  final_model: tiny-never"})
	editFile(t, l.cfgPath, func(s string) string { return strings.Replace(s, "wait_for_model: 30s", "wait_for_model: 1s", 1) })
	l.worker(t, "worker")
	run := l.orchestrator(t, "orchestrator")
	require.Error(t, run.Wait(3*time.Minute), run.Tail(20))
	out := run.Output()
	require.Contains(t, out, `model \"tiny-never\" was not served at http://`)
	require.Contains(t, out, `the server answered, but its model list does not name \"tiny-never\"`)
	require.NotContains(t, out, "<nil>")
}
