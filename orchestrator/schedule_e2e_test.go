package orchestrator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestChangedScheduleForAFinishedRunIsRefused: the run finished with
// generation.samples 2; the same run name with samples 3 used to print
// "run done" and exit 0, ignoring the change. It is refused, naming each
// started iteration and what differs, and nothing stored changes.
func TestChangedScheduleForAFinishedRunIsRefused(t *testing.T) {
	t.Parallel()
	l := startLoop(t, loopOptions{prompts: 10, samples: 2, ackWait: "30s", workerCon: 4})
	l.worker(t, "worker-1")
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))

	editFile(t, l.cfgPath, func(s string) string {
		s = strings.Replace(s, "generation: {samples: 2,", "generation: {samples: 3,", 1)
		return strings.Replace(s, "selection: {metric: alignment_potential, ratio: 0.4}", "selection: {metric: explicit_margin, ratio: 0.4}", 1)
	})
	again := l.orchestrator(t, "orchestrator-changed")
	require.Error(t, again.Wait(time.Minute), "a changed schedule for a finished run is refused")
	out := again.Output()
	require.Contains(t, out, `the schedule differs from the settings stored with run "e2e"'s started iterations`)
	require.Contains(t, out, `iter0 (done): generation.samples: stored 2, schedule 3; selection.metric: stored "alignment_potential", schedule "explicit_margin"`)
	require.Contains(t, out, `iter1 (done): generation.samples: stored 2, schedule 3`)
	require.EqualValues(t, 2, l.count(t, `SELECT count(*) FROM iterations WHERE config->'generation'->>'samples' = '2' AND stage = 'done'`))
	require.EqualValues(t, 0, l.count(t, `SELECT count(*) FROM responses WHERE sample_index = 2`), "no third sample anywhere")
	require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM runs WHERE config->'generation'->>'samples' = '2'`), "the run's stored schedule is the one it ran")
}
