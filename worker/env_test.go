package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// env is what a worker process needs around it: its own database and
// stream, a tinylm server process (with the given fault flags), a
// schedule file, and one iteration whose tasks the test publishes itself,
// as the orchestrator would.
type env struct {
	pool        *pgxpool.Pool
	cfg         *config.Config
	cfgPath     string
	js          jetstream.JetStream
	stream      string
	iterationID int64
	samples     int
	deployment  string
	queue       bus.Queue // the run's
}

const envSamples = 3

func setup(t *testing.T, lmArgs ...string) *env {
	t.Helper()
	return setupOn(t, envOptions{lmAddr: startTinyLM(t, lmArgs...)})
}

// envOptions say where setupOn's schedule points: lmAddr serves the policy
// and the reward; reference, when set, is a reference endpoint's address,
// and the iteration scores its samples under tiny-0 there.
type envOptions struct {
	lmAddr, reference string
}

func setupOn(t *testing.T, o envOptions) *env {
	t.Helper()
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	natsCfg := bustest.NewStream(t)

	addr := o.lmAddr
	reference, referenceModel := "", ""
	if o.reference != "" {
		reference = fmt.Sprintf("\n  reference: {base_url: \"http://%s\", model: tiny-0, timeout: 5s, max_retries: 1}", o.reference)
		referenceModel = "tiny-0"
	}

	cfg, cfgPath, run, its := storeSchedule(t, pool, fmt.Sprintf(`
run: badinput
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", timeout: 5s, max_retries: 1}
  reward: {base_url: "http://%s", kind: classify, model: reward, timeout: 5s, max_retries: 1}%s
generation: {samples: %d, max_tokens: 24}
evolve: {enabled: false}
worker: {concurrency: 4, ack_wait: 5s, max_deliver: 2}
iterations:
  - {name: iter0, policy_model: tiny-0, reference_model: %q, prompts: {files: [prompts.jsonl]}}
`, dbURL, natsCfg.URL, natsCfg.Stream, addr, addr, reference, envSamples, referenceModel), store.StageGenerating)

	js, queue := bindRun(t, pool, cfg, run)
	return &env{pool: pool, cfg: cfg, cfgPath: cfgPath, js: js, stream: cfg.NATS.Stream, iterationID: its[0], samples: envSamples,
		deployment: queue.Deployment, queue: queue}
}

