package orchestrator

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
)

// TestStageFailsOnceItCannotSucceed: 2 of 20 tasks failed (10%, limit 5%)
// and no worker runs to settle the other 18. Whatever they do, the stage
// ends over the limit, so it fails now with the reasons instead of waiting
// for every task's last delivery.
func TestStageFailsOnceItCannotSucceed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	o, pool := boundOrchestrator(t, func(cfg *config.Config) {
		cfg.Orchestrator.PollInterval = 50 * time.Millisecond
		// No model server: the check of served models leaves it to the workers.
		cfg.Endpoints["policy"] = config.Endpoint{BaseURL: "http://" + selfplaytest.FreeAddr(t) + "/v1"}
	})

	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	var ps []prompt.Prompt
	for i := range 20 {
		ps = append(ps, prompt.New([]prompt.Message{{Role: "user", Content: fmt.Sprintf("prompt %d", i)}}, "p.jsonl", ""))
	}
	ids, err := store.LoadPool(ctx, pool, its[0].ID, ps)
	require.NoError(t, err)
	_, err = store.CreateGenerateTasks(ctx, pool, its[0].ID)
	require.NoError(t, err)
	for _, id := range ids[:2] {
		require.NoError(t, store.FailTask(ctx, pool, store.TaskKey{IterationID: its[0].ID, PromptID: id, Kind: bus.KindGenerate},
			store.Failure{Reason: "policy: model tiny-x does not exist", Endpoint: "policy", Status: 404}, 1))
	}

	st := &iterationState{o: o, run: run, it: its[0], cfg: config.Iteration{Name: "iter0", PolicyModel: "m"}}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Minute) // only the unfixed code waits this long
	defer cancel()
	err = st.dispatch(dctx, bus.KindGenerate)
	require.ErrorContains(t, err, "2 of 20 generate tasks failed (10.0% > max_failed_fraction 5.0%, 18 still pending cannot bring it under the limit)")
	require.ErrorContains(t, err, "policy: model tiny-x does not exist")
	require.NoError(t, dctx.Err())

	// One failure of 20 is within the limit: the stage goes on waiting.
	c, err := store.CountTasks(ctx, pool, its[0].ID, bus.KindGenerate)
	require.NoError(t, err)
	c.Failed, c.Pending = 1, 19
	require.False(t, st.cannotSucceed(c))
}
