package orchestrator_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/tinylm"
)

// The production train hook (examples/vllm/train-hook.sh → train_dpo.py)
// trains with TRL on a GPU, then loads the adapter into the vLLM policy
// server with train_dpo.load_adapter: POST /v1/load_lora_adapter with
// load_inplace. These tests run that very function against tinylm, which
// serves the route as vLLM does (only with VLLM_ALLOW_RUNTIME_LORA_UPDATING;
// a second load of a name is 400 unless load_inplace —
// vllm/entrypoints/openai/models/serving.py,
// _check_load_lora_adapter_request — see tinylm/lora_test.go), with
// `selfplay lm train` in TRL's place writing the "adapter" (a tinylm
// weights file), and the orchestrator killed while the first hook run is
// still going: the orchestrator that takes over runs the train stage again,
// which loads the same name a second time.

// loraHook writes the hook script: train NEXT from POLICY on DATASET into
// adapters/NEXT.bin.gz, load it with the given Python reload, and, the first
// time NEXT is firstCrash, mark that the load is done and wait to be killed.
func loraHook(t *testing.T, dir, policyURL, reload string) string {
	t.Helper()
	adapters := filepath.Join(dir, "adapters")
	require.NoError(t, os.Mkdir(adapters, 0o755))
	python := filepath.Join(dir, "reload.py")
	require.NoError(t, os.WriteFile(python, []byte(reload), 0o644))
	script := fmt.Sprintf(`#!/bin/sh
# hook.sh DATASET POLICY_MODEL NEXT_MODEL
set -eu
%s lm train --models-dir '%s' --data "$1" --init "$2" --out "$3" --loss dpo --epochs 2 --seed 1
python3 '%s' '%s' '%s' "$3" '%s'/"$3".bin.gz
if [ "$3" = tiny-1 ] && [ ! -e '%s' ]; then
  touch '%s'
  exec sleep 600
fi
`, selfplaytest.Binary(t), adapters, python, filepath.Join(selfplaytest.Root(), "examples", "vllm"), policyURL, adapters,
		filepath.Join(dir, "loaded-once"), filepath.Join(dir, "loaded-once"))
	path := filepath.Join(dir, "hook.sh")
	require.NoError(t, os.WriteFile(path, []byte(script), 0o755))
	return path
}

// trainDPOReload is the hook's reload: train_dpo.load_adapter itself.
const trainDPOReload = `import sys
sys.path.insert(0, sys.argv[1])
import train_dpo
train_dpo.load_adapter(sys.argv[2], sys.argv[3], sys.argv[4])
`

// reloadWithoutInplace posts the body train_dpo.py sent before it set
// load_inplace (issue 21, item 4).
const reloadWithoutInplace = `import json, sys, urllib.error, urllib.request
body = json.dumps({"lora_name": sys.argv[3], "lora_path": sys.argv[4]}).encode()
req = urllib.request.Request(sys.argv[2].rstrip("/") + "/v1/load_lora_adapter", data=body,
                             headers={"Content-Type": "application/json"}, method="POST")
try:
    with urllib.request.urlopen(req, timeout=60) as resp:
        print(f"loaded adapter {sys.argv[3]}: {resp.status}", flush=True)
except urllib.error.HTTPError as e:
    sys.exit(f"POST {req.full_url}: {e.code} {e.read().decode(errors='replace')}")
`

