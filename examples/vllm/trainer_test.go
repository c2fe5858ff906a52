// Package vllm_test runs the production trainer (train_dpo.py, with TRL,
// transformers, peft, datasets and torch on the CPU) on an export of a real
// selfplay loop; the Python tests beside it (tests/) say what is checked.
package vllm_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// pythonStack returns the Python interpreter of the environment
// scripts/install-python-stack installs, failing the test when it is not
// installed.
func pythonStack(t *testing.T) string {
	t.Helper()
	return installedPython(t, "install-python-stack", "the trainer's Python stack (torch, transformers, TRL, PEFT, datasets)")
}

// loopExport runs one iteration of the real loop — tinylm as policy,
// reward model and DPO reference, a worker and the orchestrator — with
// JSONL and Parquet export, and returns the iteration's export folder.
func loopExport(t *testing.T) string {
	t.Helper()
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	lm := selfplaytest.FreeAddr(t)
	selfplaytest.StartLM(t, "lm", lm, nil, "--model", "tiny-0=builtin")

	// Twelve prompts of the example pool, so the selection (ratio 0.5)
	// keeps a handful of pairs.
	pool, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "examples", "prompts.jsonl"))
	require.NoError(t, err)
	lines := strings.SplitAfter(string(pool), "\n")
	require.Greater(t, len(lines), 12)
	prompts := filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(strings.Join(lines[:12], "")), 0o600))

	cfg := fmt.Sprintf(`
run: trainer
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%[4]s/v1", timeout: 10s}
  reward: {base_url: "http://%[4]s", kind: classify, model: reward, chat_template: tinylm, timeout: 10s}
  reference: {base_url: "http://%[4]s", model: tiny-0, timeout: 10s}
generation: {samples: 4, max_tokens: 24, seed: 7}
scoring: {implicit: dpo, beta: 0.1}
selection: {metric: alignment_potential, ratio: 0.5}
evolve: {enabled: false}
export: {dir: %q, formats: [jsonl, parquet]}
orchestrator: {progress_interval: 1s, poll_interval: 100ms}
iterations:
  - {name: iter0, policy_model: tiny-0, reference_model: tiny-0, prompts: {files: [%q]}}
`, storetest.NewDatabase(t), nats.URL, nats.Stream, lm, filepath.Join(dir, "exports"), prompts)
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	selfplaytest.Start(t, "worker", nil, "worker", "-c", cfgPath, "--log-level", "warn")
	run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", cfgPath)
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	return filepath.Join(dir, "exports", "trainer", "iter0")
}

// TestTrainerOnCPU trains LoRA adapters with DPO, SimPO and ε-DPO on a
// loop's export with the pinned Python stack (examples/vllm/tests).
func TestTrainerOnCPU(t *testing.T) {
	t.Parallel()
	python := pythonStack(t)
	export := loopExport(t)
	for _, f := range []string{"train.jsonl", "train.parquet"} {
		_, err := os.Stat(filepath.Join(export, f))
		require.NoError(t, err, "the loop exported %s", f)
	}

	cmd := exec.Command(python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
	cmd.Dir = "."
	cmd.Env = append(os.Environ(),
		"SELFPLAY_EXPORT="+export,
		// Nothing comes from a hub: the tests make their model and
		// tokenizer; the caches go with the test.
		"HF_HUB_OFFLINE=1", "HF_DATASETS_OFFLINE=1", "TRANSFORMERS_OFFLINE=1",
		"HF_HOME="+t.TempDir(), "TOKENIZERS_PARALLELISM=false", "PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "pytest:\n%s", out)
	summary := regexp.MustCompile(`(?m)^(\d+) passed[^\n]*$`).FindStringSubmatch(string(out))
	require.NotNil(t, summary, "pytest printed no summary:\n%s", out)
	require.NotContains(t, summary[0], "skipped", "%s", out)
	require.NotContains(t, summary[0], "failed", "%s", out)
	t.Logf("pytest: %s", summary[0])
}
