package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// maxBodyBytes bounds a response body. A teacher-forced prompt_logprobs
// response for a few thousand tokens is well under a megabyte.
const maxBodyBytes = 64 << 20

// transport is the layer every client shares: the per-endpoint concurrency
// limit, per-attempt timeout, retries with backoff, error classification and
// hooks. It is safe for concurrent use.
type transport struct {
	ep   Endpoint
	root string // server root, no /v1
	v1   string // root + /v1
	opts options
	http *http.Client
	bal  *balancer
}

func newTransport(ep Endpoint, opts []Option) (*transport, error) {
	ep, err := ep.withDefaults()
	if err != nil {
		return nil, err
	}
	reps, err := replicasOf(ep)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.httpClient
	if hc == nil {
		hc = &http.Client{Transport: newHTTPTransport(ep.MaxConcurrency)}
	}
	return &transport{
		ep:   ep,
		root: reps[0].root,
		v1:   reps[0].v1,
		opts: o,
		http: hc,
		bal:  newBalancer(ep.Name, ep.MaxConcurrency, reps, healthProbe(hc, ep.APIKey), o.probeInterval, o.logger),
	}, nil
}

// newHTTPTransport keeps as many idle connections per host as requests may
// be in flight, so a burst does not close and reopen connections (the
// default of 2 idle connections per host halves throughput at 32 in flight).
func newHTTPTransport(concurrency int) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = concurrency
	tr.MaxIdleConns = max(100, 2*concurrency)
	return tr
}

// failure is the outcome of one failed attempt, before it becomes an *Error.
type failure struct {
	transient  bool // retry may help
	malformed  bool // unparseable 2xx body: retried, permanent once retries run out
	status     int
	retryAfter time.Duration
	reason     string
	param      string // the error object's "param", if any
	err        error
}

func permanentf(format string, args ...any) *failure {
	return &failure{reason: fmt.Sprintf(format, args...)}
}

func malformed(body []byte, err error) *failure {
	return &failure{
		transient: true,
		malformed: true,
		status:    http.StatusOK,
		reason:    "malformed response body: " + describeDecodeError(body, err),
	}
}

// describeDecodeError explains why a body did not parse, naming a truncated
// body as such.
func describeDecodeError(body []byte, err error) string {
	switch {
	case len(bytes.TrimSpace(body)) == 0:
		return "empty body"
	case errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected end of JSON input"):
		return fmt.Sprintf("truncated JSON after %d bytes", len(body))
	}
	trimmed := bytes.TrimSpace(body)
	if trimmed[0] != '{' && trimmed[0] != '[' {
		return fmt.Sprintf("not JSON (%v): %s", err, excerpt(trimmed))
	}
	if tok := nonFiniteAt(body, err); tok != "" {
		return fmt.Sprintf("non-finite number %s where JSON needs a finite one (log-probs and rewards must be finite): %v", tok, err)
	}
	return err.Error()
}

// nonFiniteAt returns the NaN or ±Infinity token (as Python's json module
// writes non-finite floats) that made decoding fail, or "". With a
// *json.SyntaxError it looks where decoding stopped; otherwise (a decoder
// that hides the offset) for such a token in value position anywhere.
func nonFiniteAt(body []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		for start := max(0, int(se.Offset)-2); start < int(se.Offset) && start < len(body); start++ {
			if m := nonFiniteToken.Find(body[start:]); m != nil && bytes.HasPrefix(body[start:], m) {
				return string(m)
			}
		}
		return ""
	}
	if m := nonFiniteValue.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return ""
}

var (
	nonFiniteToken = regexp.MustCompile(`^-?(?:NaN|Infinity)\b`)
	nonFiniteValue = regexp.MustCompile(`[:\[,]\s*(-?(?:NaN|Infinity))\b`)
)

