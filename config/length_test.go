package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// TestLengthKeys: scoring.length_control and scoring.length_drift_warn
// default to none and 0.2, take per-iteration overrides, and bad values
// are errors naming the key (the iteration's override key too).
func TestLengthKeys(t *testing.T) {
	t.Parallel()
	c, err := config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Equal(t, "none", c.Scoring.LengthControl)
	require.Equal(t, 0.2, c.Scoring.LengthDriftWarn)

	c, err = config.Load(writeConfig(t, `run: t
scoring: {length_control: residual, length_drift_warn: 0}
iterations:
  - {name: a, policy_model: m, prompts: {files: [p.jsonl]}}
  - {name: b, policy_model: m, prompts: {evolved: true}, overrides: {scoring: {length_control: none}}}
`))
	require.NoError(t, err)
	require.Equal(t, "residual", c.Iterations[0].Scoring.LengthControl)
	require.Equal(t, "none", c.Iterations[1].Scoring.LengthControl)
	require.Equal(t, 0.0, c.Iterations[1].Scoring.LengthDriftWarn, "off, and not overridden")

	for _, tc := range []struct{ yaml, key, want string }{
		{minimal + "scoring: {length_control: penalty}\n", "scoring.length_control", `expected one of none, residual, got "penalty"`},
		{minimal + "scoring: {length_drift_warn: -0.1}\n", "scoring.length_drift_warn", "expected a fraction of 0 (off) or more"},
		{minimal + "scoring: {length_drift_warn: .nan}\n", "scoring.length_drift_warn", "got NaN"},
		{`run: t
iterations:
  - {name: a, policy_model: m, prompts: {files: [p.jsonl]}, overrides: {scoring: {length_control: Residual}}}
`, "iterations[0].overrides.scoring.length_control", `got "Residual"`},
	} {
		_, err := config.Load(writeConfig(t, tc.yaml))
		found := false
		for _, p := range problems(t, err) {
			if p.Key == tc.key {
				require.Contains(t, p.Message, tc.want)
				found = true
			}
		}
		require.True(t, found, "no problem for %s in %v", tc.key, err)
	}
}
