package config_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// Bad input the other config tests leave out: endpoints that are missing
// or empty, and files that cannot be read. Each error names what is wrong.

func TestMissingEndpoint(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		key  string
		want string
	}{
		{
			name: "policy base_url empty",
			yaml: minimal + "endpoints: {policy: {base_url: \"\"}}\n",
			key:  "endpoints.policy.base_url", want: `expected an http(s) URL, got ""`,
		},
		{
			name: "reward base_url emptied from the environment",
			yaml: minimal,
			env:  map[string]string{"SELFPLAY_ENDPOINTS_REWARD_BASE_URL": ""},
			key:  "endpoints.reward.base_url", want: "expected an http(s) URL",
		},
		{
			name: "reward model missing",
			yaml: minimal + "endpoints: {reward: {base_url: \"http://x:1\", model: \"\"}}\n",
			key:  "endpoints.reward.model", want: "required",
		},
		{
			name: "evolve endpoint not configured",
			yaml: minimal + "evolve: {endpoint: evolver}\n",
			key:  "evolve.endpoint", want: "evolver",
		},
		{
			name: "dpo without a reference endpoint",
			yaml: minimal + "scoring: {implicit: dpo}\n",
			key:  "scoring.implicit", want: "reference endpoint",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// t.Setenv forbids t.Parallel: these run one by one.
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := config.Load(writeConfig(t, tc.yaml))
			ps := problems(t, err)
			var found bool
			for _, p := range ps {
				if p.Key == tc.key {
					found = true
					require.Contains(t, p.Message, tc.want)
				}
			}
			require.True(t, found, "no problem for %s in %v", tc.key, ps)
		})
	}
}

func TestUnreadableConfigFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling.yaml")
	require.NoError(t, os.Symlink(filepath.Join(dir, "gone.yaml"), dangling))
	binary := filepath.Join(dir, "binary.yaml")
	require.NoError(t, os.WriteFile(binary, []byte("\xff\xfe\x00\x01 not yaml\x00"), 0o600))
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing file", filepath.Join(dir, "missing.yaml"), "no such file or directory"},
		{"a directory", dir, "is a directory"},
		{"dangling symlink", dangling, "no such file or directory"},
		{"binary bytes", binary, "parse config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Load(tc.path)
			require.Error(t, err)
			require.Nil(t, cfg)
			require.Contains(t, err.Error(), tc.path, "the error names the file")
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestYAMLSyntaxErrorNamesTheLine(t *testing.T) {
	t.Parallel()
	path := writeConfig(t, "run: demo\ngeneration:\n  samples: 5: 6\n")
	_, err := config.Load(path)
	require.Error(t, err)
	require.Contains(t, err.Error(), path)
	require.Contains(t, err.Error(), "line 3: mapping values are not allowed")
}
