package store_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

func writeMinimalConfig(t *testing.T, dbURL string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "selfplay.yaml")
	body := fmt.Sprintf("database: {url: %q}\niterations: [{name: a, policy_model: m, prompts: {files: [p.jsonl]}}]\n", dbURL)
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func TestMigrateTwiceAndFromThreeProcesses(t *testing.T) {
	t.Parallel()
	bin := selfplaytest.Binary(t)
	dbURL := storetest.NewEmptyDatabase(t)
	cfg := writeMinimalConfig(t, dbURL)

	var wg sync.WaitGroup
	outs := make([]string, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := exec.Command(bin, "migrate", "-c", cfg).CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	applied := 0
	for i := range 3 {
		require.NoError(t, errs[i], outs[i])
		if strings.Contains(outs[i], "applied") {
			applied++
		}
	}
	require.Equal(t, 1, applied, "exactly one process applies the migrations: %q", outs)

	out, err := exec.Command(bin, "migrate", "-c", cfg).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Contains(t, string(out), "up to date")

	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	for _, rel := range []string{"runs", "iterations", "prompts", "iteration_prompts", "tasks", "responses", "pairs", "exports", "pair_details"} {
		var exists bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, rel).Scan(&exists))
		require.True(t, exists, rel)
	}
	require.NoError(t, store.CheckSchema(ctx, pool))
}

func TestCommandsRefuseAnOldSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.NewEmptyDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	err = store.CheckSchema(ctx, pool)
	require.ErrorIs(t, err, store.ErrSchemaBehind)
	require.Contains(t, err.Error(), "selfplay migrate")
}

func TestOpenUnreachableNamesHostAndHidesPassword(t *testing.T) {
	t.Parallel()
	_, err := store.Open(context.Background(), "postgres://alice:hunter2secret@127.0.0.1:1/db?connect_timeout=2")
	require.Error(t, err)
	require.Contains(t, err.Error(), "127.0.0.1:1")
	require.NotContains(t, err.Error(), "hunter2secret")
}

