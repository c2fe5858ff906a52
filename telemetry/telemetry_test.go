package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/telemetry"
	"github.com/selfplay/selfplay/tinylm"
	"github.com/selfplay/selfplay/tinylm/tinylmtest"
)

var discard = slog.New(slog.DiscardHandler)

// serve serves g on a free port for the test and returns the metrics URL.
func serve(t *testing.T, g prometheus.Gatherer) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := telemetry.Serve(ctx, "127.0.0.1:0", g, discard)
	require.NoError(t, err)
	return "http://" + addr.String()
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	require.NoError(t, err)
	return fams
}

// value is the value of the series of a family with exactly these labels
// (a histogram's sample count); -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	fam := fams[name]
	if fam == nil {
		return -1
	}
next:
	for _, m := range fam.Metric {
		if len(m.Label) != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

func TestWorkerMetricsCountSamplingAgainstTinylm(t *testing.T) {
	t.Parallel()
	reg := telemetry.NewRegistry()
	m := telemetry.NewWorkerMetrics(reg)
	url := serve(t, reg)
	base := tinylmtest.Start(t, tinylm.ServerOptions{})
	policy, err := llm.NewPolicy(llm.Endpoint{Name: "policy", BaseURL: base + "/v1", MaxConcurrency: 4, Timeout: 10 * time.Second, MaxRetries: 2},
		llm.WithHooks(m.LLMHooks()), llm.WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	sampler := m.Sampler("generate", policy)

	seed := int64(3)
	samples, err := sampler.Sample(context.Background(), []llm.Message{{Role: "user", Content: "how do i cook rice ?"}},
		llm.SampleParams{Model: "tiny-0", N: 3, Temperature: 0.8, TopP: 0.95, MaxTokens: 24, Seed: &seed})
	require.NoError(t, err)
	require.Len(t, samples, 3)
	tokens := 0
	for _, s := range samples {
		tokens += s.Tokens
	}
	require.Positive(t, tokens)
	// The same client wrapped for evolution counts under its own kind.
	evolved, err := m.Sampler("evolve", policy).Sample(context.Background(), []llm.Message{{Role: "user", Content: "give me some advice about studying ."}},
		llm.SampleParams{Model: "tiny-0", N: 1, Temperature: 0.7, MaxTokens: 24, Seed: &seed})
	require.NoError(t, err)
	require.Len(t, evolved, 1)

	// A model the server does not serve: a permanent 4xx, not retried.
	_, err = sampler.Sample(context.Background(), []llm.Message{{Role: "user", Content: "hi"}},
		llm.SampleParams{Model: "no-such-model", N: 1, Temperature: 0.8})
	var lerr *llm.Error
	require.ErrorAs(t, err, &lerr)
	require.GreaterOrEqual(t, lerr.Status, 400)
	bad := strconv.Itoa(lerr.Status)

	fams := scrape(t, url+"/metrics")
	require.EqualValues(t, tokens, value(fams, "selfplay_tokens_sampled_total", "kind", "generate"))
	require.EqualValues(t, 3, value(fams, "selfplay_responses_sampled_total", "kind", "generate"))
	require.EqualValues(t, evolved[0].Tokens, value(fams, "selfplay_tokens_sampled_total", "kind", "evolve"))
	require.EqualValues(t, 1, value(fams, "selfplay_responses_sampled_total", "kind", "evolve"))
	require.EqualValues(t, 2, value(fams, "selfplay_endpoint_requests_total", "endpoint", "policy", "status", "200"))
	require.EqualValues(t, 1, value(fams, "selfplay_endpoint_requests_total", "endpoint", "policy", "status", bad))
	require.EqualValues(t, 1, value(fams, "selfplay_endpoint_errors_total", "endpoint", "policy", "status", bad))
	require.EqualValues(t, -1, value(fams, "selfplay_endpoint_errors_total", "endpoint", "policy", "status", "200"), "a success is no error")
	require.EqualValues(t, 3, value(fams, "selfplay_endpoint_request_duration_seconds", "endpoint", "policy"))
	require.EqualValues(t, -1, value(fams, "selfplay_endpoint_retries_total", "endpoint", "policy"), "nothing was retried")
	require.NotNil(t, fams["go_goroutines"], "the Go runtime collector is registered")
}

func TestWorkerMetricsCountRetriesOf500s(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := telemetry.NewWorkerMetrics(reg)
	url := serve(t, reg)
	// Every model request fails with a 500: the client tries 1 + 2 times.
	base := tinylmtest.Start(t, tinylm.ServerOptions{Faults: tinylm.Faults{ErrorRate: 1}})
	reward, err := llm.NewReward(llm.Endpoint{Name: "reward", BaseURL: base, Kind: "classify", Model: "reward",
		MaxConcurrency: 1, Timeout: 10 * time.Second, MaxRetries: 2},
		llm.WithHooks(m.LLMHooks()), llm.WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	_, err = reward.Score(context.Background(), []llm.Message{{Role: "user", Content: "hi"}}, []string{"hello"})
	require.Error(t, err)

	fams := scrape(t, url+"/metrics")
	require.EqualValues(t, 3, value(fams, "selfplay_endpoint_requests_total", "endpoint", "reward", "status", "500"))
	require.EqualValues(t, 3, value(fams, "selfplay_endpoint_errors_total", "endpoint", "reward", "status", "500"))
	require.EqualValues(t, 2, value(fams, "selfplay_endpoint_retries_total", "endpoint", "reward"))
	require.EqualValues(t, 3, value(fams, "selfplay_endpoint_request_duration_seconds", "endpoint", "reward"))
}

func TestWorkerMetricsTasksAndInFlight(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := telemetry.NewWorkerMetrics(reg)
	url := serve(t, reg)
	for _, ev := range []struct{ kind, outcome string }{
		{"generate", "done"}, {"generate", "done"}, {"generate", "retry"}, {"evolve", "failed"}, {"invalid", "term"},
	} {
		m.OnTask(ev.kind, ev.outcome)
	}
	m.OnInFlight(1)
	m.OnInFlight(1)
	m.OnInFlight(1)
	m.OnInFlight(-1)

	fams := scrape(t, url+"/metrics")
	tests := []struct {
		name   string
		metric string
		labels []string
		want   float64
	}{
		{"done generate tasks", "selfplay_tasks_total", []string{"kind", "generate", "outcome", "done"}, 2},
		{"retried generate tasks", "selfplay_tasks_total", []string{"kind", "generate", "outcome", "retry"}, 1},
		{"failed evolve tasks", "selfplay_tasks_total", []string{"kind", "evolve", "outcome", "failed"}, 1},
		{"terminated non-tasks", "selfplay_tasks_total", []string{"kind", "invalid", "outcome", "term"}, 1},
		{"no done evolve task", "selfplay_tasks_total", []string{"kind", "evolve", "outcome", "done"}, -1},
		{"in flight", "selfplay_tasks_in_flight", nil, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, value(fams, tt.metric, tt.labels...))
		})
	}
}

func TestRunCollectorWithoutDatabaseLeavesOtherMetricsServed(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every query of the collector fails.
	pool, err := pgxpool.New(context.Background(), "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	reg := prometheus.NewRegistry()
	m := telemetry.NewWorkerMetrics(reg)
	reg.MustRegister(telemetry.NewRunCollector(pool, "demo", discard))
	m.OnInFlight(1)

	fams := scrape(t, serve(t, reg)+"/metrics")
	require.EqualValues(t, 1, value(fams, "selfplay_tasks_in_flight"))
	require.Nil(t, fams["selfplay_iteration_stage"])
	require.Nil(t, fams["selfplay_run_tasks"])
}

func TestServeAnswersOnlyMetricsAndItsIndex(t *testing.T) {
	t.Parallel()
	url := serve(t, telemetry.NewRegistry())
	tests := []struct {
		name, path string
		status     int
		body       string
	}{
		{"metrics", "/metrics", http.StatusOK, "go_goroutines"},
		{"index", "/", http.StatusOK, "/metrics"},
		{"anything else", "/debug", http.StatusNotFound, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(url + tt.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tt.status, resp.StatusCode)
			require.Contains(t, string(b), tt.body)
		})
	}
}

func TestServeReportsAnAddressInUse(t *testing.T) {
	t.Parallel()
	url := serve(t, prometheus.NewRegistry())
	_, err := telemetry.Serve(context.Background(), url[len("http://"):], prometheus.NewRegistry(), discard)
	require.ErrorContains(t, err, fmt.Sprintf("metrics: listen on %s", url[len("http://"):]))
}
