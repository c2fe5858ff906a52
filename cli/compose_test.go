package cli

import (
	"context"
	"fmt"
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
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/store/storetest"
)

// loadCompose loads docker-compose.yml the way `docker compose` does, with
// the tests profile enabled so every service is present, and env (NAME=value)
// as the environment it interpolates.
func loadCompose(t *testing.T, env ...string) *types.Project {
	t.Helper()
	opts, err := composecli.NewProjectOptions([]string{"../docker-compose.yml"},
		composecli.WithName("selfplay"),
		composecli.WithProfiles([]string{"tests"}),
		composecli.WithWorkingDirectory(".."),
		composecli.WithEnv(env),
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

	// One build of selfplay:dev per `up`, and no pull: compose builds every
	// service that has a build section (four builds of one image when each
	// had one) and, unless pull_policy says otherwise, first tries to pull
	// an image it does not have. So one service builds it with pull_policy
	// build, the others name it with pull_policy never and depend on the
	// builder, so that `up` or `run` of any of them builds it first.
	var builders []string
	for _, name := range []string{"migrate", "lm", "orchestrator", "worker"} {
		s := svc(name)
		require.Equal(t, "selfplay:dev", s.Image, name)
		if s.Build != nil {
			builders = append(builders, name)
			require.Equal(t, "runtime", s.Build.Target, name)
			require.Equal(t, types.PullPolicyBuild, s.PullPolicy, "%s builds selfplay:dev and never pulls it", name)
		} else {
			require.Equal(t, types.PullPolicyNever, s.PullPolicy, "%s only names selfplay:dev: never pull it", name)
		}
		requireRealCommand(t, name, s.Command)
	}
	require.Equal(t, []string{"migrate"}, builders, "one service builds selfplay:dev")
	for _, name := range []string{"lm", "orchestrator", "worker"} {
		_, ok := svc(name).DependsOn["migrate"]
		require.True(t, ok, "%s depends on the service that builds its image", name)
	}
	for name, s := range project.Services {
		if s.Image == "selfplay:dev" || s.Build != nil {
			continue
		}
		require.NotEqual(t, types.PullPolicyBuild, s.PullPolicy, name)
	}

	// The healthcheck connects over TCP, as the services do: the image's
	// first-start server listens on the Unix socket only.
	pgCheck := svc("postgres").HealthCheck.Test
	require.Equal(t, "CMD-SHELL", pgCheck[0])
	require.Contains(t, strings.Fields(pgCheck[1]), "pg_isready")
	require.Contains(t, pgCheck[1], "-h 127.0.0.1", "pg_isready over TCP")

	// The README's command ends when the loop does, with the
	// orchestrator's exit code. `--exit-code-from` stops everything when
	// any attached container exits, so a one-shot service others wait for
	// (migrate) must not be attached, and every attached one but the
	// orchestrator runs until stopped.
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	const upCommand = "docker compose up --exit-code-from orchestrator"
	commands := string(readme)[strings.Index(string(readme), "## The two commands"):]
	commands = commands[strings.Index(commands, "```sh\n")+len("```sh\n"):]
	require.True(t, strings.HasPrefix(commands, upCommand+" "), "the README's first command is %q", upCommand)
	oneShot := map[string]bool{}
	for _, s := range project.Services {
		for on, d := range s.DependsOn {
			if d.Condition == types.ServiceConditionCompletedSuccessfully {
				oneShot[on] = true
			}
		}
	}
	require.True(t, oneShot["migrate"])
	for name, s := range project.Services {
		attached := s.Attach == nil || *s.Attach
		if oneShot[name] {
			require.False(t, attached, "%s exits when done: attached, it would end `%s` at once", name, upCommand)
		}
		if attached && name != "orchestrator" && !slices.Contains(s.Profiles, "tests") {
			require.NotEqual(t, "no", s.Restart, "%s is attached, so it must run until stopped", name)
		}
	}

	// Non-root, and files on the host belong to the user who owns
	// ./exports: the services run as the image's user (not root, checked
	// below); the orchestrator, the one that writes on the host, starts as
	// root only to become the owner of the bind-mounted folder at once
	// (TestRunAsOwner), or as SELFPLAY_UID:SELFPLAY_GID when set.
	for _, name := range []string{"migrate", "lm", "worker"} {
		require.Empty(t, svc(name).User, name)
	}
	orch := svc("orchestrator")
	require.Equal(t, "0:0", orch.User)
	require.Equal(t, "/app/exports", *orch.Environment[runAsOwnerEnv])
	require.Equal(t, "/app/exports", orch.Volumes[0].Target, "the folder named is the bind-mounted ./exports")
	require.Equal(t, "/app/examples/selfplay.yaml", *orch.Environment["SELFPLAY_CONFIG"], "the shared environment is kept beside it")
	mine := loadCompose(t, "SELFPLAY_UID=4242", "SELFPLAY_GID=4343")
	mineOrch, err := mine.GetService("orchestrator")
	require.NoError(t, err)
	require.Equal(t, "4242:4343", mineOrch.User)
	requireNonRootImage(t, "../Dockerfile", svc("migrate").Build.Target)
	// A run's outputs are not in the build context, so they cannot spoil
	// the build cache; ./exports is in the checkout, so docker need not
	// create it (as root) for the bind mount.
	ignore, err := os.ReadFile("../.dockerignore")
	require.NoError(t, err)
	for _, path := range []string{".git", "exports/", "models/"} {
		require.Contains(t, strings.Fields(string(ignore)), path, ".dockerignore")
	}
	// (Checked in .gitignore, which the test image has, rather than on
	// disk: the whole of exports/ stays out of the build context, so that
	// removing ./exports does not spoil the cache either.)
	gitignore, err := os.ReadFile("../.gitignore")
	require.NoError(t, err)
	require.Contains(t, strings.Fields(string(gitignore)), "!/exports/.gitkeep", "./exports is kept in the checkout")
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

	require.NotEmpty(t, orch.Volumes)
	require.Equal(t, "/app/exports", orch.Volumes[0].Target)
	require.Equal(t, types.VolumeTypeBind, orch.Volumes[0].Type)
	exportsDir, err := filepath.Abs("../exports")
	require.NoError(t, err)
	require.Equal(t, exportsDir, orch.Volumes[0].Source)
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

// requireNonRootImage checks that the Dockerfile stage target ends with a
// USER that is not root.
func requireNonRootImage(t *testing.T, path, target string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	stage, user := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.EqualFold(f[0], "FROM") && strings.EqualFold(f[2], "AS"):
			stage, user = f[3], ""
		case len(f) == 2 && strings.EqualFold(f[0], "USER") && stage == target:
			user = f[1]
		}
	}
	require.NotEmpty(t, user, "stage %s of %s sets a USER", target, path)
	name, _, _ := strings.Cut(user, ":")
	require.NotContains(t, []string{"root", "0"}, name, "stage %s runs as %s", target, user)
}