// call runs one logical request with the retry policy: attempt performs a
// single HTTP exchange under the attempt context and classifies it.
func (t *transport) call(ctx context.Context, model, path string, attempt func(ctx context.Context) *failure) error {
	for n := 1; ; n++ {
		rep, err := t.bal.acquire(ctx)
		if err != nil {
			return t.cancelled(model, path, n-1, err)
		}
		actx, cancel := context.WithTimeout(context.WithValue(ctx, replicaKey{}, rep), t.ep.Timeout)
		start := time.Now()
		f := attempt(actx)
		if f != nil && f.status == 0 && f.err != nil && actx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			f.transient = true
			f.reason = fmt.Sprintf("no response within the %s timeout", t.ep.Timeout)
		}
		cancel()
		t.bal.release(rep, f, ctx.Err() != nil)
		if h := t.opts.hooks.OnRequest; h != nil {
			var herr error
			if f != nil {
				herr = t.toError(model, path, f, n)
			}
			h(RequestInfo{Endpoint: t.ep.Name, Replica: rep.root, Model: model, Path: path, Status: statusOf(f), Duration: time.Since(start), Attempt: n, Err: herr})
		}
		if f == nil {
			return nil
		}
		if ctx.Err() != nil {
			return t.cancelled(model, path, n, ctx.Err())
		}
		if !f.transient || n > t.ep.MaxRetries {
			if n > 1 || f.transient {
				t.opts.logger.WarnContext(ctx, "llm request failed",
					"endpoint", t.ep.Name, "replica", rep.root, "model", model, "path", path, "status", f.status,
					"attempts", n, "reason", f.reason)
			}
			return t.toError(model, path, f, n)
		}
		delay := backoff(t.opts.backoffBase, t.opts.backoffMax, n)
		if f.retryAfter > t.opts.maxRetryWait {
			// The server asks for a longer pause than a call should hold its
			// work: hand the hint to the caller instead of sleeping.
			e := t.toError(model, path, f, n)
			e.Reason += fmt.Sprintf(" (server asks to retry after %s)", f.retryAfter)
			return e
		}
		delay = max(delay, f.retryAfter)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < delay {
			return t.toError(model, path, f, n)
		}
		t.opts.logger.DebugContext(ctx, "llm request retry",
			"endpoint", t.ep.Name, "replica", rep.root, "model", model, "path", path, "status", f.status,
			"attempt", n, "delay", delay, "reason", f.reason)
		if h := t.opts.hooks.OnRetry; h != nil {
			h(RetryInfo{Endpoint: t.ep.Name, Model: model, Path: path, Attempt: n, Delay: delay, Err: t.toError(model, path, f, n)})
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return t.cancelled(model, path, n, ctx.Err())
		case <-timer.C:
		}
	}
}

func statusOf(f *failure) int {
	if f == nil {
		return http.StatusOK
	}
	return f.status
}

func (t *transport) toError(model, path string, f *failure, attempts int) *Error {
	return &Error{
		Endpoint:   t.ep.Name,
		Model:      model,
		Path:       path,
		Status:     f.status,
		Reason:     f.reason,
		Param:      f.param,
		Permanent:  !f.transient || f.malformed,
		Attempts:   attempts,
		RetryAfter: f.retryAfter,
		Err:        f.err,
	}
}

func (t *transport) cancelled(model, path string, attempts int, err error) *Error {
	return &Error{Endpoint: t.ep.Name, Model: model, Path: path, Reason: "call ended by the caller", Attempts: attempts, Canceled: true, Err: err}
}

// errBodyTooLarge marks a response over maxBodyBytes; the same request
// would bring the same body, so it is permanent.
var errBodyTooLarge = fmt.Errorf("response body larger than %d bytes", maxBodyBytes)

// exchange is one HTTP round trip with the whole body read.
type exchange struct {
	status int
	header http.Header
	body   []byte
	err    error // no complete response: connection error, timeout, body cut off
}

// roundTrip sends req and reads the whole response body under the
// request's context, so the attempt timeout covers slow bodies too.
func (t *transport) roundTrip(req *http.Request) exchange {
	return t.roundTripInto(req, new(bytes.Buffer))
}

// bodyBuffers keep response buffers between chat calls: a reply with
// log-probs is hundreds of kilobytes, and a fresh buffer for each (zeroed,
// then collected) cost a worker a tenth of its CPU. Buffers beyond
// maxPooledBody are left to the collector.
var bodyBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBody = 4 << 20

// pooledBody takes a buffer from bodyBuffers; give it back with
// releaseBody once nothing refers to the bytes read into it.
func pooledBody() *bytes.Buffer { return bodyBuffers.Get().(*bytes.Buffer) }

func releaseBody(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBody {
		buf.Reset()
		bodyBuffers.Put(buf)
	}
}

// roundTripInto is roundTrip reading the body into buf, which the
// exchange's body then aliases.
func (t *transport) roundTripInto(req *http.Request, buf *bytes.Buffer) exchange {
	if err := t.rebase(req); err != nil {
		return exchange{err: err}
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return exchange{err: err}
	}
	defer resp.Body.Close()
	var body []byte
	buf.Reset()
	if n := resp.ContentLength; n > 0 && n <= maxBodyBytes {
		// One read into a buffer of the announced size, not ReadAll's
		// doublings: a reply with log-probs is hundreds of kilobytes.
		buf.Grow(int(n) + bytes.MinRead)
		_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBodyBytes+1))
		body = buf.Bytes()
	} else {
		body, err = io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	}
	x := exchange{status: resp.StatusCode, header: resp.Header, body: body}
	if err != nil {
		x.err = fmt.Errorf("reading response body: %w", err)
	} else if len(body) > maxBodyBytes {
		x.err = errBodyTooLarge
	}
	return x
}

