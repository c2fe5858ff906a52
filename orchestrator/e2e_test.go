package orchestrator_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// loop is a whole system under test: a database, a stream, a tinylm
// server process and a schedule file.
type loop struct {
	dbURL   string
	pool    *pgxpool.Pool
	cfgPath string
	dir     string
	samples int
	ratio   float64
	lmAddr  string
	lmArgs  []string
	lmEnv   []string
	lm      *selfplaytest.Proc
	workers []workerProc
	natsURL string
	stream  string
}

type loopOptions struct {
	prompts   int
	samples   int
	lmArgs    []string // extra `lm serve` flags (fault injection)
	lmEnv     []string // extra environment of `lm serve` (NAME=value)
	lmAddr    string   // address of `lm serve`; default a free port
	ackWait   string
	workerCon int
	// maxConcurrency per endpoint and worker; default 32.
	maxConcurrency int
	// single: one iteration, no evolution, no hook (benchmarks).
	single bool
	// db is a migrated database URL to use instead of a fresh one on the
	// shared server (a private server for restart scenarios).
	db string
	// nats is a server URL to use instead of the shared test server.
	nats string
	// timeout per endpoint request; default 5s.
	timeout string
	// maxDeliver per task; default 5.
	maxDeliver int
	// hook replaces the recording train hook (YAML flow list).
	hook string
	// nextPolicy is iter1's policy model; default tiny-0.
	nextPolicy string
	// stream is a stream name to use instead of a fresh one (deployments
	// sharing a stream); replicas is nats.replicas (default 1).
	stream   string
	replicas int
	// idleWarning is orchestrator.idle_warning (default: the config's).
	idleWarning string
}

