package llm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

func TestPickLeastLoaded(t *testing.T) {
	t.Parallel()
	type rep struct {
		inflight int
		down     bool
	}
	tests := []struct {
		name  string
		reps  []rep
		next  int
		limit int
		want  int // index, -1 for none
	}{
		{name: "fewest in flight", reps: []rep{{3, false}, {1, false}, {2, false}}, limit: 4, want: 1},
		{name: "tie taken in turn from next", reps: []rep{{1, false}, {1, false}, {1, false}}, next: 2, limit: 4, want: 2},
		{name: "tie wraps around", reps: []rep{{1, false}, {2, false}, {1, false}}, next: 1, limit: 4, want: 2},
		{name: "ejected skipped though idle", reps: []rep{{0, true}, {3, false}}, limit: 4, want: 1},
		{name: "healthy at limit: wait, not the ejected one", reps: []rep{{0, true}, {4, false}}, limit: 4, want: -1},
		{name: "all at limit", reps: []rep{{2, false}, {2, false}}, limit: 2, want: -1},
		{name: "all ejected: all are candidates", reps: []rep{{2, true}, {1, true}}, limit: 4, want: 1},
		{name: "single replica", reps: []rep{{0, false}}, limit: 1, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reps := make([]*replica, len(tc.reps))
			for i, r := range tc.reps {
				reps[i] = &replica{root: "http://h:" + string(rune('0'+i)), inflight: r.inflight, down: r.down}
			}
			b := newBalancer("policy", tc.limit, reps, nil, time.Second, nil)
			b.next = tc.next
			got := b.pickLocked()
			if tc.want < 0 {
				require.Nil(t, got)
				return
			}
			require.Same(t, reps[tc.want], got)
		})
	}
}

func TestReplicaFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    *failure
		want bool
	}{
		{name: "success", f: nil, want: false},
		{name: "connection refused (no response)", f: &failure{transient: true}, want: true},
		{name: "500", f: &failure{transient: true, status: 500}, want: true},
		{name: "503", f: &failure{transient: true, status: 503}, want: true},
		{name: "501 is the request's fault", f: &failure{status: 501}, want: false},
		{name: "429: alive and answering", f: &failure{transient: true, status: 429}, want: false},
		{name: "400", f: &failure{status: 400}, want: false},
		{name: "malformed 200 body", f: &failure{transient: true, malformed: true, status: 200}, want: false},
		{name: "request not built", f: &failure{reason: "building request"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, replicaFault(tc.f))
		})
	}
}

func TestReplicasOf(t *testing.T) {
	t.Parallel()
	reps, err := replicasOf(Endpoint{Name: "policy", BaseURL: "http://a:1/v1", BaseURLs: []string{"http://b:1", "http://c:1/v1/"}})
	require.NoError(t, err)
	var roots []string
	for _, r := range reps {
		roots = append(roots, r.root)
	}
	require.Equal(t, []string{"http://a:1", "http://b:1", "http://c:1"}, roots)

	reps, err = replicasOf(Endpoint{Name: "policy", BaseURLs: []string{"http://b:1/v1"}})
	require.NoError(t, err)
	require.Len(t, reps, 1)
	require.Equal(t, "http://b:1/v1", reps[0].v1)

	_, err = replicasOf(Endpoint{Name: "policy", BaseURL: "http://a:1/v1", BaseURLs: []string{"http://a:1"}})
	require.ErrorContains(t, err, "replica http://a:1 is listed twice")
	_, err = replicasOf(Endpoint{Name: "policy", BaseURLs: []string{"http://a:1", "a:2"}})
	require.ErrorContains(t, err, `base URL "a:2" must start with http`)
	_, err = replicasOf(Endpoint{Name: "policy"})
	require.ErrorContains(t, err, "base URL is empty")
}

