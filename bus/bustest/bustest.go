// Package bustest gives tests their own JetStream stream on the real NATS
// server. SELFPLAY_TEST_NATS_URL names the server (default
// nats://127.0.0.1:4222). A server that does not answer fails the test with
// the command that starts it; it never skips.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/selfplay/selfplay/config"
)

// DefaultURL is the local test server.
const DefaultURL = "nats://127.0.0.1:4222"

// StartHint says how to start the local NATS server with JetStream.
const StartHint = "start it with `start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`, or point SELFPLAY_TEST_NATS_URL at a server"

// URL is the test server's URL.
func URL() string {
	if u := os.Getenv("SELFPLAY_TEST_NATS_URL"); u != "" {
		return u
	}
	return DefaultURL
}

// NewStream returns NATS settings with a stream name unique to this test;
// the stream is deleted when the test ends.
func NewStream(t testing.TB) config.NATS {
	t.Helper()
	nc, err := nats.Connect(URL(), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS for tests is not answering at %s: %v\n%s", URL(), err, StartHint)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		nc.Close()
		t.Fatalf("NATS at %s has no JetStream (%v): run nats-server with -js.\n%s", URL(), err, StartHint)
	}
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	name := "TEST_" + strings.ToUpper(hex.EncodeToString(b))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
		nc.Close()
	})
	return config.NATS{URL: URL(), Stream: name}
}
