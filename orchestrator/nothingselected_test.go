package orchestrator

import (
	"context"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestIterationThatSelectsNothingFails: an iteration whose pool is not
// empty but whose selection is fails the scoring stage with the reason,
// instead of exporting an empty dataset and calling the stage done.
func TestIterationThatSelectsNothingFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	newState := func(name string, cfg config.Iteration) *iterationState {
		run, err := store.EnsureRun(ctx, pool, name, []byte(`{}`))
		require.NoError(t, err)
		its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)}})
		require.NoError(t, err)
		c := config.Defaults()
		c.Iterations = []config.Iteration{cfg}
		o := &Orchestrator{cfg: &c, pool: pool, log: slog.New(slog.DiscardHandler)}
		return &iterationState{o: o, run: run, it: its[0], cfg: cfg}
	}
	defaults := config.Defaults()
	base := config.Iteration{Name: "iter0", PolicyModel: "m", Generation: defaults.Generation,
		Scoring: defaults.Scoring, Selection: defaults.Selection, Evolve: defaults.Evolve}

	// scoring.implicit dpo, and no reference scored the responses: no pair
	// has a dpo_margin.
	dpo := base
	dpo.Scoring.Implicit = "dpo"
	st := newState("dpo", dpo)
	storetest.SeedPairs(t, pool, st.it.ID, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
	err := st.score(ctx)
	require.ErrorContains(t, err, "scoring.implicit dpo scores only pairs with reference log-probs, and none of the 3 pairs has them")
	require.ErrorContains(t, err, "the iteration has no reference_model: set iterations[].reference_model or endpoints.reference.model")

	// A ratio too small for the pool: floor(0.2·3) = 0.
	small := base
	small.Selection.Ratio = 0.2
	st = newState("ratio", small)
	storetest.SeedPairs(t, pool, st.it.ID, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
	require.ErrorContains(t, st.score(ctx), "selection ratio 0.2 of 3 pairs keeps none")

	// No prompt formed a pair.
	st = newState("nopair", base)
	ids, err := store.LoadPool(ctx, pool, st.it.ID, []prompt.Prompt{
		prompt.New([]prompt.Message{{Role: "user", Content: "one"}}, "p.jsonl", ""),
		prompt.New([]prompt.Message{{Role: "user", Content: "two"}}, "p.jsonl", ""),
	})
	require.NoError(t, err)
	_, err = store.CreateGenerateTasks(ctx, pool, st.it.ID)
	require.NoError(t, err)
	for _, id := range ids {
		require.NoError(t, store.FinishTask(ctx, pool, store.TaskKey{IterationID: st.it.ID, PromptID: id, Kind: "generate"}, "all_rewards_equal", 1))
	}
	require.ErrorContains(t, st.score(ctx), "none of the 2 prompts formed a pair (outcomes: 2× all_rewards_equal)")

	// A selection that keeps pairs is no error.
	st = newState("fine", base)
	storetest.SeedPairs(t, pool, st.it.ID, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
	require.NoError(t, st.score(ctx))
}
