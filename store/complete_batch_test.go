package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestCompleteGeneratesRecordsEachTaskAsAlone: several tasks in one
// statement end as each would alone — a task already settled is left
// as it was, a task without a pair gets its responses only, each pair
// points at its own task's responses with their rewards — with plans made
// per call and with the generic plans a batch writer uses; and a batch
// that cannot be written (a reply PostgreSQL refuses: a NUL byte) writes
// nothing.
func TestCompleteGeneratesRecordsEachTaskAsAlone(t *testing.T) {
	t.Parallel()
	for _, generic := range []bool{false, true} {
		t.Run(fmt.Sprintf("generic plans %v", generic), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			pool, url := storetest.NewPool(t)
			if generic {
				cfg, err := pgxpool.ParseConfig(url)
				require.NoError(t, err)
				cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
					_, err := c.Exec(ctx, store.GenericPlans)
					return err
				}
				pool, err = pgxpool.NewWithConfig(ctx, cfg)
				require.NoError(t, err)
				t.Cleanup(pool.Close)
			}
			it, ids := newTasks(t, pool, 5)
			key := func(i int) store.TaskKey { return store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"} }
			// Task 1 was settled by another delivery first.
			rewardsOther := []float64{9, 8, 7}
			require.NoError(t, store.CompleteGenerate(ctx, pool, key(1), "paired", 1, responses("other", rewardsOther),
				&store.PairChoice{Chosen: 0, Rejected: 2, ExplicitMargin: 2}))

			completion := func(i int, pair bool) store.Completion {
				r := []float64{float64(i), float64(i) + 0.5, float64(i) - 0.25}
				c := store.Completion{Key: key(i), Outcome: "paired", Attempts: i + 1, Responses: responses(fmt.Sprintf("task %d", i), r)}
				if pair {
					c.Pair = &store.PairChoice{Chosen: 1, Rejected: 2, ExplicitMargin: 0.75, ImplicitMargin: 0.125}
				} else {
					c.Outcome = "all_tied"
				}
				return c
			}
			// Again, for the plan cache: the sixth call is where a
			// server decides on a generic plan.
			for range 6 {
				require.NoError(t, store.CompleteGenerates(ctx, pool, []store.Completion{completion(0, true), completion(1, true), completion(2, false), completion(3, true)}))
			}

			got := queryMaps(t, pool, `SELECT p.prompt_id, d.chosen, d.chosen_reward, d.rejected, d.rejected_reward, d.explicit_margin
				FROM pair_details d JOIN pairs p ON p.id = d.pair_id ORDER BY p.prompt_id`)
			require.Equal(t, []map[string]any{
				{"prompt_id": ids[0], "chosen": "task 0 reply 1", "chosen_reward": 0.5, "rejected": "task 0 reply 2", "rejected_reward": -0.25, "explicit_margin": 0.75},
				{"prompt_id": ids[1], "chosen": "other reply 0", "chosen_reward": 9.0, "rejected": "other reply 2", "rejected_reward": 7.0, "explicit_margin": 2.0},
				{"prompt_id": ids[3], "chosen": "task 3 reply 1", "chosen_reward": 3.5, "rejected": "task 3 reply 2", "rejected_reward": 2.75, "explicit_margin": 0.75},
			}, got)
			tasks := queryMaps(t, pool, `SELECT prompt_id, status, outcome, attempts,
				(SELECT count(*) FROM responses r WHERE r.iteration_id = t.iteration_id AND r.prompt_id = t.prompt_id) AS responses
				FROM tasks t WHERE iteration_id = $1 ORDER BY prompt_id`, it)
			require.Equal(t, []map[string]any{
				{"prompt_id": ids[0], "status": "done", "outcome": "paired", "attempts": int32(1), "responses": int64(3)},
				{"prompt_id": ids[1], "status": "done", "outcome": "paired", "attempts": int32(1), "responses": int64(3)},
				{"prompt_id": ids[2], "status": "done", "outcome": "all_tied", "attempts": int32(3), "responses": int64(3)},
				{"prompt_id": ids[3], "status": "done", "outcome": "paired", "attempts": int32(4), "responses": int64(3)},
				{"prompt_id": ids[4], "status": "pending", "outcome": nil, "attempts": int32(0), "responses": int64(0)},
			}, tasks)
			counts, err := store.IterationTaskCounts(ctx, pool, it)
			require.NoError(t, err)
			require.Equal(t, []store.TaskGroup{
				{Iteration: "i", Kind: "generate", Status: "done", Outcome: "all_tied", N: 1},
				{Iteration: "i", Kind: "generate", Status: "done", Outcome: "paired", N: 3},
				{Iteration: "i", Kind: "generate", Status: "pending", Outcome: "", N: 1},
			}, counts)

			// A batch across iterations (a worker follows every run of its
			// database): each task's rows go to its own iteration.
			otherRun, err := store.EnsureRun(ctx, pool, "other", []byte(`{}`))
			require.NoError(t, err)
			otherIts, err := store.EnsureIterations(ctx, pool, otherRun.ID, []store.IterationSpec{{Name: "o", PolicyModel: "m", Config: []byte(`{}`)}})
			require.NoError(t, err)
			other := otherIts[0].ID
			otherIDs, err := store.LoadPool(ctx, pool, other, []prompt.Prompt{prompt.New([]prompt.Message{{Role: "user", Content: "q0"}}, "test", "")})
			require.NoError(t, err)
			require.Equal(t, ids[0], otherIDs[0], "the same prompt, shared by the runs")
			_, err = store.CreateGenerateTasks(ctx, pool, other)
			require.NoError(t, err)
			across := completion(0, true)
			across.Key.IterationID = other
			require.NoError(t, store.CompleteGenerates(ctx, pool, []store.Completion{across, completion(0, true)}))
			got = queryMaps(t, pool, `SELECT p.iteration_id, d.chosen FROM pair_details d JOIN pairs p ON p.id = d.pair_id
				WHERE p.prompt_id = $1 ORDER BY p.iteration_id`, ids[0])
			require.Equal(t, []map[string]any{
				{"iteration_id": it, "chosen": "task 0 reply 1"},
				{"iteration_id": other, "chosen": "task 0 reply 1"},
			}, got)

			// Task 4 with a reply PostgreSQL refuses, beside a good one of
			// a task that is done already: nothing is written.
			bad := completion(4, true)
			bad.Responses[0].Content = "a NUL \x00 byte"
			err = store.CompleteGenerates(ctx, pool, []store.Completion{completion(0, true), bad})
			require.Error(t, err)
			require.Equal(t, "pending", queryMaps(t, pool, `SELECT status FROM tasks WHERE iteration_id = $1 AND prompt_id = $2`, it, ids[4])[0]["status"])

			// The same task twice is refused before anything is sent.
			err = store.CompleteGenerates(ctx, pool, []store.Completion{completion(4, true), completion(4, true)})
			require.ErrorContains(t, err, "the task is given twice")
			require.Equal(t, "pending", queryMaps(t, pool, `SELECT status FROM tasks WHERE iteration_id = $1 AND prompt_id = $2`, it, ids[4])[0]["status"])
		})
	}
}

func responses(prefix string, rewards []float64) []store.Response {
	var rs []store.Response
	for i := range rewards {
		rs = append(rs, store.Response{SampleIndex: i, Content: fmt.Sprintf("%s reply %d", prefix, i), TokenCount: 3, LogProbSum: -2, FinishReason: "stop", Reward: &rewards[i]})
	}
	return rs
}
