package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// The production example in examples/vllm cannot run here (it needs GPUs,
// vLLM, PyTorch and TRL); these tests check every file of it for syntax and
// run what runs without them: the shell scripts with stand-ins for vllm and
// python3 that print what they were given, the trainer's argument parsing,
// the schedule through config.Load and the compose override through
// compose-go, as `docker compose` loads it.

const vllmDir = "../examples/vllm"

func needTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (%v); install it: %s", name, err, install)
	}
	return p
}

// stub writes an executable named name into a new folder that prints its
// arguments one per line, then the variables named in env as NAME=value,
// and returns the folder for PATH.
func stub(t *testing.T, name string, env ...string) string {
	t.Helper()
	dir := t.TempDir()
	script := "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\"\n"
	for _, e := range env {
		script += "echo " + e + "=\"$" + e + "\"\n"
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755))
	return dir
}

func runScript(t *testing.T, pathDir string, env []string, script string, args ...string) ([]string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(vllmDir, script), args...)
	cmd.Env = append(append(os.Environ(), "PATH="+pathDir+":"+os.Getenv("PATH")), env...)
	out, err := cmd.CombinedOutput()
	return strings.Split(strings.TrimSpace(string(out)), "\n"), err
}

func flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	i := slices.Index(args, name)
	require.True(t, i >= 0 && i+1 < len(args), "%s in %v", name, args)
	return args[i+1]
}

func TestVLLMExampleShellScripts(t *testing.T) {
	needTool(t, "bash", "apt-get install -y bash")
	scripts, err := filepath.Glob(filepath.Join(vllmDir, "*.sh"))
	require.NoError(t, err)
	require.Len(t, scripts, 4)
	for _, s := range scripts {
		out, err := exec.Command("bash", "-n", s).CombinedOutput()
		require.NoError(t, err, "bash -n %s: %s", s, out)
		fi, err := os.Stat(s)
		require.NoError(t, err)
		require.NotZero(t, fi.Mode()&0o111, "%s is executable (the compose services and the hook run it directly)", s)
	}

	cfg, err := config.Load(filepath.Join(vllmDir, "selfplay.yaml"))
	require.NoError(t, err)
	vllm := stub(t, "vllm", "VLLM_ALLOW_RUNTIME_LORA_UPDATING")
	for _, tc := range []struct {
		script, served, port string
	}{
		{"serve-policy.sh", cfg.Iterations[0].PolicyModel, "8000"},
		{"serve-reward.sh", cfg.Endpoints["reward"].Model, "8001"},
		{"serve-reference.sh", cfg.Iterations[0].ReferenceModel, "8002"},
	} {
		got, err := runScript(t, vllm, nil, tc.script)
		require.NoError(t, err, "%s: %v", tc.script, got)
		require.Equal(t, "serve", got[1], tc.script)
		require.Equal(t, tc.served, flagValue(t, got, "--served-model-name"), "%s serves the model the schedule names", tc.script)
		require.Equal(t, tc.port, flagValue(t, got, "--port"), tc.script)
		got, err = runScript(t, vllm, []string{"PORT=9100"}, tc.script, "--extra-flag")
		require.NoError(t, err)
		require.Equal(t, "9100", flagValue(t, got, "--port"))
		require.Contains(t, got, "--extra-flag", "extra arguments reach vllm serve")
	}
	got, err := runScript(t, vllm, nil, "serve-policy.sh")
	require.NoError(t, err)
	require.Contains(t, got, "--enable-lora")
	require.Contains(t, got, "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True", "runtime adapter loading is switched on")
	require.Equal(t, "16", flagValue(t, got, "--max-lora-rank"))
	// The reference's context is the policy's plus the one token its
	// scoring request generates (checkReferenceContext).
	for env, want := range map[string][2]string{"": {"4096", "4097"}, "POLICY_MAX_MODEL_LEN=8192": {"8192", "8193"}} {
		pol, err := runScript(t, vllm, []string{env}, "serve-policy.sh")
		require.NoError(t, err)
		ref, err := runScript(t, vllm, []string{env}, "serve-reference.sh")
		require.NoError(t, err)
		require.Equal(t, want, [2]string{flagValue(t, pol, "--max-model-len"), flagValue(t, ref, "--max-model-len")}, env)
	}
	got, err = runScript(t, vllm, nil, "serve-reward.sh")
	require.NoError(t, err)
	require.Equal(t, "pooling", flagValue(t, got, "--runner"))
	require.Equal(t, "classify", flagValue(t, got, "--convert"))
	require.Equal(t, "classify", cfg.Endpoints["reward"].Kind)

	// The hook: python3 train_dpo.py with the export, the next model's
	// folder and name, continuing from the current policy's adapter when
	// there is one.
	python := stub(t, "python3")
	adapters := t.TempDir()
	env := []string{"ADAPTERS_DIR=" + adapters, "POLICY_URL=http://vllm-policy:8000"}
	got, err = runScript(t, python, env, "train-hook.sh", "exports/r/iter0/train.jsonl", "policy-0", "policy-1")
	require.NoError(t, err, "%v", got)
	require.True(t, strings.HasSuffix(got[1], "examples/vllm/train_dpo.py"), got[1])
	require.Equal(t, "exports/r/iter0/train.jsonl", flagValue(t, got, "--dataset"))
	require.Equal(t, filepath.Join(adapters, "policy-1"), flagValue(t, got, "--output"))
	require.Equal(t, "policy-1", flagValue(t, got, "--name"))
	require.Equal(t, "http://vllm-policy:8000", flagValue(t, got, "--load-into"))
	require.Equal(t, "0.1", flagValue(t, got, "--beta"))
	require.Equal(t, "dpo", flagValue(t, got, "--loss"))
	require.EqualValues(t, cfg.Scoring.Beta, 0.1, "the trainer's beta is the schedule's")
	require.NotContains(t, got, "--init-adapter", "policy-0 is the base model, not an adapter")
	require.NoError(t, os.Mkdir(filepath.Join(adapters, "policy-1"), 0o755))
	got, err = runScript(t, python, env, "train-hook.sh", "d.jsonl", "policy-1", "policy-2")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(adapters, "policy-1"), flagValue(t, got, "--init-adapter"))
	_, err = runScript(t, python, env, "train-hook.sh", "only-one-argument")
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	require.Equal(t, 2, exit.ExitCode())
}

