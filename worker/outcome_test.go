package worker

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/store"
	"github.com/stretchr/testify/require"
)

func TestDecide(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name       string
		err        error
		delivered  uint64
		failErr    error
		want       settlement
		wantDelay  time.Duration
		wantFailed string
	}{
		{name: "success acks", err: nil, delivered: 1, want: settledAck},
		{name: "permanent records and terminates", err: Permanent(boom), delivered: 1, want: settledTerm, wantFailed: "boom"},
		{name: "transient naks with backoff", err: Retry(0, boom), delivered: 1, want: settledNak, wantDelay: 2 * time.Second},
		{name: "backoff doubles", err: Retry(0, boom), delivered: 3, want: settledNak, wantDelay: 8 * time.Second},
		{name: "server hint wins", err: Retry(7*time.Second, boom), delivered: 1, want: settledNak, wantDelay: 7 * time.Second},
		{name: "plain errors are transient", err: boom, delivered: 2, want: settledNak, wantDelay: 4 * time.Second},
		{name: "last delivery fails the task", err: Retry(0, boom), delivered: 5, want: settledTerm, wantFailed: "gave up after 5 deliveries: boom"},
		{name: "unrecorded failure is retried", err: Permanent(boom), delivered: 1, failErr: errors.New("db down"), want: settledNak, wantDelay: 2 * time.Second, wantFailed: "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var failed string
			s, delay, _ := decide(tt.err, tt.delivered, 5, func(reason string) error {
				failed = reason
				return tt.failErr
			})
			require.Equal(t, tt.want, s)
			require.Equal(t, tt.wantDelay, delay)
			require.Equal(t, tt.wantFailed, failed)
		})
	}
}

func TestBackoffIsCapped(t *testing.T) {
	t.Parallel()
	require.Equal(t, 2*time.Minute, backoff(20))
	require.Equal(t, 2*time.Second, backoff(1))
}

func TestFailureKeepsTheEndpointAndStatus(t *testing.T) {
	t.Parallel()
	lerr := &llm.Error{Endpoint: "reward", Status: 422, Reason: "wrong number of rewards", Permanent: true}
	f := failure("reward: boom", classify("reward", lerr))
	require.Equal(t, store.Failure{Reason: "reward: boom", Endpoint: "reward", Status: 422}, f)
	f = failure("gave up", Retry(0, fmt.Errorf("database: %w", errors.New("down"))))
	require.Equal(t, store.Failure{Reason: "gave up"}, f, "not an endpoint's failure")
}
