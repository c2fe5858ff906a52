package llm

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

// Live tests: the clients against the project's tinylm server over real
// HTTP on 127.0.0.1.

const (
	tinyModel   = "tiny-0"
	rewardModel = "reward"
)

var questionPrompt = []Message{{Role: "user", Content: "how do i keep my garden healthy in summer ?"}}

// liveBundle is a tinylm server and a request counter fed by hooks.
type liveBundle struct {
	baseURL  string
	requests atomic.Int64
	retries  atomic.Int64
	mu       sync.Mutex
	delays   []time.Duration
}

func startLive(t *testing.T, faults tinylm.Faults) *liveBundle {
	t.Helper()
	return &liveBundle{baseURL: tinylmtest.Start(t, tinylm.ServerOptions{Faults: faults})}
}

// opts are the options every live client gets: counting hooks and a fast
// backoff so retry tests stay short.
func (b *liveBundle) opts(extra ...Option) []Option {
	return append([]Option{
		WithHooks(Hooks{
			OnRequest: func(RequestInfo) { b.requests.Add(1) },
			OnRetry: func(ri RetryInfo) {
				b.retries.Add(1)
				b.mu.Lock()
				b.delays = append(b.delays, ri.Delay)
				b.mu.Unlock()
			},
		}),
		WithBackoff(time.Millisecond, 20*time.Millisecond),
	}, extra...)
}

func (b *liveBundle) endpoint(name string) Endpoint {
	return Endpoint{Name: name, BaseURL: b.baseURL + "/v1", MaxConcurrency: 16, Timeout: 10 * time.Second}
}

func seedPtr(s int64) *int64 { return &s }

func defaultSampling(n int, seed int64) SampleParams {
	return SampleParams{Model: tinyModel, N: n, Temperature: 0.8, TopP: 0.95, MaxTokens: 48, Seed: seedPtr(seed)}
}

func TestPolicySampleLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	ctx := context.Background()

	samples, err := p.Sample(ctx, questionPrompt, defaultSampling(5, 42))
	require.NoError(t, err)
	require.Len(t, samples, 5)
	require.EqualValues(t, 1, b.requests.Load(), "n = 5 must be one request")
	for i, s := range samples {
		require.Positive(t, s.Tokens, "sample %d", i)
		require.Len(t, s.TokenIDs, s.Tokens, "sample %d", i)
		require.Less(t, s.LogProb, 0.0, "sample %d", i)
		require.Contains(t, []string{"stop", "length"}, s.FinishReason, "sample %d", i)
		if s.FinishReason == "length" {
			require.Equal(t, 48, s.Tokens, "a length finish uses all max_tokens")
		}
	}

	again, err := p.Sample(ctx, questionPrompt, defaultSampling(5, 42))
	require.NoError(t, err)
	require.Equal(t, samples, again, "same seed, same samples")

	// Without token ids: the same samples, sums to the bit, but no ids
	// (tinylm, like vLLM, sends them only when return_token_ids asks).
	sp := defaultSampling(5, 42)
	sp.WithoutTokenIDs = true
	bare, err := p.Sample(ctx, questionPrompt, sp)
	require.NoError(t, err)
	require.Len(t, bare, 5)
	for i, s := range bare {
		require.Nil(t, s.TokenIDs, "sample %d", i)
		require.Nil(t, s.PromptTokenIDs, "sample %d", i)
		s.TokenIDs, s.PromptTokenIDs = samples[i].TokenIDs, samples[i].PromptTokenIDs
		require.Equal(t, samples[i], s, "sample %d", i)
	}
}