func TestVLLMExampleTrainer(t *testing.T) {
	python := needTool(t, "python3", "apt-get install -y python3")
	script := filepath.Join(vllmDir, "train_dpo.py")
	out, err := exec.Command(python, "-c", "import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
		script, filepath.Join(t.TempDir(), "train_dpo.pyc")).CombinedOutput()
	require.NoError(t, err, "py_compile: %s", out)
	// Argument parsing runs without torch: the heavy imports are inside
	// the functions that train.
	out, err = exec.Command(python, script, "--help").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, flag := range []string{"--base-model", "--dataset", "--output", "--init-adapter", "--beta", "--load-into", "--name"} {
		require.Contains(t, string(out), flag)
	}
	out, err = exec.Command(python, script, "--base-model", "m", "--dataset", "d", "--output", "o", "--load-into", "http://x").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "--load-into needs --name")
}

func TestVLLMExampleSchedule(t *testing.T) {
	cfg, err := config.Load(filepath.Join(vllmDir, "selfplay.yaml"))
	require.NoError(t, err)
	require.Equal(t, "dpo", cfg.Scoring.Implicit)
	var policies []string
	for _, it := range cfg.Iterations {
		policies = append(policies, it.PolicyModel)
		require.Equal(t, cfg.Endpoints["reference"].Model, it.ReferenceModel, it.Name)
	}
	require.Equal(t, []string{"policy-0", "policy-1", "policy-2"}, policies)
	require.Equal(t, "policy-final", cfg.Hooks.FinalModel)
	hook := cfg.Hooks.Train
	require.Equal(t, []string{"examples/vllm/train-hook.sh", "{dataset}", "{policy_model}", "{next_model}"}, hook)
	_, err = os.Stat(filepath.Join("..", hook[0]))
	require.NoError(t, err, "the hook runs from the repository root (the image's /app)")
	for _, f := range cfg.Iterations[0].Prompts.Files {
		_, err = os.Stat(filepath.Join("..", f))
		require.NoError(t, err)
	}
}