// replicaPolicy is a policy client over the given tinylm replicas with a
// fast backoff; requests counts attempts per replica root and status.
type replicaPolicy struct {
	*Policy
	mu       sync.Mutex
	attempts map[string][]int // replica root → statuses of its attempts
}

func newReplicaPolicy(t *testing.T, maxConcurrency int, probe time.Duration, reps ...*tinylmtest.Replica) *replicaPolicy {
	t.Helper()
	rp := &replicaPolicy{attempts: map[string][]int{}}
	ep := Endpoint{Name: "policy", MaxConcurrency: maxConcurrency, Timeout: 10 * time.Second, MaxRetries: 3}
	for _, r := range reps {
		ep.BaseURLs = append(ep.BaseURLs, r.URL()+"/v1")
	}
	p, err := NewPolicy(ep, WithBackoff(time.Millisecond, 10*time.Millisecond), WithProbeInterval(probe),
		WithHooks(Hooks{OnRequest: func(ri RequestInfo) {
			rp.mu.Lock()
			rp.attempts[ri.Replica] = append(rp.attempts[ri.Replica], ri.Status)
			rp.mu.Unlock()
		}}))
	require.NoError(t, err)
	rp.Policy = p
	return rp
}

func (rp *replicaPolicy) statuses(r *tinylmtest.Replica) []int {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	return append([]int(nil), rp.attempts[r.URL()]...)
}

func sampleOnce(ctx context.Context, t *testing.T, p *Policy, seed int64) {
	t.Helper()
	got, err := p.Sample(ctx, questionPrompt, defaultSampling(2, seed))
	require.NoError(t, err)
	require.Len(t, got, 2)
}

// TestReplicasTakeTurnsAndKeepTheirLimit: calls one at a time alternate
// between two idle replicas; many at once never put more than
// max_concurrency on either.
func TestReplicasTakeTurnsAndKeepTheirLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	opts := tinylm.ServerOptions{Faults: tinylm.Faults{ResponseTime: 20 * time.Millisecond}}
	a, b := tinylmtest.StartReplica(t, opts), tinylmtest.StartReplica(t, opts)
	p := newReplicaPolicy(t, 2, time.Minute, a, b)

	for i := range 6 {
		sampleOnce(ctx, t, p.Policy, int64(i))
	}
	require.Equal(t, int64(3), a.Requests())
	require.Equal(t, int64(3), b.Requests())

	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range 16 {
		wg.Go(func() {
			if _, err := p.Sample(ctx, questionPrompt, defaultSampling(2, int64(100+i))); err != nil {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	require.Zero(t, failed.Load())
	require.Equal(t, int64(6+16), a.Requests()+b.Requests())
	require.LessOrEqual(t, a.MaxInFlight(), int64(2))
	require.LessOrEqual(t, b.MaxInFlight(), int64(2))
	for _, st := range p.Replicas() {
		require.True(t, st.Up)
		require.Zero(t, st.InFlight)
	}
}

// TestKilledReplicaIsEjectedAndProbedBackIn: with one of two replicas
// killed every call succeeds on the other, the dead one gets no more
// attempts after the one that found it dead, and once it serves again the
// health probe re-admits it and it takes work again.
func TestKilledReplicaIsEjectedAndProbedBackIn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := tinylmtest.StartReplica(t, tinylm.ServerOptions{}), tinylmtest.StartReplica(t, tinylm.ServerOptions{})
	p := newReplicaPolicy(t, 4, 20*time.Millisecond, a, b)

	sampleOnce(ctx, t, p.Policy, 1) // a
	sampleOnce(ctx, t, p.Policy, 2) // b
	b.Kill()
	for i := range 6 {
		sampleOnce(ctx, t, p.Policy, int64(10+i))
	}
	require.Equal(t, []int{200, 0}, p.statuses(b), "b: one success, then one attempt that found it dead")
	require.False(t, p.Replicas()[1].Up)
	require.Equal(t, int64(1+6), a.Requests())

	b.Restart()
	require.Eventually(t, func() bool { return p.Replicas()[1].Up }, 10*time.Second, 10*time.Millisecond)
	for i := range 4 {
		sampleOnce(ctx, t, p.Policy, int64(20+i))
	}
	require.Equal(t, int64(1+2), b.Requests(), "b takes its turn again")
}

// TestFailingReplicaIsEjected: a replica answering 500 to every request
// (tinylm's ErrorRate 1, as vLLM does when its engine died) is ejected
// after one attempt; the calls it failed are retried on the other.
func TestFailingReplicaIsEjected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := tinylmtest.StartReplica(t, tinylm.ServerOptions{})
	b := tinylmtest.StartReplica(t, tinylm.ServerOptions{Faults: tinylm.Faults{ErrorRate: 1}})
	p := newReplicaPolicy(t, 4, time.Minute, a, b)
	for i := range 6 {
		sampleOnce(ctx, t, p.Policy, int64(i))
	}
	require.Equal(t, []int{500}, p.statuses(b))
	st := p.Replicas()
	require.False(t, st[1].Up)
	require.Zero(t, st[1].Served)
	require.Equal(t, int64(6), st[0].Served)
}

// TestAllReplicasDown: with every replica dead a call fails as it does with
// one server (transient, after its retries), and when one comes back the
// calls succeed again without waiting for anything but that server.
func TestAllReplicasDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := tinylmtest.StartReplica(t, tinylm.ServerOptions{}), tinylmtest.StartReplica(t, tinylm.ServerOptions{})
	p := newReplicaPolicy(t, 4, time.Minute, a, b)
	a.Kill()
	b.Kill()
	_, err := p.Sample(ctx, questionPrompt, defaultSampling(2, 1))
	require.Error(t, err)
	require.True(t, IsTransient(err), "%v", err)
	for _, st := range p.Replicas() {
		require.False(t, st.Up)
	}
	a.Restart()
	sampleOnce(ctx, t, p.Policy, 2)
	require.True(t, p.Replicas()[0].Up, "a success re-admits a replica without waiting for its probe")
}

