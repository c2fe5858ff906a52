package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OpenWaiting is Open for a service that starts alongside PostgreSQL (as
// docker compose starts them): while the server is not up yet, it tries
// again with backoff for up to wait, logging each time what it waits for.
// Not up yet means, from the connection's error: refused or reset (nothing
// listens on the port yet, as while the official postgres image's
// first-start server listens on its Unix socket only), a Unix socket that
// does not exist yet, or the server answering "cannot connect now"
// (SQLSTATE 57P03: starting up, shutting down, in recovery). Any other
// failure — a refused login, a missing database, an unknown host, a bad
// URL — is returned at once: waiting cannot mend it. A zero wait tries
// once.
func OpenWaiting(ctx context.Context, dbURL string, wait time.Duration, log *slog.Logger) (*pgxpool.Pool, error) {
	deadline := time.Now().Add(wait)
	delay := 250 * time.Millisecond
	for tries := 1; ; tries++ {
		pool, err := Open(ctx, dbURL)
		if err == nil {
			if tries > 1 {
				log.InfoContext(ctx, "PostgreSQL is up", "tries", tries)
			}
			return pool, nil
		}
		left := time.Until(deadline)
		if !NotUpYet(err) || ctx.Err() != nil {
			return nil, err
		}
		if left <= 0 {
			if wait > 0 {
				return nil, fmt.Errorf("waited %s (database.connect_wait) for PostgreSQL to come up: %w", wait, err)
			}
			return nil, err
		}
		d := min(delay, left)
		log.WarnContext(ctx, "waiting for PostgreSQL to come up", "err", err, "retry_in", d.Round(time.Millisecond),
			"gives_up_in", left.Round(time.Second))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(d):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// NotUpYet reports whether err, from connecting to PostgreSQL, says the
// server is not up yet (see OpenWaiting), judged from the error's types:
// the system call's error number or the server's SQLSTATE.
func NotUpYet(err error) bool {
	var ping *pingError
	if !errors.As(err, &ping) {
		return false // the URL, not the server
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P03" // cannot_connect_now
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return false // an unknown host stays unknown
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ENOENT) // a Unix socket not made yet
}

// pingError marks a failure to reach or log in to the server, as opposed to
// a configuration pgx refused before trying.
type pingError struct{ err error }

func (e *pingError) Error() string { return e.err.Error() }
func (e *pingError) Unwrap() error { return e.err }