// storeSchedule writes schedule to a file and stores its run and
// iterations as the orchestrator would, with the first iteration in
// stage; it returns the schedule loaded, the file's path, the run's id
// and the iterations' ids.
func storeSchedule(t *testing.T, pool *pgxpool.Pool, schedule, stage string) (*config.Config, string, int64, []int64) {
	t.Helper()
	ctx := context.Background()
	cfgPath := filepath.Join(t.TempDir(), "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(schedule), 0o600))
	cfg, err := config.Load(cfgPath)
	require.NoError(t, err)
	snap, err := cfg.Snapshot()
	require.NoError(t, err)
	run, err := store.EnsureRun(ctx, pool, cfg.Run, snap)
	require.NoError(t, err)
	var specs []store.IterationSpec
	for i, it := range cfg.Iterations {
		settings, err := json.Marshal(it.Settings())
		require.NoError(t, err)
		specs = append(specs, store.IterationSpec{Ordinal: i, Name: it.Name, PolicyModel: it.PolicyModel,
			ReferenceModel: it.ReferenceModel, Config: settings})
	}
	stored, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	require.NoError(t, err)
	require.NoError(t, store.SetStage(ctx, pool, stored[0].ID, stage, ""))
	ids := make([]int64, len(stored))
	for i, it := range stored {
		ids[i] = it.ID
	}
	return cfg, cfgPath, run.ID, ids
}

// startTinyLM starts a tinylm server process with the given flags and
// returns its address once it answers.
func startTinyLM(t *testing.T, lmArgs ...string) string {
	t.Helper()
	addr := selfplaytest.FreeAddr(t)
	selfplaytest.StartLM(t, "lm", addr, nil, lmArgs...)
	return addr
}

// bindRun does the orchestrator's part: it makes the stream and the run's
// consumer, and returns the JetStream context and the run's queue.
func bindRun(t *testing.T, pool *pgxpool.Pool, cfg *config.Config, run int64) (jetstream.JetStream, bus.Queue) {
	t.Helper()
	ctx := context.Background()
	nc, js, err := bus.Connect(cfg.NATS, "worker-test", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	dep, err := store.DeploymentToken(ctx, pool)
	require.NoError(t, err)
	opts := bus.StreamOptions{Name: cfg.NATS.Stream, Deployment: dep, Run: run, AckWait: cfg.Worker.AckWait, MaxDeliver: cfg.Worker.MaxDeliver}
	_, err = bus.EnsureConsumer(ctx, js, opts)
	require.NoError(t, err)
	return js, opts.Queue()
}

// addTasks puts prompts with these texts into the iteration's pool, makes
// their generate tasks and publishes them; it returns the prompt ids.
func (e *env) addTasks(t *testing.T, texts ...string) []int64 {
	t.Helper()
	ctx := context.Background()
	ps := make([]prompt.Prompt, len(texts))
	for i, text := range texts {
		ps[i] = prompt.New([]prompt.Message{{Role: "user", Content: text}}, "test", "")
	}
	ids, err := store.InsertPrompts(ctx, e.pool, ps)
	require.NoError(t, err)
	require.NoError(t, store.AddToPool(ctx, e.pool, e.iterationID, ids))
	_, err = store.CreateGenerateTasks(ctx, e.pool, e.iterationID)
	require.NoError(t, err)
	pub := bus.NewPublisher(e.js, e.queue)
	for _, id := range ids {
		require.NoError(t, pub.Publish(ctx, bus.Task{IterationID: e.iterationID, PromptID: id, Kind: bus.KindGenerate}))
	}
	require.NoError(t, pub.Flush(ctx))
	return ids
}

func (e *env) worker(t *testing.T) *selfplaytest.Proc {
	return selfplaytest.Start(t, "worker", nil, "worker", "-c", e.cfgPath, "--log-level", "info")
}

// waitSettled waits until none of the prompts' tasks is pending.
func (e *env) waitSettled(t *testing.T, ids []int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		var pending int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM tasks
			WHERE iteration_id = $1 AND prompt_id = ANY($2) AND status = 'pending'`, e.iterationID, ids).Scan(&pending)
		return err == nil && pending == 0
	}, time.Minute, 50*time.Millisecond, "tasks still pending")
}

// task is a tasks row with its response count.
type task struct {
	status    string
	error     string
	responses int
}

func (e *env) task(t *testing.T, promptID int64) task {
	t.Helper()
	var tk task
	require.NoError(t, e.pool.QueryRow(context.Background(), `
		SELECT t.status, coalesce(t.error, ''),
		       (SELECT count(*) FROM responses r WHERE r.iteration_id = t.iteration_id AND r.prompt_id = t.prompt_id)
		FROM tasks t WHERE t.iteration_id = $1 AND t.prompt_id = $2 AND t.kind = 'generate'`,
		e.iterationID, promptID).Scan(&tk.status, &tk.error, &tk.responses))
	return tk
}

// requireDone checks that the prompts' tasks are done with n responses each.
func (e *env) requireDone(t *testing.T, ids []int64) {
	t.Helper()
	for _, id := range ids {
		tk := e.task(t, id)
		require.Equal(t, store.TaskDone, tk.status, "prompt %d: %s", id, tk.error)
		require.Equal(t, e.samples, tk.responses, "prompt %d", id)
	}
}

// streamMessages is the number of messages left in the stream.
func (e *env) streamMessages(t *testing.T) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), e.stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}
