package llm

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Error is a failed call to an endpoint. It says which endpoint and model
// failed, the HTTP status if one arrived, a reason a person can act on, and
// whether retrying later can help. The API key never appears in it.
type Error struct {
	// Endpoint is Endpoint.Name ("policy", "reward", "reference").
	Endpoint string
	// Model is the model of the failed request, empty when unknown.
	Model string
	// Path is the route, e.g. /v1/chat/completions.
	Path string
	// Status is the HTTP status of the last attempt, 0 when none arrived.
	Status int
	// Reason says what went wrong, e.g. "server returned no log-probs".
	Reason string
	// Param is the request field an error reply names in its structured
	// form (the OpenAI error object's "param", which vLLM fills for
	// validation errors), empty when it names none.
	Param string
	// Permanent is true when retrying the same request cannot succeed
	// (bad request, unknown model, missing capability, malformed body after
	// retries). Transient errors (429, 5xx, timeouts, connection errors) are
	// returned only after the client's own retries ran out.
	Permanent bool
	// Attempts is the number of HTTP attempts made.
	Attempts int
	// RetryAfter is the server's last Retry-After hint, 0 when none.
	RetryAfter time.Duration
	// Canceled is true when the caller's context ended the call; such an
	// error is neither permanent nor transient, and Err wraps the context's
	// error.
	Canceled bool
	// Err is the underlying error, if any.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "llm: %s endpoint", e.Endpoint)
	if e.Model != "" {
		fmt.Fprintf(&b, " (model %q)", e.Model)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " %s", e.Path)
	}
	b.WriteString(": ")
	if e.Status != 0 {
		fmt.Fprintf(&b, "status %d: ", e.Status)
	}
	b.WriteString(e.Reason)
	if e.Err != nil && !strings.Contains(e.Reason, e.Err.Error()) {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// IsPermanent reports whether err is an *Error that retrying cannot fix.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Permanent
}

// IsTransient reports whether err is an *Error that may succeed when the
// work is retried later (the client's own retries already ran out). A call
// ended by the caller's context is neither transient nor permanent: check
// the context.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && !e.Permanent && !e.Canceled
}

// RetryAfterOf returns the server's Retry-After hint carried by err, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// transientStatus reports whether an HTTP status is worth retrying: 408,
// 425, 429 and 5xx except 501 (not implemented) and 505 (version).
func transientStatus(code int) bool {
	switch code {
	case 408, 425, 429:
		return true
	case 501, 505:
		return false
	}
	return code >= 500 && code <= 599
}
