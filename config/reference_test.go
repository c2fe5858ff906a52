package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// TestReferenceModelDefaultsToTheEndpoints: with scoring.implicit dpo and
// only endpoints.reference.model set, every iteration is scored by that
// model (no iteration got a reference_model, so no pair had a DPO margin and
// the run exported empty datasets); an iteration's own reference_model wins.
func TestReferenceModelDefaultsToTheEndpoints(t *testing.T) {
	cfg, err := config.Load(writeConfig(t, `
endpoints:
  reference: {base_url: http://127.0.0.1:8001, model: tiny-ref}
scoring: {implicit: dpo}
iterations:
  - {name: a, policy_model: m, prompts: {files: [p]}}
  - {name: b, policy_model: m, reference_model: other-ref, prompts: {files: [p]}}
`))
	require.NoError(t, err)
	require.Equal(t, "tiny-ref", cfg.Iterations[0].ReferenceModel)
	require.Equal(t, "tiny-ref", cfg.Iterations[0].Settings().ReferenceModel, "stored with the iteration")
	require.Equal(t, "other-ref", cfg.Iterations[1].ReferenceModel)

	cfg, err = config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Empty(t, cfg.Iterations[0].ReferenceModel, "no reference endpoint, no reference model")
}
