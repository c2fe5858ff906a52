package orchestrator_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
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

// TestRunningWorkerTakesTheRetriedSchedule (issue 22): the policy model is
// mistyped, and the orchestrator cannot list the policy's models (as while
// vLLM is still loading), so the workers find out: every task fails and so
// does the iteration. The user fixes the file and runs --retry-failed; the
// stored schedule changes, and the same worker — never restarted — samples
// the fixed model: the iteration finishes.
func TestRunningWorkerTakesTheRetriedSchedule(t *testing.T) {
	t.Parallel()
	const prompts = 6
	l := startLoop(t, loopOptions{prompts: prompts, samples: 2, ackWait: "30s", workerCon: 2, single: true})
	editFile(t, l.cfgPath, func(s string) string { return strings.Replace(s, "policy_model: tiny-0", "policy_model: tiny-O", 1) })
	// The orchestrator's own endpoints section points at nothing: the
	// model check is left to the workers.
	b, err := os.ReadFile(l.cfgPath)
	require.NoError(t, err)
	orchCfg := filepath.Join(l.dir, "orchestrator.yaml")
	dead := "http://" + selfplaytest.FreeAddr(t) + "/v1"
	cfg := regexp.MustCompile(`policy: \{base_url: "[^"]*"`).ReplaceAllString(string(b), `policy: {base_url: "`+dead+`"`)
	require.NotEqual(t, string(b), cfg)
	require.NoError(t, os.WriteFile(orchCfg, []byte(cfg), 0o600))

	worker := l.worker(t, "worker")
	first := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", orchCfg)
	require.Error(t, first.Wait(2*time.Minute), "the mistyped model fails the iteration")
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed' AND error LIKE '%tiny-O%'`), first.Tail(20))

	for _, path := range []string{l.cfgPath, orchCfg} {
		editFile(t, path, func(s string) string { return strings.Replace(s, "policy_model: tiny-O", "policy_model: tiny-0", 1) })
	}
	again := selfplaytest.Start(t, "orchestrator-retry", nil, "run", "-c", orchCfg, "--retry-failed")
	require.NoError(t, again.Wait(2*time.Minute), again.Tail(30), worker.Tail(20))
	require.Contains(t, again.Output(), "retrying it with the changed schedule")
	require.False(t, worker.Exited(), "the same worker did the retried tasks")
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'done'`))
	require.EqualValues(t, prompts*2, l.count(t, `SELECT count(*) FROM responses`))
	require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'done' AND policy_model = 'tiny-0'`))
}
