package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestConfigCheck(t *testing.T) {
	const secret = "pa55-planted-in-url"
	t.Setenv("SELFPLAY_DATABASE_URL", "postgres://me:"+secret+"@db:5432/x")
	out, err := runCLI(t, "config", "check", "-c", "../examples/selfplay.yaml")
	require.NoError(t, err)
	require.Contains(t, out, "samples: 5")
	require.Contains(t, out, "api_key_env: SELFPLAY_POLICY_API_KEY")
	require.Contains(t, out, "me:xxxxx@db:5432")
	require.NotContains(t, out, secret)

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("generaton: {samples: 3}\nselection: {ratio: 2, metric: best}\niterations: [{name: a, policy_model: m, prompts: {files: [p]}}]\n"), 0o600))
	_, err = runCLI(t, "config", "check", "-c", bad)
	require.Error(t, err)
	for _, want := range []string{"generaton: unknown key", "selection.ratio", "selection.metric", "3 problem(s)"} {
		require.Contains(t, err.Error(), want)
	}
}
