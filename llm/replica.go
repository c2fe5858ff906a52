package llm

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// DefaultProbeInterval is how often an ejected replica is probed when
// WithProbeInterval is not given.
const DefaultProbeInterval = 2 * time.Second

// replica is one server of an endpoint. Its fields other than root and v1
// are guarded by the balancer's mutex.
type replica struct {
	root, v1 string // as baseURLs returns them
	inflight int    // attempts holding one of its slots
	down     bool   // ejected: gets no work while another replica is up
	served   int64  // attempts it answered successfully
}

// balancer spreads the attempts of one client over the endpoint's replicas:
// each attempt goes to the healthy replica with the fewest attempts in
// flight (ties taken in turn), and waits when every healthy replica has its
// limit in flight. A replica that fails in a way that says the server, not
// the request, is at fault (see replicaFault) is ejected and probed at
// GET {root}/health until it answers; a success through it re-admits it at
// once. With every replica ejected, work goes to all of them as if none
// were, so one server down behaves as it does without replicas: attempts
// fail and are retried with backoff.
type balancer struct {
	name     string
	limit    int // attempts in flight per replica
	reps     []*replica
	probe    func(ctx context.Context, r *replica) bool
	interval time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	next int           // where the next tie-break starts
	wake chan struct{} // closed (and replaced) when a slot frees or health changes
}

func newBalancer(name string, limit int, reps []*replica, probe func(context.Context, *replica) bool, interval time.Duration, log *slog.Logger) *balancer {
	return &balancer{name: name, limit: limit, reps: reps, probe: probe, interval: interval, log: log, wake: make(chan struct{})}
}

