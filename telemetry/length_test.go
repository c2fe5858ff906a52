package telemetry_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
	"github.com/selfplay/selfplay/telemetry"
)

// TestLengthCollector: an iteration scored for training exposes its fit
// and mean reply lengths; one whose replies all have the same length has
// no slope series, and one not yet scored has no series at all.
func TestLengthCollector(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "demo", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{
		{Ordinal: 0, Name: "it0", PolicyModel: "m", Config: []byte(`{}`)},
		{Ordinal: 1, Name: "it1", PolicyModel: "m", Config: []byte(`{}`)},
		{Ordinal: 2, Name: "it2", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	// it0: SeedPairs' replies have one token each: no slope.
	storetest.SeedPairs(t, pool, its[0].ID, []float64{1, 2, 3, 4}, []float64{0.5, 0.5, 0.5, 0.5})
	// it1: the same, and the chosen replies made 3 tokens long: rewards
	// 2..5 at 3 tokens and 1 at 1 token give slope (3.5 − 1)/(3 − 1) = 1.25,
	// and chosen 3 tokens, rejected 1, on average.
	storetest.SeedPairs(t, pool, its[1].ID, []float64{1, 2, 3, 4}, []float64{0.5, 0.5, 0.5, 0.5})
	_, err = pool.Exec(ctx, `UPDATE responses SET token_count = 3 WHERE iteration_id = $1 AND sample_index = 0`, its[1].ID)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE pairs SET chosen_tokens = 3 WHERE iteration_id = $1`, its[1].ID)
	require.NoError(t, err)
	for _, it := range its[:2] {
		_, err := store.ScorePairs(ctx, pool, it.ID, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1,
			Ratio: 0.5, LengthControl: "residual"}, store.TrainSelection)
		require.NoError(t, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(telemetry.NewLengthCollector(pool, "demo", discard))
	fams := scrape(t, serve(t, reg)+"/metrics")
	require.InDelta(t, 1.25, value(fams, "selfplay_length_reward_slope", "iteration", "it1"), 1e-12)
	require.EqualValues(t, 1, value(fams, "selfplay_length_residual_applied", "iteration", "it1"))
	require.EqualValues(t, 0, value(fams, "selfplay_length_residual_applied", "iteration", "it0"), "no slope to remove")
	require.EqualValues(t, 3, value(fams, "selfplay_reply_tokens_mean", "iteration", "it1", "group", "chosen"))
	require.EqualValues(t, 1, value(fams, "selfplay_reply_tokens_mean", "iteration", "it1", "group", "rejected"))
	require.EqualValues(t, 1, value(fams, "selfplay_reply_tokens_mean", "iteration", "it0", "group", "all"))
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				require.False(t, l.GetName() == "iteration" && l.GetValue() == "it2", "%s has a series for the unscored it2", f.GetName())
				require.False(t, f.GetName() == "selfplay_length_reward_slope" && l.GetValue() == "it0", "it0 has no slope")
			}
		}
	}
}