func startLoop(t testing.TB, o loopOptions) *loop {
	t.Helper()
	if o.maxConcurrency == 0 {
		o.maxConcurrency = 32
	}
	if o.timeout == "" {
		o.timeout = "5s"
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 5
	}
	dbURL := o.db
	if dbURL == "" {
		dbURL = storetest.NewDatabase(t)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	nats := bustest.NewStream(t)
	if o.nats != "" {
		nats.URL = o.nats
	}
	if o.stream != "" {
		nats.Stream = o.stream
	}
	dir := t.TempDir()

	l := &loop{dbURL: dbURL, pool: pool, dir: dir, samples: o.samples, ratio: 0.4,
		lmAddr: cmp.Or(o.lmAddr, selfplaytest.FreeAddr(t)), lmArgs: o.lmArgs, lmEnv: o.lmEnv, natsURL: nats.URL, stream: nats.Stream}
	l.startLM(t)
	addr := l.lmAddr

	// The first o.prompts lines of the example pool, numbered variants of
	// them when more are asked for.
	src, err := os.Open(filepath.Join(selfplaytest.Root(), "examples", "prompts.jsonl"))
	require.NoError(t, err)
	defer src.Close()
	var base []string
	sc := bufio.NewScanner(src)
	for sc.Scan() {
		var p struct{ Prompt string }
		require.NoError(t, json.Unmarshal(sc.Bytes(), &p))
		base = append(base, p.Prompt)
	}
	var lines []string
	for i := 0; len(lines) < o.prompts; i++ {
		text := base[i%len(base)]
		if i >= len(base) {
			text = fmt.Sprintf("%s ( %d )", text, i/len(base))
		}
		b, _ := json.Marshal(map[string]string{"prompt": text})
		lines = append(lines, string(b))
	}
	promptsPath := filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(promptsPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	hookLog := filepath.Join(dir, "hook.log")
	cfg := fmt.Sprintf(`
run: e2e
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", max_concurrency: %d, timeout: %s, max_retries: 8}
  reward: {base_url: "http://%s", kind: classify, model: reward, chat_template: tinylm, max_concurrency: %d, timeout: %s, max_retries: 8}
generation: {samples: %d, max_tokens: 48}
selection: {metric: alignment_potential, ratio: 0.4}
worker: {concurrency: %d, ack_wait: %s, max_deliver: %d}
orchestrator: {progress_interval: 1s, poll_interval: 100ms}
export: {dir: %q}
hooks:
  train: [/bin/sh, -c, 'printf "%%s %%s %%s\n" "$1" "$2" "$3" >> %s', hook, "{dataset}", "{iteration}", "{next_model}"]
  wait_for_model: 30s
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
  - {name: iter1, policy_model: %s, prompts: {evolved: true}}
`, dbURL, nats.URL, nats.Stream, addr, o.maxConcurrency, o.timeout, addr, o.maxConcurrency, o.timeout, o.samples, o.workerCon, o.ackWait, o.maxDeliver, filepath.Join(dir, "exports"), hookLog, promptsPath, cmp.Or(o.nextPolicy, "tiny-0"))
	if o.single {
		cfg = cfg[:strings.Index(cfg, "hooks:")] + fmt.Sprintf(`evolve: {enabled: false}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
`, promptsPath)
	}
	if o.idleWarning != "" {
		cfg = strings.Replace(cfg, "poll_interval: 100ms}", "poll_interval: 100ms, idle_warning: "+o.idleWarning+"}", 1)
	}
	if o.replicas > 0 {
		cfg = strings.Replace(cfg, "stream: "+nats.Stream+"}", fmt.Sprintf("stream: %s, replicas: %d}", nats.Stream, o.replicas), 1)
	}
	if o.hook != "" {
		i := strings.Index(cfg, "  train: [")
		j := strings.Index(cfg[i:], "\n")
		cfg = cfg[:i] + "  train: " + o.hook + cfg[i+j:]
	}
	l.cfgPath = filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(l.cfgPath, []byte(cfg), 0o600))
	return l
}

// startLM starts (or restarts, on the same address) the tinylm process.
func (l *loop) startLM(t testing.TB) {
	t.Helper()
	l.lm = selfplaytest.StartLM(t, "lm", l.lmAddr, l.lmEnv, append([]string{"--model", "tiny-0=builtin"}, l.lmArgs...)...)
}

func (l *loop) worker(t testing.TB, name string) *selfplaytest.Proc {
	addr := selfplaytest.FreeAddr(t)
	p := selfplaytest.Start(t, name, nil, "worker", "-c", l.cfgPath, "--log-level", "warn", "--metrics-addr", addr)
	l.workers = append(l.workers, workerProc{p, addr})
	return p
}

// workerProc is a worker process and its metrics address.
type workerProc struct {
	proc    *selfplaytest.Proc
	metrics string
}

// clientRetries sums selfplay_endpoint_retries_total over the workers
// still running (a killed worker's count goes with it).
func (l *loop) clientRetries(t testing.TB) int64 {
	var total float64
	for _, w := range l.workers {
		if w.proc.Exited() {
			continue
		}
		resp, err := http.Get("http://" + w.metrics + "/metrics")
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "selfplay_endpoint_retries_total{") {
				var v float64
				if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
					total += v
				}
			}
		}
		resp.Body.Close()
	}
	return int64(total)
}

func (l *loop) orchestrator(t testing.TB, name string) *selfplaytest.Proc {
	l.waitRunUnlocked(t)
	return selfplaytest.Start(t, name, nil, "run", "-c", l.cfgPath)
}

// waitRunUnlocked waits until no session of the loop's database holds a
// run lock: the backend of an orchestrator just SIGKILLed ends, releasing
// its lock, only once it reads the closed connection, and an orchestrator
// started before that is refused as a competitor (rightly: the lock is
// held). Tests that kill an orchestrator and start the next wait here, as
// an operator waits for the old process to be gone.
func (l *loop) waitRunUnlocked(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var held int
		err := l.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND classid = 7321 AND granted
			  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&held)
		if err == nil && held == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (l *loop) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, l.pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// checkInvariants verifies in SQL what a finished two-iteration run must
