package tinylm_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

var chatBody = map[string]any{"messages": userMsg("How do I cook pasta?"), "max_tokens": 20, "seed": 1}

func TestFaultKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults tinylm.Faults
		path   string
		body   any
		check  func(t *testing.T, status int, hdr http.Header, raw []byte)
	}{
		{
			name: "500", faults: tinylm.Faults{ErrorRate: 1}, path: "/v1/chat/completions", body: chatBody,
			check: func(t *testing.T, status int, hdr http.Header, raw []byte) {
				require.Equal(t, http.StatusInternalServerError, status)
				require.Equal(t, tinylm.FaultError, hdr.Get(tinylm.FaultHeader))
				var e errResp
				require.NoError(t, json.Unmarshal(raw, &e))
				require.Equal(t, 500, e.Error.Code)
			},
		},
		{
			name: "429 with Retry-After in whole seconds", faults: tinylm.Faults{RateLimitRate: 1, RetryAfter: 1500 * time.Millisecond}, path: "/classify", body: map[string]any{"input": "x"},
			check: func(t *testing.T, status int, hdr http.Header, raw []byte) {
				require.Equal(t, http.StatusTooManyRequests, status)
				require.Equal(t, "2", hdr.Get("Retry-After"))
				var e errResp
				require.NoError(t, json.Unmarshal(raw, &e))
				require.Equal(t, 429, e.Error.Code)
			},
		},
		{
			name: "hang bounded by HangMax", faults: tinylm.Faults{HangRate: 1, HangMax: 20 * time.Millisecond}, path: "/v1/completions", body: map[string]any{"prompt": "hello"},
			check: func(t *testing.T, status int, hdr http.Header, raw []byte) {
				require.Equal(t, http.StatusGatewayTimeout, status)
				require.Equal(t, tinylm.FaultHang, hdr.Get(tinylm.FaultHeader))
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tc.faults})
			status, hdr, raw := call(t, base, tc.path, tc.body)
			tc.check(t, status, hdr, raw)
			// /health and /v1/models are never faulted (unless IncludeModels).
			s, _, _ := call(t, base, "/health", nil)
			require.Equal(t, http.StatusOK, s)
			s, _, _ = call(t, base, "/v1/models", nil)
			require.Equal(t, http.StatusOK, s)
		})
	}
}

func TestFaultHangUntilClientGivesUp(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{HangRate: 1}})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/chat/completions", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded, "the request hangs until the client gives up")
	s, _, _ := call(t, base, "/health", nil)
	require.Equal(t, http.StatusOK, s, "the server still answers")
}

func TestFaultMalformedBodies(t *testing.T) {
	t.Parallel()
	base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{MalformedRate: 1, Seed: 3}})
	seen := map[string]bool{}
	for range 20 {
		status, hdr, raw := call(t, base, "/v1/chat/completions", chatBody)
		require.Equal(t, http.StatusOK, status, "malformed bodies come with status 200")
		require.False(t, json.Valid(raw), "body is not valid JSON: %s", raw)
		kind := hdr.Get(tinylm.FaultHeader)
		seen[kind] = true
		switch kind {
		case tinylm.FaultMalformedJSON:
			require.Equal(t, "application/json", hdr.Get("Content-Type"))
			require.True(t, strings.HasPrefix(string(raw), `{"id":"chatcmpl-`), "the real response, cut off: %s", raw)
		case tinylm.FaultMalformedHTML:
			require.Contains(t, hdr.Get("Content-Type"), "text/html")
			require.Contains(t, string(raw), "<html>")
		default:
			t.Fatalf("unexpected fault kind %q", kind)
		}
	}
	require.Len(t, seen, 2, "both malformed kinds occur")
}

func TestFaultLatencyAndModelsFlag(t *testing.T) {
	t.Parallel()
	const lat = 30 * time.Millisecond
	base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{Latency: lat, LatencyJitter: 10 * time.Millisecond, ErrorRate: 1, IncludeModels: true}})
	start := time.Now()
	status, _, _ := call(t, base, "/v1/models", nil)
	require.GreaterOrEqual(t, time.Since(start), lat, "the fixed latency is a lower bound")
	require.Equal(t, http.StatusInternalServerError, status, "IncludeModels faults /v1/models too")
	status, _, _ = call(t, base, "/health", nil)
	require.Equal(t, http.StatusOK, status)
}

func TestFaultsAreSeeded(t *testing.T) {
	t.Parallel()
	faults := tinylm.Faults{ErrorRate: 0.3, RateLimitRate: 0.3, Seed: 42}
	statuses := func() []int {
		base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: faults})
		var out []int
		for range 30 {
			s, _, _ := call(t, base, "/tokenize", map[string]any{"prompt": "hello"})
			out = append(out, s)
		}
		return out
	}
	a, b := statuses(), statuses()
	require.Equal(t, a, b, "the same seed gives the same faults for sequential requests")
	count := map[int]int{}
	for _, s := range a {
		count[s]++
	}
	require.Len(t, count, 3, "200s, 500s and 429s all occur: %v", count)
}
