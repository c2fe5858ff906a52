package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "selfplay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

const minimal = `
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [p.jsonl]}}
`

func problems(t *testing.T, err error) []config.Problem {
	t.Helper()
	require.Error(t, err)
	var cerr *config.Error
	require.True(t, errors.As(err, &cerr), "want *config.Error, got %T: %v", err, err)
	return cerr.Problems
}

func keys(ps []config.Problem) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Key)
	}
	return out
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := config.Load("../examples/selfplay.yaml")
	require.NoError(t, err)
	require.Equal(t, "demo", cfg.Run)
	require.GreaterOrEqual(t, len(cfg.Iterations), 2)
	require.Equal(t, 5, cfg.Iterations[0].Generation.Samples)
	require.Equal(t, 4, cfg.Iterations[1].Generation.Samples, "override applies to iter1 only")
	require.Equal(t, 0.8, cfg.Iterations[1].Generation.Temperature, "non-overridden keys keep the global value")
	require.Equal(t, 120*time.Second, cfg.Endpoints["policy"].Timeout)
	require.Equal(t, "SELFPLAY_POLICY_API_KEY", cfg.Endpoints["policy"].APIKeyEnv)
}

func TestDefaults(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Equal(t, 5, cfg.Generation.Samples)
	require.Equal(t, 0.95, cfg.Generation.TopP)
	require.Equal(t, "simpo", cfg.Scoring.Implicit)
	require.Equal(t, 0.4, cfg.Selection.Ratio)
	require.Equal(t, 2.5, cfg.Evolve.ImplicitWeight)
	require.Equal(t, 0.25, cfg.Evolve.Ratio)
	require.Len(t, cfg.Evolve.Strategies, 5)
	require.Equal(t, 10*time.Minute, cfg.Worker.AckWait)
	require.Equal(t, 64, cfg.Endpoints["policy"].MaxConcurrency)
	require.Equal(t, "classify", cfg.Endpoints["reward"].Kind)
	require.Equal(t, 24*time.Hour, cfg.Hooks.TrainTimeout)
}

func TestEnvironmentOverrides(t *testing.T) {
	t.Setenv("SELFPLAY_DATABASE_URL", "postgres://u:pw@db:5432/x")
	t.Setenv("SELFPLAY_GENERATION_SAMPLES", "7")
	t.Setenv("SELFPLAY_NATS_URL", "nats://bus:4222")
	t.Setenv("SELFPLAY_ENDPOINTS_POLICY_BASE_URL", "http://gpu:8000/v1")
	cfg, err := config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Equal(t, "postgres://u:pw@db:5432/x", cfg.Database.URL)
	require.Equal(t, 7, cfg.Generation.Samples)
	require.Equal(t, 7, cfg.Iterations[0].Generation.Samples)
	require.Equal(t, "nats://bus:4222", cfg.NATS.URL)
	require.Equal(t, "http://gpu:8000/v1", cfg.Endpoints["policy"].BaseURL)
}

func TestUnknownKeyNamedWithSuggestion(t *testing.T) {
	_, err := config.Load(writeConfig(t, minimal+"generaton: {samples: 3}\n"))
	ps := problems(t, err)
	require.Equal(t, []string{"generaton"}, keys(ps))
	require.Contains(t, ps[0].Message, `did you mean "generation"`)
	require.Contains(t, err.Error(), "generaton")
}

func TestNestedUnknownKeys(t *testing.T) {
	_, err := config.Load(writeConfig(t, `
endpoints:
  policy: {base_url: http://x:1/v1, max_concurency: 3}
iterations:
  - {name: a, policy_model: m, prompts: {files: [p]}, overrides: {generation: {smaples: 2}, export: {dir: x}}}
`))
	require.ElementsMatch(t, []string{
		"endpoints.policy.max_concurency",
		"iterations[0].overrides.export",
		"iterations[0].overrides.generation.smaples",
	}, keys(problems(t, err)))
}

func TestAllProblemsReportedAtOnce(t *testing.T) {
	_, err := config.Load(writeConfig(t, `
run: ../escape
generation: {samples: 1, top_p: 1.5, temperature: hot}
selection: {metric: vibes, ratio: 0}
scoring: {implicit: dpo}
evolve: {strategies: [breadth, sideways], ratio: 2}
worker: {concurrency: 0}
iterations:
  - {name: a, policy_model: m, prompts: {files: [p]}}
  - {name: a, policy_model: "", prompts: {evolved: true}}
`))
	got := keys(problems(t, err))
	for _, want := range []string{
		"run",
		"generation.samples",
		"generation.top_p",
		"generation.temperature",
		"selection.metric",
		"selection.ratio",
		"scoring.implicit",
		"evolve.strategies[1]",
		"evolve.ratio",
		"worker.concurrency",
		"iterations[1].name",
		"iterations[1].policy_model",
	} {
		require.Contains(t, got, want)
	}
	msg := err.Error()
	require.Contains(t, msg, `expected a number, got "hot"`)
	require.Contains(t, msg, "dpo needs a reference endpoint")
	require.Contains(t, msg, "duplicate of iterations[0].name")
}

func TestBadValuesTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
		key  string
		want string
	}{
		{"no iterations", "run: r\n", "iterations", "at least one iteration"},
		{"ratio above one", minimal + "selection: {ratio: 1.5}\n", "selection.ratio", "(0, 1]"},
		{"count negative", minimal + "selection: {count: -1}\n", "selection.count", "0 (use ratio) or more"},
		{"unknown reward kind", minimal + "endpoints: {reward: {base_url: http://x:1, kind: magic, model: r}}\n", "endpoints.reward.kind", "classify, pooling, get_reward, judge"},
		{"bad base url", minimal + "endpoints: {policy: {base_url: localhost:8000}}\n", "endpoints.policy.base_url", "http(s) URL"},
		{"bad replica url", minimal + "endpoints: {policy: {base_urls: [http://a:1/v1, a:2]}}\n", "endpoints.policy.base_urls[1]", "http(s) URL"},
		{"replica listed twice", minimal + "endpoints: {policy: {base_urls: [http://a:1/v1, http://a:1/]}}\n", "endpoints.policy.base_urls[1]", "already listed as base_urls[0]"},
		{"wrong type duration", minimal + "worker: {ack_wait: soon}\n", "worker.ack_wait", "duration"},
		{"evolve endpoint missing", minimal + "evolve: {endpoint: judge}\n", "evolve.endpoint", "name of an endpoint"},
		{"first iteration evolved", "iterations: [{name: a, policy_model: m, prompts: {evolved: true}}]\n", "iterations[0].prompts.evolved", "no previous iteration"},
		{"iteration escapes export dir", "iterations: [{name: ../../etc, policy_model: m, prompts: {files: [p]}}]\n", "iterations[0].name", "no path separators"},
		{"absolute iteration name", "iterations: [{name: /tmp/x, policy_model: m, prompts: {files: [p]}}]\n", "iterations[0].name", "no path separators"},
		{"override out of range", "iterations: [{name: a, policy_model: m, prompts: {files: [p]}, overrides: {generation: {samples: 1}}}]\n", "iterations[0].overrides.generation.samples", "at least 2"},
		{"unknown export format", minimal + "export: {formats: [csv]}\n", "export.formats[0]", "jsonl"},
		{"reference model without endpoint", "iterations: [{name: a, policy_model: m, reference_model: r, prompts: {files: [p]}}]\n", "iterations[0].reference_model", "endpoints.reference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := config.Load(writeConfig(t, tt.yaml))
			ps := problems(t, err)
			var found bool
			for _, p := range ps {
				if p.Key == tt.key {
					found = true
					require.Contains(t, p.Message, tt.want)
				}
			}
			require.True(t, found, "no problem for key %s in %v", tt.key, ps)
		})
	}
}

func TestEndpointReplicas(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, minimal+"endpoints: {policy: {base_urls: [http://a:1/v1, http://b:1/v1]}}\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"http://a:1/v1", "http://b:1/v1"}, cfg.Endpoints["policy"].URLs())
	require.Equal(t, []string{"http://127.0.0.1:8000"}, cfg.Endpoints["reward"].URLs(), "base_url alone is one replica")

	t.Setenv("SELFPLAY_ENDPOINTS_REWARD_BASE_URLS", "http://r1:1,http://r2:1")
	cfg, err = config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Equal(t, []string{"http://r1:1", "http://r2:1"}, cfg.Endpoints["reward"].URLs())
}

func TestDPOWithReferenceIsAccepted(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, `
endpoints:
  reference: {base_url: http://127.0.0.1:8001, model: tiny-ref}
scoring: {implicit: dpo, beta: 0.1}
iterations:
  - {name: a, policy_model: m, prompts: {files: [p]}}
`))
	require.NoError(t, err)
	require.Equal(t, "dpo", cfg.Iterations[0].Scoring.Implicit)
	require.Equal(t, 0.1, cfg.Iterations[0].Scoring.Beta)
}

func TestYAMLSyntaxErrorHasLine(t *testing.T) {
	_, err := config.Load(writeConfig(t, "run: demo\ngeneration:\n  samples: [1, 2\n"))
	require.Error(t, err)
	require.Regexp(t, `line \d+`, err.Error())
}

func TestUnreadableFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "missing.yaml"))
	require.Error(t, err)
	require.Contains(t, err.Error(), "missing.yaml")
}

func TestSecretsRedactedAndNeverStored(t *testing.T) {
	const secret = "s3cr3t-pa55"
	t.Setenv("SELFPLAY_DATABASE_URL", "postgres://me:"+secret+"@db:5432/x")
	t.Setenv("MY_POLICY_KEY", secret)
	cfg, err := config.Load(writeConfig(t, minimal+"endpoints: {policy: {base_url: http://x:1/v1, api_key_env: MY_POLICY_KEY}}\n"))
	require.NoError(t, err)
	out, err := cfg.YAML()
	require.NoError(t, err)
	snap, err := cfg.Snapshot()
	require.NoError(t, err)
	for _, b := range [][]byte{out, snap} {
		require.NotContains(t, string(b), secret)
		require.Contains(t, string(b), "MY_POLICY_KEY")
		require.Contains(t, string(b), "me:"+config.Redacted+"@db")
	}
	key, err := config.Secret("endpoints.policy.api_key_env", cfg.Endpoints["policy"].APIKeyEnv)
	require.NoError(t, err)
	require.Equal(t, secret, key)
	_, err = config.Secret("nats.token_env", "SELFPLAY_SURELY_UNSET_VAR")
	require.ErrorContains(t, err, "SELFPLAY_SURELY_UNSET_VAR")
}

func TestYAMLRoundTrips(t *testing.T) {
	cfg, err := config.Load("../examples/selfplay.yaml")
	require.NoError(t, err)
	out, err := cfg.YAML()
	require.NoError(t, err)
	again, err := config.Load(writeConfig(t, string(out)))
	require.NoError(t, err, "printed config must load again:\n%s", out)
	require.Equal(t, cfg.Iterations[1].Generation, again.Iterations[1].Generation)
	require.True(t, strings.Contains(string(out), "ack_wait: 10m0s"))
}