func TestPolicyFallsBackWhenServerReturnsFewerChoices(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	// Forcing n = 1 on the wire makes tinylm behave like a server that
	// ignores n: one choice back for five asked.
	p, err := NewPolicy(b.endpoint("policy"), b.opts(WithChatRequestExtras(ChatRequestExtras{"n": 1}))...)
	require.NoError(t, err)
	samples, err := p.Sample(ctx, questionPrompt, defaultSampling(5, 100))
	require.NoError(t, err)
	require.Len(t, samples, 5)
	require.EqualValues(t, 1+5, b.requests.Load(), "one n-request, then one request per sample")

	_, err = p.Sample(ctx, questionPrompt, defaultSampling(5, 100))
	require.NoError(t, err)
	require.EqualValues(t, 6+5, b.requests.Load(), "the fallback is remembered for the model")

	// Sample i of the fallback used seed 100+i.
	plain, err := NewPolicy(b.endpoint("policy"))
	require.NoError(t, err)
	for i := range 5 {
		one, err := plain.Sample(ctx, questionPrompt, defaultSampling(1, 100+int64(i)))
		require.NoError(t, err)
		require.Equal(t, one[0], samples[i], "sample %d", i)
	}
}

func TestRewardClassifyLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	p, err := NewPolicy(b.endpoint("policy"))
	require.NoError(t, err)
	samples, err := p.Sample(ctx, questionPrompt, defaultSampling(5, 7))
	require.NoError(t, err)
	responses := make([]string, len(samples))
	for i, s := range samples {
		responses[i] = s.Content
	}

	ep := b.endpoint("reward")
	ep.Kind, ep.Model = KindClassify, rewardModel
	batched, err := NewReward(ep, b.opts(WithChatTemplate(TemplateTinyLM))...)
	require.NoError(t, err)
	scores, err := batched.Score(ctx, questionPrompt, responses)
	require.NoError(t, err)
	require.Len(t, scores, 5)
	require.EqualValues(t, 1, b.requests.Load(), "5 responses in one request")

	chatForm, err := NewReward(ep)
	require.NoError(t, err)
	perResponse, err := chatForm.Score(ctx, questionPrompt, responses)
	require.NoError(t, err)
	require.InDeltaSlice(t, scores, perResponse, 1e-12, "rendered text and chat form score alike")

	lo, hi := math.Inf(1), math.Inf(-1)
	for _, s := range scores {
		lo, hi = min(lo, s), max(hi, s)
	}
	require.Greater(t, hi-lo, 0.0, "samples of one prompt get different rewards")

	empty, err := batched.Score(ctx, questionPrompt, nil)
	require.NoError(t, err)
	require.Empty(t, empty)
}

func TestReferenceMatchesSamplerLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ctx := context.Background()
	p, err := NewPolicy(b.endpoint("policy"))
	require.NoError(t, err)
	ref, err := NewReference(Endpoint{Name: "reference", BaseURL: b.baseURL, Model: tinyModel})
	require.NoError(t, err)
	require.NoError(t, ref.Probe(ctx, ""))

	samples, err := p.Sample(ctx, questionPrompt, SampleParams{Model: tinyModel, N: 8, Temperature: 1, MaxTokens: 64, Seed: seedPtr(3)})
	require.NoError(t, err)
	eot, err := ref.endOfTurn(ctx, tinyModel)
	require.NoError(t, err)
	require.True(t, eot.found, "tinylm's template closes a turn with <|end|>")
	var stopped int
	for i, s := range samples {
		// The sampler's own ids, teacher-forced, give back its log-prob sum:
		// the reference model is the policy here.
		byIDs, err := ref.LogProbTokens(ctx, "", questionPrompt, s.TokenIDs)
		require.NoError(t, err)
		require.InDelta(t, s.LogProb, byIDs, 1e-6, "sample %d", i)

		// From the text, the end-of-turn token is counted as part of y.
		byText, err := ref.LogProb(ctx, "", questionPrompt, s.Content)
		require.NoError(t, err)
		if s.FinishReason == "stop" {
			stopped++
			require.Equal(t, eot.id, s.TokenIDs[len(s.TokenIDs)-1], "sample %d ends on the end-of-turn token", i)
			require.InDelta(t, s.LogProb, byText, 1e-6, "sample %d", i)
			continue
		}
		withEOT, err := ref.LogProbTokens(ctx, "", questionPrompt, append(slices.Clone(s.TokenIDs), eot.id))
		require.NoError(t, err)
		require.InDelta(t, withEOT, byText, 1e-6, "sample %d", i)
		require.Less(t, byText, s.LogProb, "sample %d: the end-of-turn token adds a negative term", i)
	}
	require.Positive(t, stopped, "some samples end on the end-of-turn token")
}

