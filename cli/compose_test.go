package cli

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	composecli "github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/orchestrator"
)

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// the tests profile enabled so every service is present.
func loadCompose(t *testing.T) *types.Project {
	t.Helper()
	opts, err := composecli.NewProjectOptions([]string{"../docker-compose.yml"},
		composecli.WithName("selfplay"),
		composecli.WithProfiles([]string{"tests"}),
		composecli.WithWorkingDirectory(".."),
	)
	require.NoError(t, err)
	project, err := opts.LoadProject(context.Background())
	require.NoError(t, err)
	return project
}

// requireRealCommand checks that args name a selfplay subcommand and that
// it accepts the flags given.
func requireRealCommand(t *testing.T, service string, args []string) {
	t.Helper()
	root := NewRoot()
	cmd, rest, err := root.Find(args)
	require.NoError(t, err, "service %s: %v", service, args)
	require.NotEqual(t, root, cmd, "service %s runs no subcommand: %v", service, args)
	require.True(t, cmd.Runnable(), "service %s: %q is not runnable", service, cmd.CommandPath())
	require.NoError(t, cmd.ParseFlags(rest), "service %s: flags of %q", service, cmd.CommandPath())
}

func TestComposeFile(t *testing.T) {
	project := loadCompose(t)
	for _, name := range []string{"postgres", "nats", "migrate", "lm", "orchestrator", "worker", "tests"} {
		_, err := project.GetService(name)
		require.NoError(t, err, "service %s", name)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := project.GetService(name)
		require.NoError(t, err)
		return s
	}

	require.True(t, strings.HasPrefix(svc("postgres").Image, "postgres:16"))
	require.True(t, strings.HasPrefix(svc("nats").Image, "nats:2"))
	require.Contains(t, []string(svc("nats").Command), "-js")
	for _, name := range []string{"postgres", "nats", "lm"} {
		hc := svc(name).HealthCheck
		require.NotNil(t, hc, "%s has a healthcheck", name)
		require.NotEmpty(t, hc.Test, "%s healthcheck test", name)
	}
	require.Equal(t, []string{"CMD", "selfplay"}, []string(svc("lm").HealthCheck.Test[:2]))
	requireRealCommand(t, "lm healthcheck", svc("lm").HealthCheck.Test[2:])

	for _, name := range []string{"migrate", "lm", "orchestrator", "worker"} {
		s := svc(name)
		require.Equal(t, "selfplay:dev", s.Image, name)
		// Each builds the image itself: compose would otherwise try to pull
		// selfplay:dev from a registry for a service that only names it.
		require.NotNil(t, s.Build, "%s builds selfplay:dev", name)
		require.Equal(t, "runtime", s.Build.Target, name)
		requireRealCommand(t, name, s.Command)
	}
	require.NotNil(t, svc("worker").Deploy)
	require.EqualValues(t, 2, *svc("worker").Deploy.Replicas)

	dep := func(service, on, condition string) {
		t.Helper()
		d, ok := svc(service).DependsOn[on]
		require.True(t, ok, "%s depends on %s", service, on)
		require.Equal(t, condition, d.Condition, "%s → %s", service, on)
	}
	dep("migrate", "postgres", types.ServiceConditionHealthy)
	for _, s := range []string{"orchestrator", "worker"} {
		dep(s, "migrate", types.ServiceConditionCompletedSuccessfully)
		dep(s, "nats", types.ServiceConditionHealthy)
		dep(s, "lm", types.ServiceConditionHealthy)
	}
	dep("tests", "postgres", types.ServiceConditionHealthy)
	dep("tests", "nats", types.ServiceConditionHealthy)
	require.True(t, slices.Contains(svc("tests").Profiles, "tests"))

	orch := svc("orchestrator")
	require.NotEmpty(t, orch.Volumes)
	require.Equal(t, "/app/exports", orch.Volumes[0].Target)
	for _, key := range []string{"SELFPLAY_DATABASE_URL", "SELFPLAY_NATS_URL"} {
		v := orch.Environment[key]
		require.NotNil(t, v, key)
		require.NotEmpty(t, *v)
	}
	require.Contains(t, *svc("tests").Environment["SELFPLAY_TEST_DATABASE_URL"], "@postgres:5432")
	require.Contains(t, *svc("tests").Environment["SELFPLAY_TEST_NATS_URL"], "nats://nats:4222")

	// The schedule the containers run must load, with their environment.
	for key, v := range orch.Environment {
		if strings.HasPrefix(key, "SELFPLAY_") && key != "SELFPLAY_CONFIG" {
			t.Setenv(key, *v)
		}
	}
	cfg, err := config.Load("../examples/selfplay.yaml")
	require.NoError(t, err)
	require.Equal(t, "http://lm:8000/v1", cfg.Endpoints["policy"].BaseURL)
	require.Contains(t, cfg.Database.URL, "@postgres:5432/selfplay")

	// Every secret variable the schedule names is set in the containers
	// that read it, or the worker and the orchestrator's wait for the next
	// model stop at start with "which is not set".
	for name, ep := range cfg.Endpoints {
		if ep.APIKeyEnv == "" {
			continue
		}
		for _, s := range []string{"orchestrator", "worker"} {
			v := svc(s).Environment[ep.APIKeyEnv]
			require.True(t, v != nil && *v != "", "%s: endpoints.%s.api_key_env names %s, which the container does not set", s, name, ep.APIKeyEnv)
		}
	}

	// Training closes the loop: the schedule's train hook is `selfplay lm
	// train`, run in the orchestrator's container, writing the next policy
	// into the models volume the lm server watches.
	flag := func(args []string, name string) string {
		t.Helper()
		i := slices.Index(args, name)
		require.Positive(t, i, "%s in %v", name, args)
		return args[i+1]
	}
	mountOf := func(s types.ServiceConfig, target string) types.ServiceVolumeConfig {
		t.Helper()
		for _, v := range s.Volumes {
			if v.Target == target {
				return v
			}
		}
		t.Fatalf("%s mounts nothing at %s", s.Name, target)
		return types.ServiceVolumeConfig{}
	}
	modelsDir := flag(svc("lm").Command, "--models-dir")
	lmModels, orchModels := mountOf(svc("lm"), modelsDir), mountOf(orch, modelsDir)
	require.Equal(t, types.VolumeTypeVolume, lmModels.Type)
	require.Equal(t, lmModels.Source, orchModels.Source, "lm and orchestrator share the models volume")
	require.Contains(t, project.Volumes, lmModels.Source)
	require.Equal(t, "tiny-0=builtin", flag(svc("lm").Command, "--model"))

	hook := cfg.Hooks.Train
	require.Equal(t, []string{"selfplay", "lm", "train"}, hook[:3])
	argv := orchestrator.Substitute(hook[1:], map[string]string{"{dataset}": "exports/demo/iter0/train.jsonl",
		"{manifest}": "m.json", "{run}": "demo", "{iteration}": "iter0", "{policy_model}": "tiny-0", "{next_model}": "tiny-1"})
	requireRealCommand(t, "train hook", argv)
	for _, placeholder := range []string{"{dataset}", "{policy_model}", "{next_model}"} {
		require.Contains(t, hook, placeholder)
	}
	hookDir := flag(hook, "--models-dir")
	if !filepath.IsAbs(hookDir) {
		hookDir = filepath.Join("/app", hookDir) // the image's working directory
	}
	require.Equal(t, modelsDir, hookDir, "the hook writes where lm serve looks")
	var policies []string
	for _, it := range cfg.Iterations {
		policies = append(policies, it.PolicyModel)
	}
	require.Equal(t, []string{"tiny-0", "tiny-1", "tiny-2"}, policies, "three iterations, each on the policy the previous one trained")
	require.NotEmpty(t, cfg.Hooks.FinalModel, "the last iteration's export trains a final policy too")
	require.NotContains(t, policies, cfg.Hooks.FinalModel)
}
