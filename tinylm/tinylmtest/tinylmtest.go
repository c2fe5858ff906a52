// Package tinylmtest starts a real tinylm HTTP server for tests of LLM
// clients: a net/http server on 127.0.0.1 with a random free port, shut
// down when the test ends.
package tinylmtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/selfplay/selfplay/tinylm"
)

// Start serves a tinylm server built from opts (nil Models means the
// built-in model as "tiny-0"; the reward function is served as "reward"
// unless opts.RewardModel says otherwise) and returns its base URL, e.g.
// "http://127.0.0.1:41234" — no trailing slash and no /v1, so clients
// append "/v1/chat/completions", "/tokenize", "/classify" and so on. The
// server is closed in t.Cleanup; requests still hanging then (see
// tinylm.Faults.HangRate) are cut off. Start fails the test on any error.
func Start(t testing.TB, opts tinylm.ServerOptions) string {
	t.Helper()
	srv, err := tinylm.NewServer(opts)
	if err != nil {
		t.Fatalf("tinylmtest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tinylmtest: listen: %v", err)
	}
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close() // hung requests: cut their connections
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("tinylmtest: serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