func TestReferenceProbeFailsClearly(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ref, err := NewReference(Endpoint{Name: "reference", BaseURL: b.baseURL})
	require.NoError(t, err)

	err = ref.Probe(context.Background(), "no-such-model")
	require.Error(t, err)
	require.True(t, IsPermanent(err))
	require.ErrorContains(t, err, `reference endpoint (model "no-such-model")`)
	require.ErrorContains(t, err, "capability probe failed")

	err = ref.Probe(context.Background(), "")
	require.ErrorContains(t, err, "no model named")
}

func TestTransientFaultsAreRetriedLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{ErrorRate: 0.3, Latency: 2 * time.Millisecond, LatencyJitter: 8 * time.Millisecond, Seed: 11})
	ctx := context.Background()
	pol := b.endpoint("policy")
	pol.MaxRetries = 12 // 0.3^13 per call: no flake over this test's calls
	p, err := NewPolicy(pol, b.opts()...)
	require.NoError(t, err)
	rew := b.endpoint("reward")
	rew.Kind, rew.Model, rew.MaxRetries = KindClassify, rewardModel, 12
	r, err := NewReward(rew, b.opts(WithChatTemplate(TemplateTinyLM))...)
	require.NoError(t, err)
	ref, err := NewReference(Endpoint{Name: "reference", BaseURL: b.baseURL, Model: tinyModel, MaxRetries: 12}, b.opts()...)
	require.NoError(t, err)

	const calls = 16
	errs := make(chan error, 3*calls)
	var wg sync.WaitGroup
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			samples, err := p.Sample(ctx, questionPrompt, defaultSampling(4, int64(i)))
			if err != nil {
				errs <- err
				return
			}
			texts := []string{samples[0].Content, samples[1].Content, samples[2].Content, samples[3].Content}
			if _, err := r.Score(ctx, questionPrompt, texts); err != nil {
				errs <- err
			}
			if _, err := ref.LogProb(ctx, "", questionPrompt, texts[0]); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Positive(t, b.retries.Load(), "30%% errors must have caused retries")
}

func TestFailureClassificationLive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		faults     tinylm.Faults
		model      string
		timeout    time.Duration
		permanent  bool
		status     int
		attempts   int
		reasonPart string
	}{
		{
			name: "server errors exhaust retries as transient", faults: tinylm.Faults{ErrorRate: 1},
			status: 500, attempts: 3, reasonPart: "injected fault: internal server error",
		},
		{
			name: "malformed bodies become permanent after retries", faults: tinylm.Faults{MalformedRate: 1, Seed: 5},
			permanent: true, status: 200, attempts: 3, reasonPart: "malformed response body",
		},
		{
			name: "hung requests time out", faults: tinylm.Faults{HangRate: 1}, timeout: 50 * time.Millisecond,
			attempts: 3, reasonPart: "no response within the 50ms timeout",
		},
		{
			name: "unknown model is permanent at once", model: "no-such-model",
			permanent: true, status: 404, attempts: 1, reasonPart: "no-such-model",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := startLive(t, tc.faults)
			ep := b.endpoint("policy")
			ep.MaxRetries = 2
			if tc.timeout > 0 {
				ep.Timeout = tc.timeout
			}
			p, err := NewPolicy(ep, b.opts()...)
			require.NoError(t, err)
			sp := defaultSampling(2, 1)
			if tc.model != "" {
				sp.Model = tc.model
			}
			_, err = p.Sample(context.Background(), questionPrompt, sp)
			require.Error(t, err)
			var e *Error
			require.ErrorAs(t, err, &e)
			require.Equal(t, "policy", e.Endpoint)
			require.Equal(t, sp.Model, e.Model)
			require.Equal(t, tc.permanent, IsPermanent(err))
			require.Equal(t, !tc.permanent, IsTransient(err))
			require.Equal(t, tc.status, e.Status)
			require.Equal(t, tc.attempts, e.Attempts)
			require.Contains(t, e.Error(), tc.reasonPart)
			require.EqualValues(t, tc.attempts, b.requests.Load())
		})
	}
}

func TestRetryAfterIsHonouredLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{RateLimitRate: 1, RetryAfter: 300 * time.Millisecond})
	ctx := context.Background()
	ep := b.endpoint("policy")
	ep.MaxRetries = 1
	p, err := NewPolicy(ep, b.opts()...)
	require.NoError(t, err)
	// tinylm sends whole seconds, rounded up: Retry-After: 1.
	_, err = p.Sample(ctx, questionPrompt, defaultSampling(1, 1))
	require.True(t, IsTransient(err))
	require.Equal(t, time.Second, RetryAfterOf(err))
	b.mu.Lock()
	require.Equal(t, []time.Duration{time.Second}, b.delays, "the retry waited the server's Retry-After, not the 1ms backoff")
	b.mu.Unlock()

	// A hint longer than the client may wait ends the call at once, for the
	// caller to requeue.
	short, err := NewPolicy(ep, b.opts(WithMaxRetryAfter(100*time.Millisecond))...)
	require.NoError(t, err)
	before := b.requests.Load()
	_, err = short.Sample(ctx, questionPrompt, defaultSampling(1, 1))
	require.True(t, IsTransient(err))
	require.ErrorContains(t, err, "server asks to retry after 1s")
	require.EqualValues(t, 1, b.requests.Load()-before)
}

func TestCallerCancellationLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{HangRate: 1})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = p.Sample(ctx, questionPrompt, defaultSampling(1, 1))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, IsPermanent(err))
	require.False(t, IsTransient(err))
	require.Less(t, time.Since(start), 5*time.Second, "the 10s attempt timeout did not have to pass")
}

// countingTransport observes requests on the wire: how many are in flight
// at once and which Authorization header they carry.
type countingTransport struct {
	next     http.RoundTripper
	inFlight atomic.Int64
	peak     atomic.Int64
	auth     sync.Map
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for {
		p := c.peak.Load()
		if n <= p || c.peak.CompareAndSwap(p, n) {
			break
		}
	}
	c.auth.Store(req.Header.Get("Authorization"), true)
	return c.next.RoundTrip(req)
}

func TestConcurrencyLimitAndAPIKeyLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{Latency: 20 * time.Millisecond})
	ct := &countingTransport{next: newHTTPTransport(8)}
	ep := b.endpoint("policy")
	ep.MaxConcurrency = 3
	ep.APIKey = "sk-test-secret"
	p, err := NewPolicy(ep, b.opts(WithHTTPClient(&http.Client{Transport: ct}))...)
	require.NoError(t, err)

	errs := make(chan error, 12)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.Sample(context.Background(), questionPrompt, defaultSampling(1, int64(i)))
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.EqualValues(t, 3, ct.peak.Load(), "never more than MaxConcurrency in flight, and the limit is used")
	_, sent := ct.auth.Load("Bearer sk-test-secret")
	require.True(t, sent, "API key sent as a bearer token")
}

func TestAPIKeyNeverLoggedLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{ErrorRate: 1})
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ep := b.endpoint("policy")
	ep.APIKey, ep.MaxRetries = "sk-never-print-me", 1
	p, err := NewPolicy(ep, b.opts(WithLogger(logger))...)
	require.NoError(t, err)
	_, err = p.Sample(context.Background(), questionPrompt, defaultSampling(1, 1))
	require.Error(t, err)
	require.Contains(t, logs.String(), "llm request retry")
	require.Contains(t, logs.String(), "endpoint=policy")
	require.NotContains(t, logs.String(), "sk-never-print-me")
	require.NotContains(t, err.Error(), "sk-never-print-me")
}

