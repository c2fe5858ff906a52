package llm

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffStaysWithinJitteredSchedule(t *testing.T) {
	t.Parallel()
	base, maxDelay := 100*time.Millisecond, time.Second
	tests := []struct {
		name    string
		attempt int
		lo, hi  time.Duration
	}{
		{name: "first retry", attempt: 1, lo: 50 * time.Millisecond, hi: 100 * time.Millisecond},
		{name: "second retry doubles", attempt: 2, lo: 100 * time.Millisecond, hi: 200 * time.Millisecond},
		{name: "fourth retry", attempt: 4, lo: 400 * time.Millisecond, hi: 800 * time.Millisecond},
		{name: "capped", attempt: 10, lo: 500 * time.Millisecond, hi: time.Second},
		{name: "far beyond the cap does not overflow", attempt: 200, lo: 500 * time.Millisecond, hi: time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range 200 {
				d := backoff(base, maxDelay, tc.attempt)
				require.GreaterOrEqual(t, d, tc.lo)
				require.LessOrEqual(t, d, tc.hi)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{name: "none", header: http.Header{}, want: 0},
		{name: "seconds", header: http.Header{"Retry-After": {"3"}}, want: 3 * time.Second},
		{name: "fractional seconds", header: http.Header{"Retry-After": {"0.5"}}, want: 500 * time.Millisecond},
		{name: "zero", header: http.Header{"Retry-After": {"0"}}, want: 0},
		{name: "negative ignored", header: http.Header{"Retry-After": {"-4"}}, want: 0},
		{name: "http date", header: http.Header{"Retry-After": {"Thu, 02 Jan 2025 03:04:15 GMT"}}, want: 10 * time.Second},
		{name: "date in the past", header: http.Header{"Retry-After": {"Thu, 02 Jan 2025 03:00:00 GMT"}}, want: 0},
		{name: "garbage", header: http.Header{"Retry-After": {"soon"}}, want: 0},
		{name: "milliseconds win", header: http.Header{"Retry-After": {"3"}, "Retry-After-Ms": {"250"}}, want: 250 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, parseRetryAfter(tc.header, now))
		})
	}
}
