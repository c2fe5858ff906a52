package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errCodeStreamSubjectOverlap is JetStream's error code for a stream whose
// subjects overlap another stream's (JSStreamSubjectOverlapErr in
// nats-server's server/errors.json); nats.go names no constant for it.
const errCodeStreamSubjectOverlap jetstream.ErrorCode = 10065

// explainStreamError turns the typed errors of creating the stream into
// what to do: JetStream off on the server (a NATS 2.9 server without -js
// has no responders on the JetStream API, which AccountInfo reports as
// jetstream.ErrJetStreamNotEnabled) or for the account, and subjects taken
// by another stream. Other errors come back as they are.
func explainStreamError(ctx context.Context, js jetstream.JetStream, name string, replicas int, err error) error {
	if errors.Is(err, nats.ErrNoResponders) {
		if _, aerr := js.AccountInfo(ctx); aerr != nil {
			err = errors.Join(aerr, err)
		}
	}
	switch {
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("create stream %s: JetStream is off on the NATS server: start nats-server with -js (or jetstream {} in its configuration): %w", name, err)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("create stream %s: JetStream is off for this account on the NATS server: enable it in the account's configuration (jetstream: enabled): %w", name, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStreamSubjectOverlap {
		subject := streamSubjects(name)
		owner, oerr := js.StreamNameBySubject(ctx, subject)
		if oerr != nil || owner == "" {
			owner = "another stream"
		} else {
			owner = fmt.Sprintf("stream %q", owner)
		}
		return fmt.Errorf("create stream %s: its subjects %s are already taken by %s; subjects are the lower-cased stream name, so stream names that differ only in case collide: choose another nats.stream: %w", name, subject, owner, err)
	}
	return fmt.Errorf("create stream %s (nats.replicas %d): %w", name, replicas, err)
}
