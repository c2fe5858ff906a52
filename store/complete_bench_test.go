package store_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// BenchmarkSettleGenerateTask measures the database side of one generate
// task: reading it with its prompt and writing its four responses, its
// pair and its status.
func BenchmarkSettleGenerateTask(b *testing.B) {
	ctx := context.Background()
	pool, _ := storetest.NewPool(b)
	run, err := store.EnsureRun(ctx, pool, "bench", []byte(`{}`))
	require.NoError(b, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "i", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(b, err)
	it := its[0].ID
	mex := make([]float64, b.N)
	storetest.SeedPairs(b, pool, it, mex, mex) // b.N prompts in the pool
	_, err = pool.Exec(ctx, `DELETE FROM pairs; DELETE FROM responses`)
	require.NoError(b, err)
	_, err = store.CreateGenerateTasks(ctx, pool, it)
	require.NoError(b, err)
	var ids []int64
	rows, err := pool.Query(ctx, `SELECT prompt_id FROM tasks WHERE iteration_id = $1 ORDER BY prompt_id`, it)
	require.NoError(b, err)
	for rows.Next() {
		var id int64
		require.NoError(b, rows.Scan(&id))
		ids = append(ids, id)
	}
	r := 1.5
	resp := make([]store.Response, 4)
	for i := range resp {
		resp[i] = store.Response{SampleIndex: i, Content: "a response of some thirty words or so, long enough to be realistic in size", TokenCount: 30, LogProbSum: -40, FinishReason: "stop", Reward: &r}
	}
	b.ResetTimer()
	for i := range b.N {
		k := store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"}
		if _, _, err := store.ReadTask(ctx, pool, k); err != nil {
			b.Fatal(err)
		}
		if err := store.CompleteGenerate(ctx, pool, k, "paired", 1, resp, &store.PairChoice{Chosen: 0, Rejected: 3, ExplicitMargin: 1, ImplicitMargin: 0.1}); err != nil {
			b.Fatal(err)
		}
	}
}