// TestSingleReplicaIsNeverEjected: without replicas there is nowhere else
// to send work, so a dead server stays a candidate.
func TestSingleReplicaIsNeverEjected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := tinylmtest.StartReplica(t, tinylm.ServerOptions{})
	p := newReplicaPolicy(t, 4, time.Minute, a)
	a.Kill()
	_, err := p.Sample(ctx, questionPrompt, defaultSampling(2, 1))
	require.True(t, IsTransient(err), "%v", err)
	require.True(t, p.Replicas()[0].Up)
}

// TestRewardReplicas: the reward client's routes (/classify under the
// root, get_reward's full route) move to the chosen replica.
func TestRewardReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b := tinylmtest.StartReplica(t, tinylm.ServerOptions{}), tinylmtest.StartReplica(t, tinylm.ServerOptions{})
	r, err := NewReward(Endpoint{Name: "reward", BaseURLs: []string{a.URL(), b.URL()}, Kind: KindClassify, Model: rewardModel, Timeout: 10 * time.Second},
		WithChatTemplate(TemplateTinyLM))
	require.NoError(t, err)
	for range 4 {
		scores, err := r.Score(ctx, questionPrompt, []string{"water early in the morning .", "no"})
		require.NoError(t, err)
		require.Len(t, scores, 2)
	}
	require.Equal(t, int64(2), a.Requests())
	require.Equal(t, int64(2), b.Requests())

	g, err := NewReward(Endpoint{Name: "reward", BaseURLs: []string{"http://a:1/get_reward", "http://b:1"}, Kind: KindGetReward},
		WithChatTemplate(TemplateChatML))
	require.NoError(t, err)
	require.Equal(t, "http://a:1/get_reward", g.route)
	require.Equal(t, []string{"http://a:1", "http://b:1"}, []string{g.Replicas()[0].URL, g.Replicas()[1].URL})
}