type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestJudgeLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	ep := b.endpoint("reward")
	ep.Kind, ep.Model = KindJudge, tinyModel
	r, err := NewReward(ep, b.opts()...)
	require.NoError(t, err)
	responses := []string{"water early in the morning .", "i like trains ."}
	scores, err := r.Score(context.Background(), questionPrompt, responses)
	// The tiny model is no grader: it may or may not put a number in its
	// reply. Either way the outcome is classified.
	if err != nil {
		require.True(t, IsPermanent(err))
		require.ErrorContains(t, err, "judge reply holds no grade from 1 to 10")
		return
	}
	require.EqualValues(t, len(responses), b.requests.Load(), "one judge call per response")
	require.Len(t, scores, len(responses))
	for _, s := range scores {
		require.GreaterOrEqual(t, s, 1.0)
		require.LessOrEqual(t, s, 10.0)
	}
}

func TestBadInputFailsBeforeAnyRequestLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{})
	p, err := NewPolicy(b.endpoint("policy"), b.opts()...)
	require.NoError(t, err)
	rewardEP := b.endpoint("reward")
	rewardEP.Kind, rewardEP.Model = KindClassify, rewardModel
	r, err := NewReward(rewardEP, b.opts()...)
	require.NoError(t, err)
	ref, err := NewReference(Endpoint{Name: "reference", BaseURL: b.baseURL, Model: tinyModel}, b.opts()...)
	require.NoError(t, err)
	ctx := context.Background()

	tests := []struct {
		name   string
		call   func() error
		reason string
	}{
		{name: "n zero", call: func() error {
			_, err := p.Sample(ctx, questionPrompt, SampleParams{Model: tinyModel, N: 0})
			return err
		}, reason: "n = 0, must be at least 1"},
		{name: "negative temperature", call: func() error {
			_, err := p.Sample(ctx, questionPrompt, SampleParams{Model: tinyModel, N: 1, Temperature: -0.1})
			return err
		}, reason: "temperature -0.1 must be a finite number ≥ 0"},
		{name: "top_p above one", call: func() error {
			_, err := p.Sample(ctx, questionPrompt, SampleParams{Model: tinyModel, N: 1, TopP: 1.5})
			return err
		}, reason: "top_p 1.5 must be in (0, 1]"},
		{name: "no model", call: func() error {
			_, err := p.Sample(ctx, questionPrompt, SampleParams{N: 1})
			return err
		}, reason: "no model named"},
		{name: "no messages", call: func() error {
			_, err := p.Sample(ctx, nil, SampleParams{Model: tinyModel, N: 1})
			return err
		}, reason: "invalid prompt: no messages"},
		{name: "message without role", call: func() error {
			_, err := r.Score(ctx, []Message{{Content: "hi"}}, []string{"x"})
			return err
		}, reason: "message 0 has no role"},
		{name: "negative token id", call: func() error {
			_, err := ref.LogProbTokens(ctx, "", questionPrompt, []int{3, -1})
			return err
		}, reason: "invalid response token id -1 at position 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			require.True(t, IsPermanent(err), "%v", err)
			require.ErrorContains(t, err, tc.reason)
		})
	}
	require.Zero(t, b.requests.Load(), "bad input never reaches the server")
}

func TestCallerDeadlineShorterThanBackoffLive(t *testing.T) {
	t.Parallel()
	b := startLive(t, tinylm.Faults{ErrorRate: 1})
	p, err := NewPolicy(b.endpoint("policy"), WithBackoff(time.Minute, time.Minute))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = p.Sample(ctx, questionPrompt, defaultSampling(1, 1))
	// Waiting out the backoff cannot finish before the caller's deadline, so
	// the transient error comes back at once for the caller to requeue.
	require.True(t, IsTransient(err), "%v", err)
	var e *Error
	require.ErrorAs(t, err, &e)
	require.Equal(t, 1, e.Attempts)
	require.NoError(t, ctx.Err())
}