// satisfy, whatever happened on the way.
func (l *loop) checkInvariants(t *testing.T, prompts int) {
	t.Helper()
	ctx := context.Background()
	require.EqualValues(t, 2, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'done'`))
	require.EqualValues(t, prompts, l.count(t, `SELECT count(*) FROM iteration_prompts ip JOIN iterations i ON i.id = ip.iteration_id WHERE i.ordinal = 0`))

	// Every pool prompt has exactly one generate task, done or failed (with a reason).
	require.Zero(t, l.count(t, `SELECT count(*) FROM iteration_prompts ip
		LEFT JOIN tasks t ON t.iteration_id = ip.iteration_id AND t.prompt_id = ip.prompt_id AND t.kind = 'generate'
		WHERE t.status IS NULL OR t.status NOT IN ('done', 'failed')`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed' AND coalesce(error, '') = ''`))
	// Each done prompt has exactly n responses and at most one pair.
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks t WHERE t.kind = 'generate' AND t.status = 'done'
		AND (SELECT count(*) FROM responses r WHERE r.iteration_id = t.iteration_id AND r.prompt_id = t.prompt_id) <> $1`, l.samples))
	require.Zero(t, l.count(t, `SELECT count(*) FROM (SELECT iteration_id, prompt_id FROM pairs GROUP BY 1, 2 HAVING count(*) > 1) d`))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks t WHERE t.kind = 'generate' AND t.status = 'done'
		AND (t.outcome = 'paired') <> EXISTS (SELECT 1 FROM pairs p WHERE p.iteration_id = t.iteration_id AND p.prompt_id = t.prompt_id)`))
	// No duplicate prompts.
	require.Zero(t, l.count(t, `SELECT count(*) FROM (SELECT messages FROM prompts GROUP BY 1 HAVING count(*) > 1) d`))

	rows, err := l.pool.Query(ctx, `SELECT id, ordinal FROM iterations ORDER BY ordinal`)
	require.NoError(t, err)
	type iter struct{ id, ordinal int64 }
	var its []iter
	for rows.Next() {
		var it iter
		require.NoError(t, rows.Scan(&it.id, &it.ordinal))
		its = append(its, it)
	}
	require.NoError(t, rows.Err())
	for _, it := range its {
		// The stored AP equals AP recomputed here from the stored margins,
		// with population standard deviations (w = 1).
		require.Zero(t, l.count(t, `
			WITH s AS (SELECT avg(explicit_margin) me, stddev_pop(explicit_margin) se,
			                  avg(abs(implicit_margin)) mi, stddev_pop(abs(implicit_margin)) si
			           FROM pairs WHERE iteration_id = $1)
			SELECT count(*) FROM pairs p, s WHERE p.iteration_id = $1 AND abs(p.alignment_potential -
			    ((p.explicit_margin - s.me) / nullif(s.se, 0) - (abs(p.implicit_margin) - s.mi) / nullif(s.si, 0))) > 1e-9`, it.id))
		pairs := l.count(t, `SELECT count(*) FROM pairs WHERE iteration_id = $1`, it.id)
		selected := l.count(t, `SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, it.id)
		require.Greater(t, pairs, int64(0))
		require.EqualValues(t, int64(math.Floor(l.ratio*float64(pairs)+1e-9)), selected, "iteration %d", it.ordinal)

		// train.jsonl has one line per selected pair, with the right texts.
		var path string
		require.NoError(t, l.pool.QueryRow(ctx, `SELECT path FROM exports WHERE iteration_id = $1 AND kind = 'jsonl'`, it.id).Scan(&path))
		f, err := os.Open(path)
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		lines := 0
		for sc.Scan() {
			var row orchestrator.Row
			require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
			var chosen, rejected, promptText string
			var sel bool
			require.NoError(t, l.pool.QueryRow(ctx, `SELECT chosen, rejected, prompt_text, selected FROM pair_details
				WHERE iteration_ordinal = $1 AND prompt_id = $2`, it.ordinal, row.PromptID).Scan(&chosen, &rejected, &promptText, &sel))
			require.True(t, sel)
			require.Equal(t, chosen, row.Chosen[0].Content)
			require.Equal(t, "assistant", row.Chosen[0].Role)
			require.Equal(t, rejected, row.Rejected[0].Content)
			require.Equal(t, promptText, row.Prompt[len(row.Prompt)-1].Content)
			require.Greater(t, row.ScoreChosen, row.ScoreRejected)
			lines++
		}
		require.NoError(t, sc.Err())
		f.Close()
		require.EqualValues(t, selected, lines)
		require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM exports WHERE iteration_id = $1 AND kind = 'jsonl'`, it.id))
	}
	// Iteration 2's pool is exactly the prompts evolved in iteration 1, each
	// with a parent that was selected for evolution.
	second := its[1].id
	require.Zero(t, l.count(t, `SELECT count(*) FROM iteration_prompts ip JOIN prompts p ON p.id = ip.prompt_id
		WHERE ip.iteration_id = $1 AND (p.parent_prompt_id IS NULL OR p.strategy IS NULL OR p.source <> 'evolved')`, second))
	require.Zero(t, l.count(t, `SELECT count(*) FROM iteration_prompts ip JOIN prompts p ON p.id = ip.prompt_id
		WHERE ip.iteration_id = $1 AND NOT EXISTS (SELECT 1 FROM pairs x WHERE x.iteration_id = $2 AND x.prompt_id = p.parent_prompt_id AND x.evolve_selected)`, second, its[0].id))
	require.EqualValues(t, l.count(t, `SELECT count(*) FROM prompts WHERE parent_prompt_id IS NOT NULL`),
		l.count(t, `SELECT count(*) FROM iteration_prompts WHERE iteration_id = $1`, second))
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'evolve' AND status <> 'done'`))
}

func (l *loop) hookLines(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(l.dir, "hook.log"))
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestEndToEndTwoIterations(t *testing.T) {
	t.Parallel()
	l := startLoop(t, loopOptions{prompts: 60, samples: 4, ackWait: "30s", workerCon: 8})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.checkInvariants(t, 60)

	// The hook ran once per iteration; for iter0 with iter0's dataset.
	lines := l.hookLines(t)
	require.Len(t, lines, 2, lines)
	require.Equal(t, filepath.Join(l.dir, "exports", "e2e", "iter0", "train.jsonl")+" iter0 tiny-0", lines[0])
	require.True(t, strings.HasPrefix(lines[1], filepath.Join(l.dir, "exports", "e2e", "iter1", "train.jsonl")+" iter1"))

	// A second orchestrator for the finished run changes nothing.
	again := l.orchestrator(t, "orchestrator-again")
	require.NoError(t, again.Wait(time.Minute), again.Tail(20))
	require.Len(t, l.hookLines(t), 2, "finished stages are not redone")
}

func TestKillOrchestratorAndWorkerMidRun(t *testing.T) {
	t.Parallel()
	// Slow model (150 ms per request) so generating takes several seconds.
	l := startLoop(t, loopOptions{prompts: 60, samples: 4, ackWait: "2s", workerCon: 3,
		lmArgs: []string{"--latency", "150ms"}})
	w1 := l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator-1")

	// Wait until generating is under way with some tasks done, then SIGKILL
	// the orchestrator and a worker that has tasks in flight.
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`) >= 10
	}, time.Minute, 20*time.Millisecond)
	require.NoError(t, w1.Signal(syscall.SIGKILL))
	require.NoError(t, run.Signal(syscall.SIGKILL))
	w1.Kill()
	run.Kill()
	var stage string
	require.NoError(t, l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations WHERE ordinal = 0`).Scan(&stage))
	require.Equal(t, "generating", stage, "killed mid-generating")
	require.Less(t, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'generate' AND status = 'done'`), int64(60))

	l.worker(t, "worker-3")
	run2 := l.orchestrator(t, "orchestrator-2")
	require.NoError(t, run2.Wait(3*time.Minute), run2.Tail(30))
	l.checkInvariants(t, 60)
	require.Len(t, l.hookLines(t), 2)
}