// acquire takes a slot on the least-loaded healthy replica, waiting for one
// to free or for ctx to end.
func (b *balancer) acquire(ctx context.Context) (*replica, error) {
	for {
		b.mu.Lock()
		r := b.pickLocked()
		if r != nil {
			r.inflight++
			b.mu.Unlock()
			return r, nil
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// pickLocked returns the replica for the next attempt, or nil when every
// candidate is at its limit.
func (b *balancer) pickLocked() *replica {
	up := 0
	for _, r := range b.reps {
		if !r.down {
			up++
		}
	}
	var best *replica
	n := len(b.reps)
	for i := range n {
		r := b.reps[(b.next+i)%n]
		if (up > 0 && r.down) || r.inflight >= b.limit {
			continue
		}
		if best == nil || r.inflight < best.inflight {
			best = r
		}
	}
	if best != nil {
		b.next = (b.next + 1) % n
	}
	return best
}

// release frees r's slot and records the attempt's outcome: f is nil on
// success. An attempt the caller gave up on says nothing about the replica.
func (b *balancer) release(r *replica, f *failure, callerGaveUp bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r.inflight--
	switch {
	case callerGaveUp:
	case !replicaFault(f):
		if f == nil {
			r.served++
		}
		if r.down && f == nil {
			r.down = false
			b.log.Info("llm replica re-admitted after a successful request", "endpoint", b.name, "replica", r.root)
		}
	case len(b.reps) > 1 && !r.down:
		r.down = true
		b.log.Warn("llm replica ejected", "endpoint", b.name, "replica", r.root, "status", f.status, "reason", f.reason)
		go b.probeUntilUp(r)
	}
	b.signalLocked()
}

func (b *balancer) signalLocked() {
	close(b.wake)
	b.wake = make(chan struct{})
}

// probeUntilUp probes an ejected replica every interval until it answers
// or a successful request re-admits it.
func (b *balancer) probeUntilUp(r *replica) {
	timer := time.NewTimer(b.interval)
	defer timer.Stop()
	for range timer.C {
		b.mu.Lock()
		down := r.down
		b.mu.Unlock()
		if !down {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(b.interval, time.Second))
		ok := b.probe(ctx, r)
		cancel()
		if ok {
			b.mu.Lock()
			if r.down {
				r.down = false
				b.log.Info("llm replica re-admitted after a health probe", "endpoint", b.name, "replica", r.root)
				b.signalLocked()
			}
			b.mu.Unlock()
			return
		}
		timer.Reset(b.interval)
	}
}

// replicaFault reports whether a failed attempt says its replica, rather
// than the request, is at fault: no response at all (connection refused or
// reset, the attempt timeout) or a 5xx status. It reads the failure's
// status and kind only, never its text. Malformed bodies and 4xx (429
// included: the server is alive and answering) are not replica faults.
func replicaFault(f *failure) bool {
	if f == nil || !f.transient || f.malformed {
		return false
	}
	return f.status == 0 || f.status >= 500
}

// healthProbe returns the probe for replicas served at roots: GET
// {root}/health answered with a status below 500. vLLM answers 200 while its
// engine runs and 503 once it died, llama-server 503 while it loads the
// model; a server without the route (an OpenRLHF reward server) is up if it
// answers 404.
func healthProbe(hc *http.Client, apiKey string) func(ctx context.Context, r *replica) bool {
	return func(ctx context.Context, r *replica) bool {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.root+"/health", nil)
		if err != nil {
			return false
		}
		if apiKey != "" {
			req.Header.Set("Authorization", "Bearer "+apiKey)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode < 500
	}
}

// replicasOf lists the replica addresses of ep: BaseURL (if set) followed by
// BaseURLs, each normalised by baseURLs; one listed twice is an error.
func replicasOf(ep Endpoint) ([]*replica, error) {
	var raws []string
	if ep.BaseURL != "" || len(ep.BaseURLs) == 0 {
		raws = append(raws, ep.BaseURL)
	}
	raws = append(raws, ep.BaseURLs...)
	seen := map[string]bool{}
	reps := make([]*replica, 0, len(raws))
	for _, raw := range raws {
		root, v1, err := baseURLs(ep.Name, raw)
		if err != nil {
			return nil, err
		}
		if seen[root] {
			return nil, fmt.Errorf("llm: %s endpoint: replica %s is listed twice", ep.Name, root)
		}
		seen[root] = true
		reps = append(reps, &replica{root: root, v1: v1})
	}
	return reps, nil
}

type replicaKey struct{}

// rebase points req at replica r. Routes are built against the first
// replica's root (t.root); an attempt on another replica swaps that prefix.
func (t *transport) rebase(req *http.Request) error {
	r, _ := req.Context().Value(replicaKey{}).(*replica)
	if r == nil || r.root == t.root {
		return nil
	}
	u := req.URL.String()
	if !strings.HasPrefix(u, t.root) {
		return fmt.Errorf("llm: %s endpoint: route %s is not under %s", t.ep.Name, u, t.root)
	}
	nu, err := url.Parse(r.root + u[len(t.root):])
	if err != nil {
		return err
	}
	req.URL, req.Host = nu, nu.Host
	return nil
}

// ReplicaStat is one replica's state as Replicas reports it.
type ReplicaStat struct {
	// URL is the replica's server root (no /v1).
	URL string
	// InFlight is the number of attempts it holds now.
	InFlight int
	// Up is false while it is ejected.
	Up bool
	// Served counts the attempts it answered successfully.
	Served int64
}

// stats reports each replica's state, in configuration order.
func (b *balancer) stats() []ReplicaStat {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ReplicaStat, len(b.reps))
	for i, r := range b.reps {
		out[i] = ReplicaStat{URL: r.root, InFlight: r.inflight, Up: !r.down, Served: r.served}
	}
	return out
}

// Replicas reports the state of the policy endpoint's replicas.
func (p *Policy) Replicas() []ReplicaStat { return p.chat.t.bal.stats() }

// Replicas reports the state of the reward endpoint's replicas.
func (r *Reward) Replicas() []ReplicaStat { return r.t.bal.stats() }

// Replicas reports the state of the reference endpoint's replicas.
func (r *Reference) Replicas() []ReplicaStat { return r.t.bal.stats() }
