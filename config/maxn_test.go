package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
)

// endpoints.<name>.max_n: 0 (no limit) by default, a positive limit
// accepted, a negative one named.
func TestEndpointMaxN(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(writeConfig(t, minimal))
	require.NoError(t, err)
	require.Zero(t, cfg.Endpoints["policy"].MaxN)

	cfg, err = config.Load(writeConfig(t, minimal+"endpoints: {policy: {base_url: \"http://x:1\", max_n: 4}}\n"))
	require.NoError(t, err)
	require.Equal(t, 4, cfg.Endpoints["policy"].MaxN)

	_, err = config.Load(writeConfig(t, minimal+"endpoints: {policy: {base_url: \"http://x:1\", max_n: -2}}\n"))
	ps := problems(t, err)
	require.Len(t, ps, 1)
	require.Equal(t, "endpoints.policy.max_n", ps[0].Key)
	require.Contains(t, ps[0].Message, "got -2")
}
