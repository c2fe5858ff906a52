package worker

import (
	"errors"
	"fmt"
	"time"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/store"
)

// outcome is what a task handler returns: nil (done, committed), a retry
// later, or a permanent failure.
type retryError struct {
	after time.Duration
	err   error
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// Retry asks for the task to be delivered again after the delay (0 lets
// the worker choose a backoff from the delivery count).
func Retry(after time.Duration, err error) error { return &retryError{after: after, err: err} }

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks the task failed with err's text as the reason; it is not
// retried.
func Permanent(err error) error { return &permanentError{err: err} }

// Permanentf is Permanent(fmt.Errorf(...)).
func Permanentf(format string, args ...any) error { return Permanent(fmt.Errorf(format, args...)) }

// Ack is the part of a JetStream message the adapter needs; a
// jetstream.Msg satisfies it.
type Ack interface {
	Ack() error
	NakWithDelay(time.Duration) error
	Term() error
}

// settlement is what was done with a message, for logs and tests.
type settlement string

const (
	settledAck  settlement = "ack"
	settledNak  settlement = "nak"
	settledTerm settlement = "term"
)

// backoff is the redelivery delay after the given number of deliveries:
// 2s, 4s, 8s, 16s … capped at two minutes, so with the default five
// deliveries (and the clients' own retries within each) a task rides out
// an endpoint or database outage of well over half a minute.
func backoff(delivered uint64) time.Duration {
	d := 2 * time.Second << min(delivered-1, 6)
	return min(d, 2*time.Minute)
}

// decide maps a handler's result to what happens to the message. The
// failed callback records a permanent failure (or the last delivery's
// transient one) before the message is terminated; if it cannot, the
// message is nak'ed so the failure is recorded on a later delivery.
func decide(err error, delivered, maxDeliver uint64, fail func(reason string) error) (settlement, time.Duration, error) {
	if err == nil {
		return settledAck, 0, nil
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		if ferr := fail(perm.Error()); ferr != nil {
			return settledNak, backoff(delivered), fmt.Errorf("record failure: %w", ferr)
		}
		return settledTerm, 0, nil
	}
	delay := backoff(delivered)
	var retry *retryError
	if errors.As(err, &retry) && retry.after > 0 {
		delay = retry.after
	}
	if maxDeliver > 0 && delivered >= maxDeliver {
		reason := fmt.Sprintf("gave up after %d deliveries: %v", delivered, err)
		if ferr := fail(reason); ferr != nil {
			return settledNak, delay, fmt.Errorf("record failure: %w", ferr)
		}
		return settledTerm, 0, nil
	}
	return settledNak, delay, nil
}

// settle applies a decision to the message; its error is the broker's.
func settle(msg Ack, s settlement, delay time.Duration) error {
	switch s {
	case settledAck:
		return msg.Ack()
	case settledTerm:
		return msg.Term()
	default:
		return msg.NakWithDelay(delay)
	}
}

// failure is the stored form of a task's failure: the reason, and the
// endpoint and HTTP status when an endpoint's error caused it.
func failure(reason string, err error) store.Failure {
	f := store.Failure{Reason: reason}
	var lerr *llm.Error
	if errors.As(err, &lerr) {
		f.Endpoint, f.Status = lerr.Endpoint, lerr.Status
	}
	return f
}