func TestVLLMExampleDockerfile(t *testing.T) {
	f, err := os.Open(filepath.Join(vllmDir, "Dockerfile.trainer"))
	require.NoError(t, err)
	defer f.Close()
	known := []string{"FROM", "RUN", "COPY", "WORKDIR", "ENTRYPOINT", "ARG", "ENV", "CMD"}
	var stages []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, rest, _ := strings.Cut(line, " ")
		require.Contains(t, known, word, "instruction %q", line)
		switch word {
		case "FROM":
			if _, name, ok := strings.Cut(rest, " AS "); ok {
				stages = append(stages, name)
			}
		case "RUN":
			out, err := exec.Command("bash", "-n", "-c", rest).CombinedOutput()
			require.NoError(t, err, "RUN %s: %s", rest, out)
		case "COPY":
			fields := strings.Fields(rest)
			if strings.HasPrefix(fields[0], "--from=") {
				require.Contains(t, stages, strings.TrimPrefix(fields[0], "--from="))
				continue
			}
			for _, src := range fields[:len(fields)-1] {
				if src == "." {
					continue
				}
				_, err := os.Stat(filepath.Join("..", src))
				require.NoError(t, err, "COPY source %s (the build context is the repository root)", src)
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Equal(t, []string{"build", "trainer"}, stages)
}

// loadGPUCompose loads the GPU override over the base compose file as
// `docker compose -f … -f …` does, with env as the shell's variables.
func loadGPUCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := composecli.NewProjectOptions([]string{"../docker-compose.yml", vllmDir + "/docker-compose.gpu.yml"},
		composecli.WithName("selfplay"),
		composecli.WithWorkingDirectory(".."),
		composecli.WithEnv(env),
	)
	require.NoError(t, err)
	project, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	return project
}

// TestVLLMExampleGPUsApart: every GPU service reserves its own device by
// index (issue 21: with `count: 1` Docker gives each container GPU 0, and
// the second vLLM server cannot start), 0–3 by default and as the
// SELFPLAY_*_GPU variables say.
func TestVLLMExampleGPUsApart(t *testing.T) {
	devices := func(p *types.Project) map[string]string {
		got := map[string]string{}
		for _, name := range []string{"vllm-policy", "vllm-reward", "vllm-reference", "orchestrator"} {
			s, err := p.GetService(name)
			require.NoError(t, err)
			devs := s.Deploy.Resources.Reservations.Devices
			require.Len(t, devs, 1, name)
			require.Zero(t, devs[0].Count, "%s reserves a device by index, not a count", name)
			require.Len(t, devs[0].IDs, 1, name)
			got[name] = devs[0].IDs[0]
		}
		return got
	}
	require.Equal(t, map[string]string{"vllm-policy": "0", "vllm-reward": "1", "vllm-reference": "2", "orchestrator": "3"},
		devices(loadGPUCompose(t)))
	require.Equal(t, map[string]string{"vllm-policy": "3", "vllm-reward": "2", "vllm-reference": "1", "orchestrator": "0"},
		devices(loadGPUCompose(t, "SELFPLAY_POLICY_GPU=3", "SELFPLAY_REWARD_GPU=2", "SELFPLAY_REFERENCE_GPU=1", "SELFPLAY_TRAINER_GPU=0")))
}

func TestVLLMExampleCompose(t *testing.T) {
	project := loadGPUCompose(t)
	svc := func(name string) types.ServiceConfig {
		t.Helper()
		s, err := project.GetService(name)
		require.NoError(t, err, name)
		return s
	}
	gpu := func(s types.ServiceConfig) {
		t.Helper()
		require.NotNil(t, s.Deploy, s.Name)
		require.NotNil(t, s.Deploy.Resources.Reservations, s.Name)
		devs := s.Deploy.Resources.Reservations.Devices
		require.Len(t, devs, 1, s.Name)
		require.Equal(t, "nvidia", devs[0].Driver, s.Name)
		require.Contains(t, []string(devs[0].Capabilities), "gpu", s.Name)
	}
	mount := func(s types.ServiceConfig, target string) string {
		t.Helper()
		for _, v := range s.Volumes {
			if v.Target == target {
				return v.Source
			}
		}
		t.Fatalf("%s mounts nothing at %s", s.Name, target)
		return ""
	}
	ports := map[string]string{}
	for _, name := range []string{"vllm-policy", "vllm-reward", "vllm-reference"} {
		s := svc(name)
		gpu(s)
		require.Equal(t, []string{"bash"}, []string(s.Entrypoint), name)
		script := s.Command[0]
		require.True(t, strings.HasPrefix(script, "/opt/selfplay-vllm/"), script)
		require.Equal(t, filepath.Join(selfplayRoot(t), "examples", "vllm"), mount(s, "/opt/selfplay-vllm"), name)
		_, err := os.Stat(filepath.Join(vllmDir, strings.TrimPrefix(script, "/opt/selfplay-vllm/")))
		require.NoError(t, err, "%s runs a script of examples/vllm", name)
		require.NotNil(t, s.HealthCheck, name)
		// The healthcheck asks the port the service's script listens on
		// (its PORT), at vLLM's /health.
		probe := strings.Join(s.HealthCheck.Test, " ")
		require.Contains(t, probe, "'http://127.0.0.1:' + __import__('os').environ['PORT'] + '/health'", name)
		require.NotNil(t, s.Environment["PORT"], name)
		ports[name] = *s.Environment["PORT"]
	}
	require.Equal(t, mount(svc("vllm-policy"), "/adapters"), mount(svc("orchestrator"), "/adapters"),
		"the policy server reads the adapters the hook writes")

	orch := svc("orchestrator")
	gpu(orch)
	require.Equal(t, "trainer", orch.Build.Target)
	require.Equal(t, "examples/vllm/Dockerfile.trainer", orch.Build.Dockerfile)
	require.Equal(t, "/adapters", *orch.Environment["ADAPTERS_DIR"])
	require.Equal(t, "http://vllm-policy:"+ports["vllm-policy"], *orch.Environment["POLICY_URL"])
	for _, name := range []string{"migrate", "orchestrator", "worker"} {
		s := svc(name)
		requireRealCommand(t, name, s.Command)
		require.Equal(t, "/app/examples/vllm/selfplay.yaml", flagValue(t, s.Command, "-c"), name)
	}
	for _, name := range []string{"orchestrator", "worker"} {
		for _, dep := range []string{"vllm-policy", "vllm-reward", "vllm-reference"} {
			require.Equal(t, types.ServiceConditionHealthy, svc(name).DependsOn[dep].Condition, "%s → %s", name, dep)
		}
	}

	// The schedule, with the workers' environment, points at the vLLM
	// services on the ports their scripts listen on.
	for key, v := range svc("worker").Environment {
		if strings.HasPrefix(key, "SELFPLAY_") && key != "SELFPLAY_CONFIG" && v != nil {
			t.Setenv(key, *v)
		}
	}
	cfg, err := config.Load(filepath.Join(vllmDir, "selfplay.yaml"))
	require.NoError(t, err)
	require.Equal(t, "http://vllm-policy:"+ports["vllm-policy"]+"/v1", cfg.Endpoints["policy"].BaseURL)
	require.Equal(t, "http://vllm-reward:"+ports["vllm-reward"], cfg.Endpoints["reward"].BaseURL)
	require.Equal(t, "http://vllm-reference:"+ports["vllm-reference"], cfg.Endpoints["reference"].BaseURL)
	require.Contains(t, cfg.Database.URL, "@postgres:5432/selfplay")
}

func selfplayRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	return root
}
