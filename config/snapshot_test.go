package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// The stored snapshot gives back the configuration it was made from: the
// sections, the iterations with their overrides, and the same hash.
func TestFromSnapshotRoundTrips(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, `
run: snap
endpoints: {policy: {base_url: "https://bob:pw@llm/v1?api-key=k"}}
generation: {seed: 9223372036854775807, temperature: 0.7}
export: {dir: /data/out, formats: [jsonl, parquet]}
hooks: {train: [t, "{dataset}"], wait_for_model: 90s}
iterations:
  - {name: a, policy_model: m0, prompts: {files: [p.jsonl]}}
  - {name: b, policy_model: m1, prompts: {evolved: true}, overrides: {selection: {ratio: 0.25}}}
`))
	require.NoError(t, err)
	snap, err := cfg.Snapshot()
	require.NoError(t, err)
	back, err := config.FromSnapshot(snap)
	require.NoError(t, err)
	require.Equal(t, cfg.Hash(), back.Hash())
	require.Equal(t, "/data/out", back.Export.Dir)
	require.Equal(t, []string{"jsonl", "parquet"}, back.Export.Formats)
	require.Equal(t, int64(9223372036854775807), back.Generation.Seed)
	require.Equal(t, 0.25, back.Iterations[1].Selection.Ratio)
	require.Equal(t, 0.4, back.Iterations[0].Selection.Ratio)
	require.Equal(t, cfg.Iterations[1].Settings(), back.Iterations[1].Settings())
	require.Equal(t, "https://bob:xxxxx@llm/v1?api-key=xxxxx", back.Endpoints["policy"].BaseURL, "what was stored is redacted")
}
