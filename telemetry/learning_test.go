package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
	"github.com/selfplay/selfplay/telemetry"
)

// The learning check's summary is served once the check has one.
func TestRunCollectorLearningCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "demo", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "it0", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	it := its[0].ID
	storetest.SeedPairs(t, pool, it, []float64{1, 2, 3}, []float64{0.5, 0.5, 0.5})
	_, err = store.StartLearningCheck(ctx, pool, store.LearningCheck{IterationID: it, Model: "m-1", Implicit: "simpo", Beta: 0.01, Sample: 3, Seed: 1})
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	reg.MustRegister(telemetry.NewRunCollector(pool, "demo", discard))
	url := serve(t, reg) + "/metrics"
	fams := scrape(t, url)
	require.EqualValues(t, 3, value(fams, "selfplay_run_tasks", "iteration", "it0", "kind", "learn", "status", "pending"))
	require.NotContains(t, fams, "selfplay_learning_mean_delta", "no summary yet")

	ptr := func(v float64) *float64 { return &v }
	require.NoError(t, store.SetLearningSummary(ctx, pool, it, metric.LearningSummary{
		Selected:    metric.GroupStats{N: 1, MeanDelta: ptr(0.5), Learned: ptr(1)},
		NotSelected: metric.GroupStats{N: 2, MeanDelta: ptr(-0.25), Learned: ptr(0.5)},
		Spearman: map[metric.Metric]metric.Correlation{
			metric.AlignmentPotential: {Rho: ptr(0.75)},
			metric.Random:             {},
		},
	}))
	fams = scrape(t, url)
	require.Equal(t, 0.5, value(fams, "selfplay_learning_mean_delta", "iteration", "it0", "selected", "true"))
	require.Equal(t, -0.25, value(fams, "selfplay_learning_mean_delta", "iteration", "it0", "selected", "false"))
	require.Equal(t, 1.0, value(fams, "selfplay_learning_learned_share", "iteration", "it0"))
	require.Equal(t, 0.75, value(fams, "selfplay_learning_spearman", "iteration", "it0", "metric", "alignment_potential"))
	require.Len(t, fams["selfplay_learning_spearman"].GetMetric(), 1, "an undefined ρ is left out")
}
