package bus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/selfplaytest"
)

// startServerWithoutJetStream starts a private nats-server without -js.
func startServerWithoutJetStream(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(bustest.ServerBinary()); err != nil {
		t.Fatalf("nats-server not found at %s: install Debian's nats-server package or set SELFPLAY_TEST_NATS_SERVER", bustest.ServerBinary())
	}
	port := selfplaytest.FreePort(t)
	cmd := exec.Command(bustest.ServerBinary(), "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "nats-server did not start")
	return fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// JetStream off on the server, or for the account, is said in those words
// and kept as nats.go's typed error, not "no responders available".
func TestJetStreamOff(t *testing.T) {
	// t.Setenv forbids t.Parallel.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	dir := t.TempDir()
	conf := filepath.Join(dir, "accounts.conf")
	require.NoError(t, os.WriteFile(conf, []byte("accounts {\n  NOJS { users: [{user: nojs, password: nojs}] }\n}\n"), 0o600))
	t.Setenv("TEST_NOJS_PASSWORD", "nojs")
	tests := []struct {
		name string
		cfg  config.NATS
		want string
		is   error
	}{
		{name: "server", cfg: config.NATS{URL: startServerWithoutJetStream(t)}, want: "JetStream is off on the NATS server: start nats-server with -js", is: jetstream.ErrJetStreamNotEnabled},
		{name: "account", cfg: config.NATS{URL: bustest.StartServer(t, "-c", conf).URL, User: "nojs", PasswordEnv: "TEST_NOJS_PASSWORD"}, want: "JetStream is off for this account", is: jetstream.ErrJetStreamNotEnabledForAccount},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nc, js, err := bus.Connect(tc.cfg, "test", log)
			require.NoError(t, err)
			defer nc.Close()
			_, err = bus.EnsureStream(ctx, js, bus.StreamOptions{Name: "NOJS", Deployment: "test", AckWait: time.Minute, MaxDeliver: 2})
			require.ErrorIs(t, err, tc.is)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Two stream names that differ only in case would share subjects: the
// second is refused with the reason and the name of the first.
func TestStreamNamesDifferingOnlyInCase(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv := bustest.StartServer(t)
	nc, js, err := bus.Connect(config.NATS{URL: srv.URL}, "test", log)
	require.NoError(t, err)
	defer nc.Close()
	_, err = bus.EnsureStream(ctx, js, bus.StreamOptions{Name: "CaseTest", Deployment: "test", AckWait: time.Minute, MaxDeliver: 2})
	require.NoError(t, err)
	_, err = bus.EnsureStream(ctx, js, bus.StreamOptions{Name: "CASETEST", Deployment: "test", AckWait: time.Minute, MaxDeliver: 2})
	require.ErrorContains(t, err, `create stream CASETEST: its subjects casetest.tasks.> are already taken by stream "CaseTest"`)
	require.ErrorContains(t, err, "choose another nats.stream")
	var apiErr *jetstream.APIError
	require.ErrorAs(t, err, &apiErr, "the typed error is kept")
}
