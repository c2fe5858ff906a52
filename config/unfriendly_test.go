package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// Values of the wrong type are refused with the key, never converted
// silently (samples: 2.7 used to become 2; a number too large for an int
// used to show as -9223372036854775808).
func TestNumbersOfTheWrongKind(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		env  map[string]string
		key  string
		want string
	}{
		{name: "fraction for a whole number", yaml: minimal + "generation: {samples: 2.7}\n", key: "generation.samples", want: "expected a whole number, got 2.7"},
		{name: "too large", yaml: minimal + "generation: {max_tokens: 99999999999999999999999}\n", key: "generation.max_tokens", want: "got 1e+23, which is out of range (at most 9223372036854775807)"},
		{name: "too large in an override", yaml: "iterations:\n  - {name: a, policy_model: m, prompts: {files: [p.jsonl]}, overrides: {generation: {seed: 1e30}}}\n", key: "iterations[0].overrides.generation.seed", want: "out of range"},
		{name: "fraction in an override", yaml: "iterations:\n  - {name: a, policy_model: m, prompts: {files: [p.jsonl]}, overrides: {selection: {count: 0.5}}}\n", key: "iterations[0].overrides.selection.count", want: "expected a whole number, got 0.5"},
		{name: "boolean for a number", yaml: minimal + "generation: {samples: true}\n", key: "generation.samples", want: "expected a whole number, got true"},
		{name: "boolean for a fraction", yaml: minimal + "selection: {ratio: true}\n", key: "selection.ratio", want: "expected a number, got true"},
		{name: "number for a boolean", yaml: minimal + "evolve: {enabled: 1}\n", key: "evolve.enabled", want: "expected true or false, got 1"},
		{name: "fraction from the environment", yaml: minimal, env: map[string]string{"SELFPLAY_GENERATION_SAMPLES": "2.7"}, key: "generation.samples", want: `expected a whole number, got "2.7"`},
		{name: "too large from the environment", yaml: minimal, env: map[string]string{"SELFPLAY_GENERATION_SEED": "99999999999999999999999"}, key: "generation.seed", want: "out of range"},
		{name: "word for a boolean from the environment", yaml: minimal, env: map[string]string{"SELFPLAY_EVOLVE_ENABLED": "yes please"}, key: "evolve.enabled", want: `expected true or false, got "yes please"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := config.Load(writeConfig(t, tc.yaml))
			ps := problems(t, err)
			require.Len(t, ps, 1, "%v", ps)
			require.Equal(t, tc.key, ps[0].Key)
			require.Contains(t, ps[0].Message, tc.want)
			require.NotContains(t, err.Error(), "-9223372036854775808")
		})
	}
}

func TestWholeNumbersStillLoad(t *testing.T) {
	t.Setenv("SELFPLAY_GENERATION_MAX_TOKENS", "2048")
	t.Setenv("SELFPLAY_EVOLVE_ENABLED", "false")
	cfg, err := config.Load(writeConfig(t, minimal+"generation: {samples: 3.0, seed: 9223372036854775807}\nselection: {ratio: 1}\n"))
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Generation.Samples)
	require.Equal(t, int64(9223372036854775807), cfg.Generation.Seed)
	require.Equal(t, 2048, cfg.Generation.MaxTokens)
	require.Equal(t, 1.0, cfg.Selection.Ratio)
	require.False(t, cfg.Evolve.Enabled)
}

func TestScheduleWithAByteOrderMark(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, "\xef\xbb\xbfrun: bom\n"+minimal))
	require.NoError(t, err)
	require.Equal(t, "bom", cfg.Run)
}

// A schedule over MaxScheduleBytes is refused before it is parsed, and an
// endless file is not read to its end.
func TestScheduleSizeIsBounded(t *testing.T) {
	t.Parallel()
	big := "run: big\n" + minimal + "# " + strings.Repeat("x", config.MaxScheduleBytes) + "\n"
	_, err := config.Load(writeConfig(t, big))
	require.ErrorContains(t, err, "larger than 1048576 bytes")
	require.ErrorContains(t, err, "selfplay.yaml")

	justUnder := "run: fits\n" + minimal + "#"
	justUnder += strings.Repeat("x", config.MaxScheduleBytes-len(justUnder))
	cfg, err := config.Load(writeConfig(t, justUnder))
	require.NoError(t, err)
	require.Equal(t, "fits", cfg.Run)

	if _, err := os.Stat("/dev/zero"); err == nil {
		_, err = config.Load("/dev/zero")
		require.ErrorContains(t, err, "larger than 1048576 bytes")
	}
}

// LoadDatabase checks the database and unknown keys only: a schedule that
// holds nothing else loads, and with no file the environment is enough.
func TestLoadDatabase(t *testing.T) {
	cfg, err := config.LoadDatabase(writeConfig(t, "database: {url: \"postgres://a@b/c\"}\n"), true)
	require.NoError(t, err)
	require.Equal(t, "postgres://a@b/c", cfg.Database.URL)

	_, err = config.LoadDatabase(writeConfig(t, "database: {url: \"mysql://a@b/c\"}\ngeneration: {sampels: 3}\n"), true)
	ps := problems(t, err)
	require.Equal(t, []string{"database.url", "generation.sampels"}, keys(ps))

	_, err = config.LoadDatabase(filepath.Join(t.TempDir(), "named.yaml"), true)
	require.ErrorContains(t, err, "no such file", "a named file must exist")

	t.Setenv("SELFPLAY_DATABASE_URL", "postgres://env@db/x")
	cfg, err = config.LoadDatabase(filepath.Join(t.TempDir(), "selfplay.yaml"), false)
	require.NoError(t, err, "the default file may be missing")
	require.Equal(t, "postgres://env@db/x", cfg.Database.URL)
	require.Empty(t, cfg.Path)
}