// classify turns a non-2xx status or a transport error into a failure; it
// returns nil for a complete 2xx response.
func (x exchange) classify() *failure {
	if errors.Is(x.err, errBodyTooLarge) {
		return &failure{status: x.status, reason: x.err.Error(), err: x.err}
	}
	if x.err != nil {
		if x.status == 0 {
			return &failure{transient: true, reason: "request failed: " + x.err.Error(), err: x.err}
		}
		return &failure{transient: true, status: x.status, reason: x.err.Error(), err: x.err}
	}
	if x.status >= 200 && x.status < 300 {
		return nil
	}
	return &failure{
		transient:  transientStatus(x.status),
		status:     x.status,
		retryAfter: parseRetryAfter(x.header, time.Now()),
		reason:     errorReason(x.body),
		param:      errorParam(x.body),
	}
}

// errorParam is the "param" of an OpenAI error object {"error": {"param":
// "n", …}}, or "" when the body has none.
func errorParam(body []byte) string {
	var v struct {
		Error struct {
			Param string `json:"param"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	return v.Error.Param
}

// errorReason extracts the message of an error body: the OpenAI error
// object {"error": {"message": …}}, vLLM's older flat {"message": …}, a
// FastAPI {"detail": …}, or an excerpt of whatever else came back.
func errorReason(body []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
		Detail  json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &v) == nil {
		var inner struct {
			Message string `json:"message"`
			Type    string `json:"type"`
		}
		if len(v.Error) > 0 && json.Unmarshal(v.Error, &inner) == nil && inner.Message != "" {
			return inner.Message
		}
		var s string
		if len(v.Error) > 0 && json.Unmarshal(v.Error, &s) == nil && s != "" {
			return s
		}
		if v.Message != "" {
			return v.Message
		}
		if len(v.Detail) > 0 {
			if json.Unmarshal(v.Detail, &s) != nil {
				return excerpt(v.Detail)
			}
			if s != "" {
				return s
			}
		}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "empty error body"
	}
	return "unexpected error body: " + excerpt(bytes.TrimSpace(body))
}

// excerpt shortens a body for an error message.
func excerpt(b []byte) string {
	const limit = 160
	if len(b) > limit {
		b = b[:limit]
		for len(b) > 0 && !utf8.Valid(b) {
			b = b[:len(b)-1]
		}
		return string(b) + "…"
	}
	return string(b)
}

// postJSON sends body as JSON to url and decodes a 2xx response into a
// fresh T per attempt. check validates the decoded value; its failures are
// permanent.
func postJSON[T any](ctx context.Context, t *transport, model, path, url string, body any, check func(*T) *failure) (*T, error) {
	payload, err := json.Marshal(body)
	if err != nil {
		return nil, &Error{Endpoint: t.ep.Name, Model: model, Path: path, Reason: "encoding request", Permanent: true, Err: err}
	}
	return sendJSON(ctx, t, model, path, url, payload, check)
}

// getJSON is postJSON for a GET without a body.
func getJSON[T any](ctx context.Context, t *transport, model, path, url string, check func(*T) *failure) (*T, error) {
	return sendJSON(ctx, t, model, path, url, nil, check)
}

// sendJSON posts payload to url, or GETs it when payload is nil, and
// decodes the answer as postJSON describes.
func sendJSON[T any](ctx context.Context, t *transport, model, path, url string, payload []byte, check func(*T) *failure) (*T, error) {
	var out *T
	err := t.call(ctx, model, path, func(actx context.Context) *failure {
		method, body := http.MethodGet, io.Reader(nil)
		if payload != nil {
			method, body = http.MethodPost, bytes.NewReader(payload)
		}
		req, err := http.NewRequestWithContext(actx, method, url, body)
		if err != nil {
			return &failure{reason: "building request", err: err}
		}
		if payload != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("Accept", "application/json")
		if t.ep.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+t.ep.APIKey)
		}
		x := t.roundTrip(req)
		if f := x.classify(); f != nil {
			return f
		}
		v := new(T)
		if err := json.Unmarshal(x.body, v); err != nil {
			return malformed(x.body, err)
		}
		if check != nil {
			if f := check(v); f != nil {
				f.status = x.status
				return f
			}
		}
		out = v
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
