package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// transient reports whether err comes from PostgreSQL or NATS being
// unavailable — a restart, a dropped connection, a timeout — rather than
// from the work itself. Stages are idempotent, so such a stage is simply
// run again once the service is back.
func transient(err error) bool {
	var perm *permanentError
	if err == nil || errors.Is(err, context.Canceled) || errors.As(err, &perm) || errors.Is(err, fs.ErrNotExist) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"), // connection exceptions
			pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03", // shutdown, crash, cannot connect now
			pgErr.Code == "53300",                        // too many connections
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		}
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.Is(err, pgconn.ErrConnClosed), pgconn.Timeout(err), errors.As(err, &connectErr), errors.As(err, &netErr),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrConnectionClosed),
		errors.Is(err, jetstream.ErrServerShutdown), errors.Is(err, jetstream.ErrConsumerLeadershipChanged),
		errors.Is(err, jetstream.ErrNoHeartbeat):
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return jetStreamUnavailable(apiErr)
	}
	// Never the error's text: a hook's output or an endpoint's reply may
	// hold any words.
	return false
}

// JetStream's error codes for "not now" (nats-server's server/errors.json;
// nats.go names constants for none of them).
const (
	errCodeClusterNoPeers        jetstream.ErrorCode = 10005 // no suitable peers for placement: too few nodes up
	errCodeClusterNotAvailable   jetstream.ErrorCode = 10008 // JetStream system temporarily unavailable: no quorum
	errCodeClusterNotLeader      jetstream.ErrorCode = 10009 // JetStream cluster can not handle request: an election
	errCodeInsufficientResources jetstream.ErrorCode = 10023 // insufficient resources: storage full, for now
	errCodeStreamOffline         jetstream.ErrorCode = 10118 // stream is offline (nats-server 2.10 and later)
)

// jetStreamUnavailable reports whether a JetStream API error says the
// system cannot answer now — a cluster without quorum, a leader election,
// storage that another deployment's backlog has filled — rather than that
// the request is wrong. It reads the error's typed codes: the HTTP-like
// status 503 (service unavailable), and the err_codes above, which some
// servers send with a 500.
func jetStreamUnavailable(e *jetstream.APIError) bool {
	switch e.ErrorCode {
	case errCodeClusterNoPeers, errCodeClusterNotAvailable, errCodeClusterNotLeader,
		errCodeInsufficientResources, errCodeStreamOffline:
		return true
	}
	return e.Code == 503
}

// permanentError marks a failure of the work itself (a bad prompts file,
// say) that no waiting can mend, whatever its cause looks like.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// riding runs f until it succeeds, fails for a reason other than an
// outage, or the outage outlasts orchestrator.outage_timeout. Between
// tries it waits with exponential backoff. (The run's lock is watched
// apart from this: a database restart that ends its session cancels ctx.)
func (o *Orchestrator) riding(ctx context.Context, what string, f func() error) error {
	deadline := time.Now().Add(o.cfg.Orchestrator.OutageTimeout)
	delay := 250 * time.Millisecond
	for {
		err := f()
		if err == nil || ctx.Err() != nil || !transient(err) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: services unavailable for longer than orchestrator.outage_timeout %s: %w", what, o.cfg.Orchestrator.OutageTimeout, err)
		}
		o.log.WarnContext(ctx, "service unavailable; will retry", "what", what, "after", delay, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
