package tinylmtest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/selfplay/selfplay/tinylm"
)

// Replica is a tinylm server that a test can kill and bring back on the same
// address, as one replica of a multi-replica endpoint. It counts the
// requests it received and the most it had in flight at once (the /health
// probe included in neither).
type Replica struct {
	t    testing.TB
	srv  *tinylm.Server
	addr string

	mu   sync.Mutex
	hs   *http.Server
	done chan error

	requests    atomic.Int64
	inflight    atomic.Int64
	maxInflight atomic.Int64
}

// StartReplica serves a tinylm server built from opts on a free port of
// 127.0.0.1; it is closed in t.Cleanup.
func StartReplica(t testing.TB, opts tinylm.ServerOptions) *Replica {
	t.Helper()
	srv, err := tinylm.NewServer(opts)
	if err != nil {
		t.Fatalf("tinylmtest: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tinylmtest: listen: %v", err)
	}
	r := &Replica{t: t, srv: srv, addr: ln.Addr().String()}
	r.serve(ln)
	t.Cleanup(r.Kill)
	return r
}

// URL is the replica's base URL, e.g. "http://127.0.0.1:41234".
func (r *Replica) URL() string { return "http://" + r.addr }

// Requests is the number of model requests the replica received.
func (r *Replica) Requests() int64 { return r.requests.Load() }

// MaxInFlight is the most model requests the replica held at once.
func (r *Replica) MaxInFlight() int64 { return r.maxInflight.Load() }

func (r *Replica) serve(ln net.Listener) {
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/health" {
			r.srv.ServeHTTP(w, req)
			return
		}
		r.requests.Add(1)
		n := r.inflight.Add(1)
		defer r.inflight.Add(-1)
		for {
			m := r.maxInflight.Load()
			if n <= m || r.maxInflight.CompareAndSwap(m, n) {
				break
			}
		}
		r.srv.ServeHTTP(w, req)
	})
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	r.mu.Lock()
	r.hs, r.done = hs, done
	r.mu.Unlock()
}

// Kill closes the listener and every connection at once, as a killed
// process would: requests in flight are cut off and new connections are
// refused. Killing a killed replica does nothing.
func (r *Replica) Kill() {
	r.mu.Lock()
	hs, done := r.hs, r.done
	r.hs, r.done = nil, nil
	r.mu.Unlock()
	if hs == nil {
		return
	}
	hs.Close()
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		r.t.Errorf("tinylmtest: serve: %v", err)
	}
}

// Restart serves again on the replica's address after Kill.
func (r *Replica) Restart() {
	r.t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", r.addr)
	if err != nil {
		r.t.Fatalf("tinylmtest: listen again on %s: %v", r.addr, err)
	}
	r.serve(ln)
}
