package llm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		err                  error
		permanent, transient bool
	}{
		{name: "permanent", err: &Error{Endpoint: "policy", Permanent: true}, permanent: true},
		{name: "transient", err: &Error{Endpoint: "policy"}, transient: true},
		{name: "wrapped permanent", err: fmt.Errorf("generate: %w", &Error{Permanent: true}), permanent: true},
		{name: "plain error", err: errors.New("boom")},
		{name: "nil", err: nil},
		{name: "context", err: context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.permanent, IsPermanent(tc.err))
			require.Equal(t, tc.transient, IsTransient(tc.err))
		})
	}
}

func TestTransientStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
		want bool
	}{
		{name: "ok is not an error", code: 200, want: false},
		{name: "bad request", code: 400, want: false},
		{name: "unauthorized", code: 401, want: false},
		{name: "not found", code: 404, want: false},
		{name: "request timeout", code: 408, want: true},
		{name: "unprocessable", code: 422, want: false},
		{name: "rate limited", code: 429, want: true},
		{name: "internal", code: 500, want: true},
		{name: "not implemented", code: 501, want: false},
		{name: "bad gateway", code: 502, want: true},
		{name: "unavailable", code: 503, want: true},
		{name: "gateway timeout", code: 504, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, transientStatus(tc.code))
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	e := &Error{Endpoint: "reward", Model: "rm", Path: "/classify", Status: 503, Reason: "overloaded", Attempts: 6, RetryAfter: time.Second}
	require.Equal(t, `llm: reward endpoint (model "rm") /classify: status 503: overloaded (after 6 attempts)`, e.Error())
	require.Equal(t, time.Second, RetryAfterOf(fmt.Errorf("x: %w", e)))

	inner := errors.New("dial tcp: connection refused")
	e = &Error{Endpoint: "policy", Reason: "request failed", Err: inner}
	require.Equal(t, "llm: policy endpoint: request failed: dial tcp: connection refused", e.Error())
	require.ErrorIs(t, e, inner)
}

func TestExchangeClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		x          exchange
		wantNil    bool
		transient  bool
		reason     string
		retryAfter time.Duration
	}{
		{name: "success", x: exchange{status: 200, body: []byte(`{}`)}, wantNil: true},
		{name: "connection error", x: exchange{err: errors.New("connection refused")}, transient: true, reason: "request failed: connection refused"},
		{name: "body cut in transfer", x: exchange{status: 200, err: errors.New("reading response body: unexpected EOF")}, transient: true, reason: "reading response body: unexpected EOF"},
		{
			name: "rate limited with hint", transient: true, retryAfter: 2 * time.Second, reason: "slow down",
			x: exchange{status: 429, header: http.Header{"Retry-After": {"2"}}, body: []byte(`{"error":{"message":"slow down","type":"RateLimitError","code":429}}`)},
		},
		{name: "flat vLLM error", x: exchange{status: 404, body: []byte(`{"object":"error","message":"no such model","type":"NotFoundError","code":404}`)}, reason: "no such model"},
		{name: "fastapi detail", x: exchange{status: 422, body: []byte(`{"detail":"field required"}`)}, reason: "field required"},
		{name: "html page", x: exchange{status: 502, body: []byte("<html><body>Bad Gateway</body></html>")}, transient: true, reason: "unexpected error body: <html><body>Bad Gateway</body></html>"},
		{name: "empty body", x: exchange{status: 500}, transient: true, reason: "empty error body"},
		{name: "body too large", x: exchange{status: 200, err: errBodyTooLarge}, reason: "response body larger than 67108864 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := tc.x.classify()
			if tc.wantNil {
				require.Nil(t, f)
				return
			}
			require.NotNil(t, f)
			require.Equal(t, tc.transient, f.transient)
			require.Equal(t, tc.reason, f.reason)
			require.Equal(t, tc.retryAfter, f.retryAfter)
		})
	}
}

func TestDescribeDecodeError(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, body, want string }{
		{name: "empty", body: "", want: "empty body"},
		{name: "truncated", body: `{"choices": [{"index": 0`, want: "truncated JSON after 24 bytes"},
		{name: "html", body: "<html>oops</html>", want: "not JSON"},
		{name: "NaN log-prob", body: `{"choices": [{"logprob": NaN}]}`, want: "non-finite number NaN"},
		{name: "negative infinity", body: `{"token_logprobs": [-0.5, -Infinity]}`, want: "non-finite number -Infinity"},
		{name: "NaN inside a string is not the problem", body: `{"text": "a, NaN", "x": tru}`, want: "in literal true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var v map[string]any
			err := json.Unmarshal([]byte(tc.body), &v)
			require.Error(t, err)
			require.Contains(t, describeDecodeError([]byte(tc.body), err), tc.want)
		})
	}
}
