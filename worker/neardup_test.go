package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// greedy asks the tinylm server for its greedy reply, as the worker's
// evolve call (temperature 0) gets it.
func greedy(t *testing.T, addr string, msgs []prompt.Message, maxTokens int) string {
	t.Helper()
	body, err := json.Marshal(map[string]any{"model": "tiny-0", "messages": msgs, "temperature": 0, "max_tokens": maxTokens, "n": 1})
	require.NoError(t, err)
	resp, err := http.Post("http://"+addr+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Len(t, out.Choices, 1)
	return out.Choices[0].Message.Content
}

// TestEvolveDropsNearDuplicateRewrites: a real worker evolves a prompt
// with the built-in model (greedy, so the rewrite is known in advance);
// the run already holds that rewrite but for white space and letter case,
// so the worker drops it as near_duplicate of that prompt with Jaccard 1,
// says so in the task's outcome with the strategy, and adds nothing to the
// next pool. The second parent's rewrite is new and kept, with its
// signature in the run's LSH index.
func TestEvolveDropsNearDuplicateRewrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	natsCfg := bustest.NewStream(t)
	addr := startTinyLM(t)

	cfg, cfgPath, runID, its := storeSchedule(t, pool, fmt.Sprintf(`
run: neardup
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", timeout: 10s, max_retries: 1}
  reward: {base_url: "http://%s", kind: classify, model: reward, timeout: 10s, max_retries: 1}
evolve: {strategies: [deepen], temperature: 0, max_tokens: 24, length_ratio: 50}
worker: {concurrency: 2, ack_wait: 10s, max_deliver: 2}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [prompts.jsonl]}}
  - {name: iter1, policy_model: tiny-0, prompts: {evolved: true}}
`, dbURL, natsCfg.URL, natsCfg.Stream, addr, addr), store.StageEvolving)

	parents := []prompt.Prompt{
		prompt.New([]prompt.Message{{Role: "user", Content: "how do i cook rice for dinner tonight?"}}, "prompts.jsonl", ""),
		prompt.New([]prompt.Message{{Role: "user", Content: "what should i pack for a trip to the mountains?"}}, "prompts.jsonl", ""),
	}
	req, err := prompt.EvolveMessages("deepen", parents[0].Messages)
	require.NoError(t, err)
	rewrite := prompt.CleanEvolved(greedy(t, addr, req, 24))
	require.NotEmpty(t, prompt.Words(rewrite), "the model's rewrite %q has no words", rewrite)
	// The run already holds the rewrite, spaced and cased differently.
	known := prompt.New([]prompt.Message{{Role: "user", Content: "  " + strings.ToUpper(strings.ReplaceAll(rewrite, " ", " \n "))}}, "prompts.jsonl", "")
	require.NotEqual(t, known.Hash, prompt.Evolved(parents[0].Messages, rewrite, 1, "deepen").Hash)
	d := cfg.Dedup
	params := minhash.Params{Shingle: d.Shingle, Bands: d.Bands, Rows: d.Rows}
	ps := append(parents, known)
	ids, err := store.InsertPrompts(ctx, pool, ps)
	require.NoError(t, err)
	require.NoError(t, store.AddToPool(ctx, pool, its[0], ids))
	var items []store.NearItem
	for _, p := range ps {
		items = append(items, store.NewNearItem(params, p.Hash, p.Messages))
	}
	require.NoError(t, store.StoreSignatures(ctx, pool, runID, 0, params, ids, items))

	js, queue := bindRun(t, pool, cfg, runID)
	pub := bus.NewPublisher(js, queue)
	for _, id := range ids[:2] {
		_, err := pool.Exec(ctx, `INSERT INTO tasks (iteration_id, prompt_id, kind) VALUES ($1, $2, 'evolve')`, its[0], id)
		require.NoError(t, err)
		require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: its[0], PromptID: id, Kind: bus.KindEvolve}))
	}
	require.NoError(t, pub.Flush(ctx))
	selfplaytest.Start(t, "worker", nil, "worker", "-c", cfgPath, "--log-level", "info")

	outcome := func(id int64) string {
		var s *string
		require.NoError(t, pool.QueryRow(ctx, `SELECT outcome FROM tasks WHERE iteration_id = $1 AND prompt_id = $2 AND kind = 'evolve' AND status = 'done'`,
			its[0], id).Scan(&s))
		return *s
	}
	require.Eventually(t, func() bool {
		var pending int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE iteration_id = $1 AND status = 'pending'`, its[0]).Scan(&pending)
		return err == nil && pending == 0
	}, time.Minute, 50*time.Millisecond, "evolve tasks still pending")
	require.Equal(t, "kept 0 of 1; dropped: 1 near_duplicate (deepen)", outcome(ids[0]))
	require.Equal(t, "kept 1 of 1", outcome(ids[1]))

	var strategy, matched string
	var dropped bool
	var estimated, exact float64
	var parent int64
	require.NoError(t, pool.QueryRow(ctx, `
		SELECT strategy, parent_prompt_id, dropped, matched_text, estimated_jaccard, exact_jaccard
		FROM prompt_flag_details WHERE run = 'neardup' AND iteration = 'iter0' AND reason = 'near_duplicate'`).
		Scan(&strategy, &parent, &dropped, &matched, &estimated, &exact))
	require.Equal(t, "deepen", strategy)
	require.Equal(t, ids[0], parent)
	require.True(t, dropped)
	require.Equal(t, known.Messages[0].Content, matched)
	require.Equal(t, 1.0, estimated)
	require.Equal(t, 1.0, exact)

	next, err := store.PoolPrompts(ctx, pool, its[1])
	require.NoError(t, err)
	require.Len(t, next, 1)
	require.Equal(t, "deepen", *next[0].Strategy)
	require.Equal(t, ids[1], *next[0].ParentPromptID)
	var bands int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompt_bands WHERE run_id = $1 AND prompt_id = $2 AND ordinal = 0`, runID, next[0].ID).Scan(&bands))
	require.Equal(t, d.Bands, bands)

	counts, err := store.FlagCounts(ctx, pool, its[0])
	require.NoError(t, err)
	require.Equal(t, []store.FlagCount{{Reason: "near_duplicate", Dropped: true, Origin: "evolved", Source: "deepen", Count: 1}}, counts)
}