func TestRunsAndIterations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	run, err := store.EnsureRun(ctx, pool, "r1", []byte(`{"a":1}`))
	require.NoError(t, err)
	again, err := store.EnsureRun(ctx, pool, "r1", []byte(`{"a":2}`))
	require.NoError(t, err)
	require.Equal(t, run.ID, again.ID)
	require.JSONEq(t, `{"a":2}`, string(again.Config))

	specs := []store.IterationSpec{
		{Ordinal: 0, Name: "iter0", PolicyModel: "tiny-0", Config: []byte(`{}`)},
		{Ordinal: 1, Name: "iter1", PolicyModel: "tiny-1", Config: []byte(`{}`)},
	}
	its, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	require.NoError(t, err)
	require.Len(t, its, 2)
	require.Equal(t, store.StagePending, its[0].Stage)
	require.NoError(t, store.SetStage(ctx, pool, its[0].ID, store.StageGenerating, ""))
	specs[0].PolicyModel = "changed"
	its2, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	require.NoError(t, err)
	require.Equal(t, its[0].ID, its2[0].ID)
	require.Equal(t, "tiny-0", its2[0].PolicyModel, "a started iteration keeps its models")
	require.Equal(t, store.StageGenerating, its2[0].Stage)
	require.NoError(t, store.SetStage(ctx, pool, its[0].ID, store.StageFailed, "boom"))
	got, err := store.GetIteration(ctx, pool, its[0].ID)
	require.NoError(t, err)
	require.Equal(t, "boom", *got.Error)
	require.NotNil(t, got.FinishedAt)
	_, err = store.GetIteration(ctx, pool, 999999)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func newIteration(t *testing.T, pool *pgxpool.Pool) int64 {
	t.Helper()
	ctx := context.Background()
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(t, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "i", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(t, err)
	return its[0].ID
}

func countPrompts(t *testing.T, pool *pgxpool.Pool) int {
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM prompts`).Scan(&n))
	return n
}

// newTasks makes an iteration whose pool holds n prompts ("q0", "q1", …)
// and their pending generate tasks, and returns it with the prompt ids.
func newTasks(t *testing.T, pool *pgxpool.Pool, n int) (int64, []int64) {
	t.Helper()
	ctx := context.Background()
	it := newIteration(t, pool)
	var ps []prompt.Prompt
	for i := range n {
		ps = append(ps, prompt.New([]prompt.Message{{Role: "user", Content: fmt.Sprintf("q%d", i)}}, "test", ""))
	}
	ids, err := store.LoadPool(ctx, pool, it, ps)
	require.NoError(t, err)
	made, err := store.CreateGenerateTasks(ctx, pool, it)
	require.NoError(t, err)
	require.EqualValues(t, n, made)
	return it, ids
}

func TestLoadPoolDeduplicatesAcrossFilesAndRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIteration(t, pool)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.jsonl")
	b := filepath.Join(dir, "b.jsonl")
	require.NoError(t, os.WriteFile(a, []byte(`{"prompt": "hello there", "id": "a1"}
{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why is the sky blue"}]}

{"prompt": "hello there"}
`), 0o600))
	require.NoError(t, os.WriteFile(b, []byte(`{"messages": [{"role": "user", "content": "hello there"}], "id": 7}
{"prompt": "a third one"}
`), 0o600))
	ps, err := prompt.ReadFiles([]string{a, b}, 8000)
	require.NoError(t, err)
	require.Len(t, ps, 3)
	ids, err := store.LoadPool(ctx, pool, it, ps)
	require.NoError(t, err)
	require.Len(t, ids, 3)
	require.Equal(t, 3, countPrompts(t, pool))
	// Loading again (another run, same files) adds nothing.
	ids2, err := store.LoadPool(ctx, pool, it, ps)
	require.NoError(t, err)
	require.Equal(t, ids, ids2)
	require.Equal(t, 3, countPrompts(t, pool))
	n, err := store.PoolSize(ctx, pool, it)
	require.NoError(t, err)
	require.EqualValues(t, 3, n)
	p, err := store.GetPrompt(ctx, pool, ids[0])
	require.NoError(t, err)
	require.Equal(t, "a1", *p.SourceID)
	require.Equal(t, "hello there", prompt.Text(p.Messages))
}

func TestBadLineSevenInsertsNothing(t *testing.T) {
	t.Parallel()
	pool, _ := storetest.NewPool(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(`{"prompt": "fine"}`+"\n"), 0o600))
	var body strings.Builder
	for i := 1; i <= 10; i++ {
		if i == 7 {
			body.WriteString(`{"prompt": "broken"` + "\n")
			continue
		}
		fmt.Fprintf(&body, `{"prompt": "question %d"}`+"\n", i)
	}
	require.NoError(t, os.WriteFile(bad, []byte(body.String()), 0o600))
	before := countPrompts(t, pool)
	_, err := prompt.ReadFiles([]string{good, bad}, 8000)
	require.Error(t, err)
	require.Contains(t, err.Error(), bad+":7:")
	require.Equal(t, before, countPrompts(t, pool))
}

// benchPromptFile writes the load benchmarks' file of 100,000 prompts.
func benchPromptFile(b *testing.B) string {
	path := filepath.Join(b.TempDir(), "p.jsonl")
	f, err := os.Create(path)
	require.NoError(b, err)
	for i := range 100_000 {
		fmt.Fprintf(f, `{"prompt": "benchmark question number %d about topic %d", "id": "q%d"}`+"\n", i, i%97, i)
	}
	require.NoError(b, f.Close())
	return path
}

func BenchmarkLoad100kPrompts(b *testing.B) {
	pool, _ := storetest.NewPool(b)
	it := newIterationB(b, pool)
	path := benchPromptFile(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ps, err := prompt.ReadFiles([]string{path}, 8000)
		require.NoError(b, err)
		if i > 0 {
			b.StopTimer()
			_, err := pool.Exec(ctx, `TRUNCATE prompts, iteration_prompts CASCADE`)
			require.NoError(b, err)
			b.StartTimer()
		}
		_, err = store.LoadPool(ctx, pool, it, ps)
		require.NoError(b, err)
	}
}

func newIterationB(b *testing.B, pool *pgxpool.Pool) int64 {
	ctx := context.Background()
	run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
	require.NoError(b, err)
	its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "i", PolicyModel: "m", Config: []byte(`{}`)}})
	require.NoError(b, err)
	return its[0].ID
}

// TestFailTaskRecordsEndpointAndStatus: a failure keeps its endpoint and
// HTTP status in their own columns (NULL when there is none), only a
// pending task fails, and a task done later has them cleared.
func TestFailTaskRecordsEndpointAndStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 3)
	key := func(i int) store.TaskKey { return store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"} }

	require.NoError(t, store.FailTask(ctx, pool, key(0), store.Failure{Reason: "llm: policy endpoint: status 400: too long", Endpoint: "policy", Status: 400}, 1))
	require.NoError(t, store.FailTask(ctx, pool, key(1), store.Failure{Reason: "no worker finished it"}, 0))
	require.NoError(t, store.FinishTask(ctx, pool, key(2), "paired", 1))
	require.NoError(t, store.FailTask(ctx, pool, key(2), store.Failure{Reason: "late", Endpoint: "reward", Status: 500}, 2))

	type row struct {
		Status   string
		Error    *string
		Endpoint *string
		HTTP     *int
	}
	read := func(i int) row {
		var r row
		require.NoError(t, pool.QueryRow(ctx, `SELECT status, error, error_endpoint, error_status FROM tasks
			WHERE iteration_id = $1 AND prompt_id = $2 AND kind = 'generate'`, it, ids[i]).Scan(&r.Status, &r.Error, &r.Endpoint, &r.HTTP))
		return r
	}
	r := read(0)
	require.Equal(t, "failed", r.Status)
	require.Equal(t, "policy", *r.Endpoint)
	require.Equal(t, 400, *r.HTTP)
	r = read(1)
	require.Equal(t, "failed", r.Status)
	require.Nil(t, r.Endpoint, "not an endpoint's failure")
	require.Nil(t, r.HTTP)
	r = read(2)
	require.Equal(t, "done", r.Status, "a done task stays done")
	require.Nil(t, r.Error)
	require.Nil(t, r.Endpoint)
}

// TestTaskLookupsUseThePrimaryKey: once a stage's tasks are made, the
// generic plans workers cache for reading and settling one task find it by
// the primary key, not by scanning the iteration's tasks through another
// index (as they did through tasks_status_idx, which a table the planner
// thought empty made just as cheap).
func TestTaskLookupsUseThePrimaryKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	newTasks(t, pool, 3000)

	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	for name, sql := range map[string]string{
		"read": `SELECT t.status, p.messages FROM tasks t JOIN prompts p ON p.id = t.prompt_id
			WHERE t.iteration_id = $1 AND t.prompt_id = $2 AND t.kind = $3`,
		"settle": `UPDATE tasks SET status = 'done' WHERE iteration_id = $1 AND prompt_id = $2 AND kind = $3 AND status = 'pending'`,
	} {
		_, err := conn.Exec(ctx, `PREPARE q_`+name+` AS `+sql)
		require.NoError(t, err)
		rows, err := conn.Query(ctx, `EXPLAIN EXECUTE q_`+name+`(1, 1, 'generate')`)
		require.NoError(t, err)
		var plan []string
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			plan = append(plan, line)
		}
		require.NoError(t, rows.Err())
		require.Contains(t, strings.Join(plan, "\n"), "tasks_pkey", "%s: %s", name, strings.Join(plan, "\n"))
	}
}

// TestFailureReasonsGroupAnEndpointsErrors: failures of one endpoint with
// one status count together whatever their texts; others by text.
func TestFailureReasonsGroupAnEndpointsErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 6)
	for i, f := range []store.Failure{
		{Reason: "sample: llm: policy endpoint: status 400: prompt of 9001 tokens", Endpoint: "policy", Status: 400},
		{Reason: "sample: llm: policy endpoint: status 400: prompt of 9002 tokens", Endpoint: "policy", Status: 400},
		{Reason: "sample: llm: policy endpoint: status 400: prompt of 9001 tokens", Endpoint: "policy", Status: 400},
		{Reason: "reward: llm: reward endpoint: status 400: bad input", Endpoint: "reward", Status: 400},
		{Reason: "no worker finished it after 3 publications"},
		{Reason: "no worker finished it after 3 publications"},
	} {
		require.NoError(t, store.FailTask(ctx, pool, store.TaskKey{IterationID: it, PromptID: ids[i], Kind: "generate"}, f, 1))
	}
	got, err := store.FailureReasons(ctx, pool, it, "generate", 5)
	require.NoError(t, err)
	require.Equal(t, []store.ReasonCount{
		{Reason: "sample: llm: policy endpoint: status 400: prompt of 9001 tokens", Count: 3, Texts: 2},
		{Reason: "no worker finished it after 3 publications", Count: 2, Texts: 1},
		{Reason: "reward: llm: reward endpoint: status 400: bad input", Count: 1, Texts: 1},
	}, got)
	require.Equal(t, "sample: llm: policy endpoint: status 400: prompt of 9001 tokens (and 1 other error of that endpoint and status)", got[0].Label())
	require.Equal(t, got[1].Reason, got[1].Label())
}

// BenchmarkLoad100kPromptsWithDedup is the orchestrator's loading of a
// prompt file with the near-duplicate check on (orchestrator/quality.go
// loadPool, the default dedup settings): read, sign (MinHash of 3-word
// shingles, 20 bands × 6 rows), look up every prompt's bands in the run's
// index, insert the prompts, pool them and store their 2 M band rows, in
// one transaction. The prompts are the plain benchmark's, so many share
// shingles and the lookup finds candidates to compare.
func BenchmarkLoad100kPromptsWithDedup(b *testing.B) {
	pool, _ := storetest.NewPool(b)
	it := newIterationB(b, pool)
	var runID int64
	require.NoError(b, pool.QueryRow(context.Background(), `SELECT run_id FROM iterations WHERE id = $1`, it).Scan(&runID))
	path := benchPromptFile(b)
	params := minhash.Params{Shingle: 3, Bands: 20, Rows: 6}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 {
			b.StopTimer()
			_, err := pool.Exec(ctx, `TRUNCATE prompts, iteration_prompts, prompt_signatures, prompt_bands CASCADE`)
			require.NoError(b, err)
			b.StartTimer()
		}
		ps, err := prompt.ReadFiles([]string{path}, 8000)
		require.NoError(b, err)
		items := make([]store.NearItem, len(ps))
		for i, p := range ps {
			items[i] = store.NewNearItem(params, p.Hash, p.Messages)
		}
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if err := store.LockRunPrompts(ctx, tx, runID); err != nil {
				return err
			}
			if _, err := store.FindNear(ctx, tx, store.NearCheck{RunID: runID, MaxOrdinal: -1, Params: params, Threshold: 0.8}, items); err != nil {
				return err
			}
			ids, err := store.InsertPrompts(ctx, tx, ps)
			if err != nil {
				return err
			}
			if err := store.AddToPool(ctx, tx, it, ids); err != nil {
				return err
			}
			return store.StoreSignatures(ctx, tx, runID, 0, params, ids, items)
		})
		require.NoError(b, err)
	}
}