// TestComposePostgresHealthcheck runs the compose file's PostgreSQL
// healthcheck against a private server (checking passwords, like the
// image's) through the first-start sequence of the official image: the
// check must fail while the temporary server listens on the Unix socket
// only — the same command without -h passes then — and pass once the
// server takes TCP connections.
func TestComposePostgresHealthcheck(t *testing.T) {
	t.Parallel()
	test := loadCompose(t).Services["postgres"].HealthCheck.Test
	require.Equal(t, "CMD-SHELL", test[0])
	check := test[1]
	srv := storetest.NewServer(t, "hc-pw")
	// Default port and socket of the private server, as the image's are
	// the defaults; the command's own options are left as they are.
	run := func(command string) error {
		cmd := exec.Command("sh", "-c", command)
		cmd.Env = append(os.Environ(), fmt.Sprintf("PGPORT=%d", srv.Port), "PGHOST="+srv.SocketDir)
		out, err := cmd.CombinedOutput()
		t.Logf("%s: %v %s", command, err, out)
		return err
	}
	overSocket := strings.Replace(check, "-h 127.0.0.1", "", 1)
	require.NotEqual(t, check, overSocket)

	require.Error(t, run(check), "nothing runs yet")
	srv.StartSocketOnly()
	require.NoError(t, run(overSocket), "the first-start server answers on its socket")
	require.Error(t, run(check), "healthy while TCP connections are refused")
	srv.Stop()
	srv.Start()
	require.NoError(t, run(check), "the server takes TCP connections")
}
