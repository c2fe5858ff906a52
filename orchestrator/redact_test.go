package orchestrator_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestSecretsInURLsAreRedacted puts secrets where users put them although
// the README says not to — the user info and the api-key / token query
// parameters of endpoint URLs, and a URL among the train hook's arguments —
// and requires that neither `config check`, nor the orchestrator's log,
// nor the configuration stored in runs.config (which the analyst role can
// read) shows one of them.
func TestSecretsInURLsAreRedacted(t *testing.T) {
	t.Parallel()
	dbURL := storetest.NewDatabase(t)
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	secrets := []string{"s3cret-userinfo", "s3cret-apikey", "s3cret-token", "s3cret-hook", "s3cret-user-only"}
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
run: redacted
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://bob:s3cret-userinfo@%s/v1?api-key=s3cret-apikey", timeout: 1s, max_retries: 1}
  reward: {base_url: "http://%s/?token=s3cret-token&model=r", kind: classify, model: reward, timeout: 1s, max_retries: 1}
  reference: {base_url: "https://s3cret-user-only@%s/v1", model: ref}
hooks: {train: [trainer, "--push=https://alice:s3cret-hook@hub.example/repo", "{dataset}"]}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
`, dbURL, nats.URL, nats.Stream, selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t), filepath.Join(dir, "missing.jsonl")), 0o600))

	check, err := exec.Command(selfplaytest.Binary(t), "config", "check", "-c", cfgPath).CombinedOutput()
	require.NoError(t, err, "%s", check)
	require.Contains(t, string(check), "http://bob:xxxxx@")
	require.Contains(t, string(check), "api-key=xxxxx")
	require.Contains(t, string(check), "https://alice:xxxxx@hub.example/repo")

	run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", cfgPath, "--log-level", "debug")
	require.Error(t, run.Wait(30*time.Second), "the prompts file is missing, so the run stops:\n%s", run.Tail(20))

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	var stored string
	require.NoError(t, pool.QueryRow(ctx, `SELECT config::text FROM runs WHERE name = 'redacted'`).Scan(&stored))
	require.Contains(t, stored, "token=xxxxx")
	for _, s := range secrets {
		require.NotContains(t, string(check), s, "config check")
		require.NotContains(t, run.Output(), s, "orchestrator log")
		require.NotContains(t, stored, s, "runs.config")
	}
}
