package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestServicesWaitForPostgreSQL: `selfplay migrate` and `selfplay worker`,
// started before their PostgreSQL (a private one checking passwords, as in
// compose) accepts TCP connections, say that they wait and carry on once
// it does. The server starts only after the process has said so, so the
// order is certain, whatever the machine's speed.
func TestServicesWaitForPostgreSQL(t *testing.T) {
	t.Parallel()
	srv := storetest.NewServer(t, "wait-pw")
	nats := bustest.NewStream(t)
	cfg := filepath.Join(t.TempDir(), "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`run: waiting
nats: {url: %q, stream: %s}
iterations: [{name: a, policy_model: m, prompts: {files: [p.jsonl]}}]
`, nats.URL, nats.Stream)), 0o600))
	// The password comes from the environment, as in compose.
	env := []string{"SELFPLAY_DATABASE_URL=" + srv.URL, "SELFPLAY_DATABASE_CONNECT_WAIT=10m"}
	const waiting = "waiting for PostgreSQL to come up"
	saysWaiting := func(p *selfplaytest.Proc, times int) {
		t.Helper()
		require.Eventually(t, func() bool { return strings.Count(p.Output(), waiting) >= times || p.Exited() },
			2*time.Minute, 20*time.Millisecond, "%s says it waits", p.Name)
		require.False(t, p.Exited(), "%s gave up: %s", p.Name, p.Output())
	}

	migrate := selfplaytest.Start(t, "migrate", env, "migrate", "-c", cfg)
	saysWaiting(migrate, 1)
	require.Contains(t, migrate.Output(), "connection refused")
	// The official image's first start: its temporary server listens on
	// the Unix socket only.
	srv.StartSocketOnly()
	saysWaiting(migrate, strings.Count(migrate.Output(), waiting)+1)
	srv.Stop()
	srv.Start()
	require.NoError(t, migrate.Wait(2*time.Minute), migrate.Output())
	require.Contains(t, migrate.Output(), "PostgreSQL is up")
	require.Contains(t, migrate.Output(), "schema is at version")

	srv.Stop()
	worker := selfplaytest.Start(t, "worker", env, "worker", "-c", cfg)
	saysWaiting(worker, 1)
	srv.Start()
	// Past PostgreSQL the worker binds its deployment's consumer: with no
	// orchestrator here yet it says it waits for one, which is as far as a
	// worker gets without a run.
	require.Eventually(t, func() bool {
		out := worker.Output()
		return strings.Contains(out, "worker started") || strings.Contains(out, "waiting for the orchestrator") || worker.Exited()
	}, 2*time.Minute, 20*time.Millisecond)
	require.Contains(t, worker.Output(), "PostgreSQL is up")
	require.False(t, worker.Exited(), worker.Output())
	require.NoError(t, worker.Signal(syscall.SIGTERM))
	require.NoError(t, worker.Wait(time.Minute), worker.Output())
	for _, p := range []*selfplaytest.Proc{migrate, worker} {
		require.NotContains(t, p.Output(), "wait-pw", "%s logs no password", p.Name)
	}

	// A wrong password is no server starting up: the worker fails at once
	// (it does not say it waits) and names the refusal.
	bad := selfplaytest.Start(t, "worker-wrong-password",
		[]string{"SELFPLAY_DATABASE_URL=" + strings.Replace(srv.URL, "wait-pw", "not-it", 1), "SELFPLAY_DATABASE_CONNECT_WAIT=10m"},
		"worker", "-c", cfg)
	require.Error(t, bad.Wait(2*time.Minute))
	require.Contains(t, bad.Output(), "SQLSTATE 28P01")
	require.NotContains(t, bad.Output(), waiting)
}