// startLoRALoop starts a two-iteration loop whose policy server takes
// adapters at run time and whose hook reloads through reload; it returns
// the loop and the orchestrator, after killing the first orchestrator
// once the first hook run has loaded tiny-1 and starting the second.
func startLoRALoop(t *testing.T, reload string) (*loop, *selfplaytest.Proc, string) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Fatalf("python3 not found (%v); install it: apt-get install -y python3", err)
	}
	hookDir := t.TempDir()
	addr := selfplaytest.FreeAddr(t)
	hook := loraHook(t, hookDir, "http://"+addr, reload)
	l := startLoop(t, loopOptions{prompts: 30, samples: 4, ackWait: "30s", workerCon: 8, lmAddr: addr,
		lmEnv: []string{tinylm.RuntimeLoRAUpdatingEnv + "=True"},
		hook: fmt.Sprintf(`[%q, "{dataset}", "{policy_model}", "{next_model}"]
  final_model: tiny-final`, hook), nextPolicy: "tiny-1"})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator-1")
	marker := filepath.Join(hookDir, "loaded-once")
	require.Eventually(t, func() bool {
		_, err := os.Stat(marker)
		return err == nil || run.Exited()
	}, 3*time.Minute, 20*time.Millisecond, "the first hook run never loaded tiny-1")
	require.False(t, run.Exited(), run.Tail(40))
	require.Contains(t, servedModels(t, "http://"+addr), "tiny-1", "the first hook run loaded tiny-1")
	require.NoError(t, run.Signal(syscall.SIGKILL))
	run.Kill()
	return l, l.orchestrator(t, "orchestrator-2"), filepath.Join(hookDir, "adapters")
}

// TestTrainHookReloadSurvivesARerun: the orchestrator is killed after the
// hook loaded tiny-1; the next orchestrator re-runs the train stage, whose
// second load of tiny-1 succeeds because train_dpo.load_adapter sends
// load_inplace, and the run goes on to sample tiny-1 and load the final
// model.
func TestTrainHookReloadSurvivesARerun(t *testing.T) {
	t.Parallel()
	l, run, adapters := startLoRALoop(t, trainDPOReload)
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(40))
	l.checkInvariants(t, 30)

	out := run.Output()
	tiny1 := filepath.Join(adapters, "tiny-1.bin.gz")
	require.Contains(t, out, "loaded adapter tiny-1 from "+tiny1+": 200", "the re-run loaded tiny-1 again")
	require.Equal(t, 2, strings.Count(l.lm.Output(), `msg="loaded adapter" model=tiny-1 `), "the server loaded tiny-1 twice:\n%s", l.lm.Output())
	require.Contains(t, out, "loaded adapter tiny-final from "+filepath.Join(adapters, "tiny-final.bin.gz")+": 200")
	require.Equal(t, 2, strings.Count(out, "next policy model is served"), "tiny-1, then hooks.final_model")

	base := "http://" + l.lmAddr
	served := servedModels(t, base)
	require.Subset(t, served, []string{"tiny-0", "tiny-1", "tiny-final"}, served)
	// iter1 sampled the loaded adapter: its log-probs are the file's.
	m, err := tinylm.Load(tiny1)
	require.NoError(t, err)
	promptIDs, err := m.Tok.EncodeChat([]tinylm.Message{{Role: "user", Content: "how do i cook rice ?"}}, true)
	require.NoError(t, err)
	reply := append(m.Tok.Encode("rinse the rice , then boil it in salty water ."), tinylm.EndID)
	require.InDelta(t, logProb(t, m, promptIDs, reply), servedLogProb(t, base, "tiny-1", promptIDs, reply), 1e-9)
	require.NotEqual(t, servedLogProb(t, base, "tiny-0", promptIDs, reply), servedLogProb(t, base, "tiny-1", promptIDs, reply))
	require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM iterations WHERE ordinal = 1 AND policy_model = 'tiny-1' AND stage = 'done'`))
}

// TestTrainHookReloadWithoutInplaceFailsOnRerun: the same crash with a
// reload that leaves load_inplace out: the re-run's load gets vLLM's 400
// and the run stops there for good — what a resumed run met before
// train_dpo.py set load_inplace.
func TestTrainHookReloadWithoutInplaceFailsOnRerun(t *testing.T) {
	t.Parallel()
	l, run, _ := startLoRALoop(t, reloadWithoutInplace)
	err := run.Wait(3 * time.Minute)
	require.Error(t, err, "the run cannot go on: %s", run.Tail(40))
	require.Contains(t, run.Output(), "400 ")
	require.Contains(t, run.Output(), "The lora adapter 'tiny-1' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.")
	require.Zero(t, l.count(t, `SELECT count(*) FROM iterations WHERE ordinal = 1 AND stage = 'done'`))
}
