package orchestrator

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestEmptyPoolNamesTheFilters: an iteration of evolved prompts whose pool
// came out empty says what the previous iteration's evolve tasks dropped
// and why, not "add prompts.files" alone.
func TestEmptyPoolNamesTheFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	cfg := config.Defaults()
	cfg.Iterations = []config.Iteration{
		{Name: "iter0", PolicyModel: "m", Prompts: config.Prompts{Files: []string{"p.jsonl"}}, Evolve: cfg.Evolve},
		{Name: "iter1", PolicyModel: "m", Prompts: config.Prompts{Evolved: true}, Evolve: cfg.Evolve},
	}
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	var specs []store.IterationSpec
	for i, it := range cfg.Iterations {
		settings, err := json.Marshal(it.Settings())
		require.NoError(t, err)
		specs = append(specs, store.IterationSpec{Ordinal: i, Name: it.Name, PolicyModel: "m", Config: settings})
	}
	its, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	require.NoError(t, err)
	o := &Orchestrator{cfg: &cfg, pool: pool, log: slog.New(slog.DiscardHandler)}
	st := &iterationState{o: o, run: run, it: its[1], cfg: cfg.Iterations[1]}

	// iter0 selected nothing to evolve.
	err = st.emptyPool(ctx)
	require.ErrorContains(t, err, "iteration iter0 selected no prompts to evolve (evolve.ratio 0.25")

	// iter0's two evolve tasks kept nothing.
	ps := []prompt.Prompt{
		prompt.New([]prompt.Message{{Role: "user", Content: "one"}}, "p.jsonl", ""),
		prompt.New([]prompt.Message{{Role: "user", Content: "two"}}, "p.jsonl", ""),
	}
	ids, err := store.LoadPool(ctx, pool, its[0].ID, ps)
	require.NoError(t, err)
	for i, id := range ids {
		_, err := pool.Exec(ctx, `INSERT INTO tasks (iteration_id, prompt_id, kind) VALUES ($1, $2, 'evolve')`, its[0].ID, id)
		require.NoError(t, err)
		outcome := "kept 0 of 5; dropped: 5 duplicate of a prompt of this run"
		if i == 1 {
			outcome = "kept 0 of 5; dropped: 3 too long for length_ratio, 2 empty"
		}
		require.NoError(t, store.FinishTask(ctx, pool, store.TaskKey{IterationID: its[0].ID, PromptID: id, Kind: "evolve"}, outcome, 1))
	}
	err = st.emptyPool(ctx)
	require.ErrorContains(t, err, "the evolve tasks of iteration iter0 kept no rewrite")
	require.ErrorContains(t, err, "1× kept 0 of 5; dropped: 3 too long for length_ratio, 2 empty")
	require.ErrorContains(t, err, "1× kept 0 of 5; dropped: 5 duplicate of a prompt of this run")
	require.ErrorContains(t, err, "evolve.length_ratio")
}
