package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// FuzzLoad writes arbitrary bytes as a schedule file and loads it. Load
// never panics; a refusal is an error naming the file, and a *config.Error
// lists problems that each name a key or say what is wrong; an accepted
// schedule prints (config check) as YAML that loads again to the same
// snapshot. Run it with
//
//	go test ./config -run '^$' -fuzz '^FuzzLoad$' -fuzztime 30s
func FuzzLoad(f *testing.F) {
	example, err := os.ReadFile("../examples/selfplay.yaml")
	require.NoError(f, err)
	f.Add(example)
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "generation: {samples: 1, top_p: 1.5, temperature: hot}\nselection: {metric: vibes}\n"))
	f.Add([]byte(minimal + "endpoints: {policy: {base_url: \"\"}, evolver: {base_url: \"http://x:1\", kind: judge}}\n"))
	f.Add([]byte("iterations: [{name: ../x, policy_model: m, prompts: {evolved: true}, overrides: {generation: {samples: 9}, export: {}}}]\n"))
	f.Add([]byte("run: demo\ngeneration:\n  samples: 5: 6\n"))
	f.Add([]byte("iterations: &a [*a]\n"))
	f.Add([]byte("\xff\xfe\x00"))
	f.Add([]byte{})
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.yaml")
		require.NoError(t, os.WriteFile(path, data, 0o600))
		cfg, err := config.Load(path)
		if err != nil {
			require.Nil(t, cfg)
			require.Contains(t, err.Error(), path, "a refusal names the file")
			var cerr *config.Error
			if errors.As(err, &cerr) {
				require.NotEmpty(t, cerr.Problems)
				for _, p := range cerr.Problems {
					require.NotEmpty(t, p.Key+p.Message)
				}
			}
			return
		}
		out, err := cfg.YAML()
		require.NoError(t, err)
		again := filepath.Join(dir, "again.yaml")
		require.NoError(t, os.WriteFile(again, out, 0o600))
		cfg2, err := config.Load(again)
		require.NoError(t, err, "config check output must load again:\n%s", out)
		snap1, err := cfg.Snapshot()
		require.NoError(t, err)
		snap2, err := cfg2.Snapshot()
		require.NoError(t, err)
		require.Equal(t, emptyAsNull(t, snap1), emptyAsNull(t, snap2))
	})
}

// emptyAsNull decodes a snapshot with empty lists and maps as nil: a list
// left out of a file (null) prints as [] and loads back as an empty list,
// which means the same.
func emptyAsNull(t *testing.T, snap []byte) any {
	var v any
	require.NoError(t, json.Unmarshal(snap, &v))
	var walk func(any) any
	walk = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			if len(x) == 0 {
				return nil
			}
			for k, e := range x {
				x[k] = walk(e)
			}
		case []any:
			if len(x) == 0 {
				return nil
			}
			for i, e := range x {
				x[i] = walk(e)
			}
		}
		return v
	}
	return walk(v)
}
