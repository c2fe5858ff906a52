// Package tinylmtest starts a real tinylm HTTP server for tests of LLM
// clients: a net/http server on 127.0.0.1 with a random free port, shut
// down when the test ends.
package tinylmtest

import (
	"context"
	"errors"
	"math"
	"net"
	"net/http"
	"slices"
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
	_, base := StartServer(t, opts)
	return base
}

// StartServer is Start that also returns the server, for tests that call
// its methods (Rescan, Watch) while it serves.
func StartServer(t testing.TB, opts tinylm.ServerOptions) (*tinylm.Server, string) {
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
	return srv, "http://" + ln.Addr().String()
}

// Preferences samples n responses per prompt from m (temperature 0.8, top-p
// 0.95, at most 64 tokens, choice i of prompt j seeded with
// seed+1000·j+i), scores them with tinylm.RewardChat and pairs the best against
// the worst, the way a self-play iteration does; prompts whose samples all
// score the same or whose best and worst texts are equal give no pair. It
// is a realistic, deterministic preference dataset for trainer tests.
func Preferences(t testing.TB, m *tinylm.Model, prompts [][]tinylm.Message, n int, seed uint64) []tinylm.Preference {
	t.Helper()
	var out []tinylm.Preference
	for j, msgs := range prompts {
		ids, err := m.Tok.EncodeChat(msgs, true)
		if err != nil {
			t.Fatalf("tinylmtest: prompt %d: %v", j, err)
		}
		var best, worst string
		bestR, worstR := math.Inf(-1), math.Inf(1)
		for i := range n {
			g, err := m.Generate(ids, tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 64}, tinylm.NewRand(seed+uint64(1000*j+i)))
			if err != nil {
				t.Fatalf("tinylmtest: generate: %v", err)
			}
			resp := m.Tok.Decode(g.IDs, true)
			b, err := tinylm.RewardChat(append(slices.Clip(msgs), tinylm.Message{Role: "assistant", Content: resp}))
			if err != nil {
				t.Fatalf("tinylmtest: reward: %v", err)
			}
			r := b.Score
			if r > bestR {
				best, bestR = resp, r
			}
			if r <= worstR {
				worst, worstR = resp, r
			}
		}
		if bestR > worstR && best != worst {
			out = append(out, tinylm.Preference{Prompt: msgs, Chosen: best, Rejected: worst})
		}
	}
	return out
}
