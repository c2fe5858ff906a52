package store_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// logLines is a log destination a test can read while it is written.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// count is how many lines contain s.
func (l *logLines) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

const waitingLine = "waiting for PostgreSQL to come up"

// TestOpenWaitingForAServerThatStartsLate replays the compose first start:
// nothing listens on the port, then the official image's temporary server
// listens on its Unix socket only, then the real server on TCP. OpenWaiting
// keeps waiting, saying so, until it can log in (the server checks the
// password).
func TestOpenWaitingForAServerThatStartsLate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := storetest.NewServer(t, "late-pw")
	var logs logLines
	log := slog.New(slog.NewTextHandler(&logs, nil))

	done := make(chan error, 1)
	go func() {
		pool, err := store.OpenWaiting(ctx, srv.URL, 5*time.Minute, log)
		if err == nil {
			var one int
			err = pool.QueryRow(ctx, `SELECT 1`).Scan(&one)
			pool.Close()
		}
		done <- err
	}()
	waitForLines := func(n int) {
		t.Helper()
		require.Eventually(t, func() bool { return logs.count(waitingLine) >= n }, 2*time.Minute, 20*time.Millisecond,
			"OpenWaiting says it waits (%d times): %s", n, logs.String())
	}
	waitForLines(1)
	require.Contains(t, logs.String(), "connection refused")
	require.NotContains(t, logs.String(), "late-pw", "the password stays out of the log")

	srv.StartSocketOnly()
	seen := logs.count(waitingLine)
	waitForLines(seen + 1) // a try made while the socket-only server ran
	select {
	case err := <-done:
		t.Fatalf("OpenWaiting returned while PostgreSQL listened on its socket only: %v", err)
	default:
	}
	srv.Stop()
	srv.Start()
	select {
	case err := <-done:
		require.NoError(t, err, logs.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("OpenWaiting did not return after the server started: %s", logs.String())
	}
	require.Contains(t, logs.String(), "PostgreSQL is up")
}

// TestOpenWaitingFailsAtOnce: a refused login, a missing database or a bad
// URL is no server still starting; OpenWaiting returns it without waiting.
func TestOpenWaitingFailsAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := storetest.StartPasswordServer(t)
	at := func(edit func(u *url.URL)) string {
		u, err := url.Parse(srv.URL)
		require.NoError(t, err)
		edit(u)
		return u.String()
	}
	tests := []struct {
		name  string
		url   string
		code  string // the server's SQLSTATE, when it answered
		wants string
	}{
		{"wrong password", at(func(u *url.URL) { u.User = url.UserPassword("postgres", "not-the-password") }), "28P01", `refused user "postgres"`},
		{"no password", at(func(u *url.URL) { u.User = url.User("postgres") }), "", `refused user "postgres"`},
		{"missing database", at(func(u *url.URL) { u.Path = "/no_such_database" }), "3D000", "is not answering"},
		{"bad URL", "postgres://postgres@127.0.0.1:notaport/x", "", "database.url"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs logLines
			_, err := store.OpenWaiting(ctx, tc.url, 10*time.Minute, slog.New(slog.NewTextHandler(&logs, nil)))
			require.Error(t, err)
			require.False(t, store.NotUpYet(err), "%v", err)
			require.Zero(t, logs.count(waitingLine), "no waiting for %s: %s", tc.name, logs.String())
			require.ErrorContains(t, err, tc.wants)
			require.NotContains(t, err.Error(), srv.Password)
			if tc.code != "" {
				var pgErr *pgconn.PgError
				require.True(t, errors.As(err, &pgErr), "%v", err)
				require.Equal(t, tc.code, pgErr.Code)
			}
		})
	}

	// The case it does wait for, tried once when told not to wait.
	var logs logLines
	_, err := store.OpenWaiting(ctx, at(func(u *url.URL) { u.Host = "127.0.0.1:1" }), 0, slog.New(slog.NewTextHandler(&logs, nil)))
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.True(t, store.NotUpYet(err))
	require.Zero(t, logs.count(waitingLine))
}
