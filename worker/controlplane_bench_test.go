package worker_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/llm/llmtest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

var (
	controlPlanePrompts = flag.Int("controlplane-prompts", 4000, "BenchmarkControlPlane: prompts in the iteration")
	controlPlaneProfile = flag.String("controlplane-profile", "", "BenchmarkControlPlane: write a CPU profile of the worker's first seconds of work to this file")
)

// The control-plane benchmark's schedule: 5 samples of 512 tokens, as in
// the authors' setup, scored by a reward model over /classify in the chat
// form (one request per response, as examples/vllm does); no reference.
const (
	cpSamples = 5
	cpTokens  = 512
)

// cpRewards are the rewards the endpoint gives the reply's five choices:
// choice 2 is chosen and choice 1 rejected in every pair.
var cpRewards = []float64{0.25, -1.5, 2.0, 0.75, -0.5}

// BenchmarkControlPlane measures what everything but the model costs per
// prompt: a `selfplay worker` process (sampling, rewarding, storing and
// acknowledging each task), a private nats-server and a private PostgreSQL
// (every process of it), against an endpoint in this process that answers
// vLLM-shaped replies of 5 × 512 tokens with log-probs and token ids,
// pre-encoded, at next to no CPU cost. A `selfplay run` orchestrator loads
// the prompts and publishes their tasks first; the worker starts once
// every task is in the stream, so the measured stage is the generating
// stage alone (the orchestrator's polling included, its loading and
// publishing reported apart as publish-ms/prompt). CPU times come from
// /proc (user plus system, reaped children included), so they do not
// depend on what else the machine runs, as wall-clock times would.
//
//	go test ./worker -run X -bench ControlPlane -benchtime 1x -count 5
func BenchmarkControlPlane(b *testing.B) {
	var sum cpCosts
	for range b.N {
		c := runControlPlane(b, *controlPlanePrompts)
		sum = sum.plus(c)
	}
	n := float64(b.N)
	b.ReportMetric(sum.worker/n, "worker-ms/prompt")
	b.ReportMetric(sum.nats/n, "nats-ms/prompt")
	b.ReportMetric(sum.postgres/n, "postgres-ms/prompt")
	b.ReportMetric(sum.orchestrator/n, "orchestrator-ms/prompt")
	b.ReportMetric(sum.total()/n, "total-ms/prompt")
	b.ReportMetric(sum.publish/n, "publish-ms/prompt")
	b.ReportMetric(sum.rate/n, "prompts/s")
}

// cpCosts are CPU milliseconds per prompt by process, over the generating
// stage (publish: the orchestrator, NATS and PostgreSQL while the
// orchestrator loaded and published), and the stage's rate.
type cpCosts struct {
	worker, nats, postgres, orchestrator, publish, rate float64
}

func (c cpCosts) total() float64 { return c.worker + c.nats + c.postgres + c.orchestrator }

func (c cpCosts) plus(d cpCosts) cpCosts {
	return cpCosts{c.worker + d.worker, c.nats + d.nats, c.postgres + d.postgres,
		c.orchestrator + d.orchestrator, c.publish + d.publish, c.rate + d.rate}
}

func runControlPlane(b *testing.B, prompts int) cpCosts {
	b.Helper()
	ctx := context.Background()
	pg := storetest.StartServer(b)
	dbURL := pg.NewDatabase(b)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	ns := bustest.StartServer(b)
	lm := llmtest.StartServer(b, []string{"policy-0", "reward"}, cpTokens, cpRewards)

	dir := b.TempDir()
	var lines strings.Builder
	for i := range prompts {
		fmt.Fprintf(&lines, `{"prompt": "How do I keep garden %d healthy through a hot, dry summer?"}`+"\n", i)
	}
	promptsPath := filepath.Join(dir, "prompts.jsonl")
	require.NoError(b, os.WriteFile(promptsPath, []byte(lines.String()), 0o600))
	const stream = "SELFPLAY_BENCH"
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	require.NoError(b, os.WriteFile(cfgPath, fmt.Appendf(nil, `
run: controlplane
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "%s/v1"}
  reward: {base_url: %q, kind: classify, model: reward}
generation: {samples: %d, max_tokens: %d}
evolve: {enabled: false}
export: {dir: %q}
iterations:
  - {name: iter0, policy_model: policy-0, prompts: {files: [%q]}}
`, dbURL, ns.URL, stream, lm.URL, lm.URL, cpSamples, cpTokens, filepath.Join(dir, "exports"), promptsPath), 0o600))
	cfg, err := config.Load(cfgPath)
	require.NoError(b, err)
	nc, js, err := bus.Connect(cfg.NATS, "controlplane-bench", slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(b, err)
	b.Cleanup(nc.Close)

	// Loading and publishing: until every task is in the stream and
	// marked published. Scoring waits, so the generating stage's end is
	// read before the orchestrator's next stage costs anything.
	cpu := func(pid int) time.Duration {
		d, err := selfplaytest.CPUTime(pid)
		require.NoError(b, err)
		return d
	}
	natsStart, pgStart := cpu(ns.Pid()), cpu(pg.Pid())
	orch := selfplaytest.Start(b, "orchestrator", nil, "run", "-c", cfgPath, "--log-level", "warn",
		"--debug-stage-delay", "scoring=3s")
	require.Eventually(b, func() bool {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return false
		}
		info, err := s.Info(ctx)
		if err != nil || info.State.Msgs < uint64(prompts) {
			return false
		}
		var unpublished int
		err = pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE published_at IS NULL`).Scan(&unpublished)
		return err == nil && unpublished == 0
	}, 5*time.Minute, 50*time.Millisecond, "the orchestrator did not publish the tasks")
	orchPid := orch.Cmd.Process.Pid
	natsPub, pgPub, orchPub := cpu(ns.Pid()), cpu(pg.Pid()), cpu(orchPid)

	// Generating: from the worker's start until no task is pending.
	metricsAddr := selfplaytest.FreeAddr(b)
	start := time.Now()
	w := selfplaytest.Start(b, "worker", nil, "worker", "-c", cfgPath, "--log-level", "warn", "--metrics-addr", metricsAddr)
	profiled := make(chan error, 1)
	if *controlPlaneProfile != "" {
		go func() { profiled <- profileWorker(metricsAddr, *controlPlaneProfile) }()
	}
	// A check scans the tasks (under a millisecond of the database's CPU
	// for thousands); every 200 ms it costs under 1% of what is measured.
	require.Eventually(b, func() bool {
		var pending int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM tasks WHERE status = 'pending'`).Scan(&pending)
		return err == nil && pending == 0
	}, 10*time.Minute, 200*time.Millisecond, "tasks still pending")
	elapsed := time.Since(start)
	workerCPU, natsEnd, pgEnd, orchEnd := cpu(w.Cmd.Process.Pid), cpu(ns.Pid()), cpu(pg.Pid()), cpu(orchPid)

	// The worker stops cleanly; the orchestrator scores, selects and
	// exports what the worker stored.
	require.NoError(b, w.Signal(syscall.SIGTERM))
	require.NoError(b, w.Wait(time.Minute), w.Tail(20))
	require.NoError(b, orch.Wait(5*time.Minute), orch.Tail(20))
	if *controlPlaneProfile != "" {
		require.NoError(b, <-profiled)
	}
	checkControlPlaneResults(b, pool, lm, prompts)

	perPrompt := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(prompts) }
	return cpCosts{
		worker:       perPrompt(workerCPU),
		nats:         perPrompt(natsEnd - natsPub),
		postgres:     perPrompt(pgEnd - pgPub),
		orchestrator: perPrompt(orchEnd - orchPub),
		publish:      perPrompt(natsPub - natsStart + pgPub - pgStart + orchPub),
		rate:         float64(prompts) / elapsed.Seconds(),
	}
}

// checkControlPlaneResults checks that every prompt was sampled, rewarded
// and paired as the endpoint's answers say, each request made once.
func checkControlPlaneResults(b *testing.B, pool *pgxpool.Pool, lm *llmtest.Server, prompts int) {
	b.Helper()
	ctx := context.Background()
	var done, responses, pairs, bestVsWorst int
	require.NoError(b, pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tasks WHERE status = 'done' AND outcome = 'paired'),
		(SELECT count(*) FROM responses WHERE token_count = $1),
		(SELECT count(*) FROM pairs),
		(SELECT count(*) FROM pairs p JOIN responses c ON c.id = p.chosen_id JOIN responses r ON r.id = p.rejected_id
		 WHERE c.sample_index = 2 AND r.sample_index = 1 AND p.explicit_margin = 3.5)`, cpTokens).
		Scan(&done, &responses, &pairs, &bestVsWorst))
	require.Equal(b, prompts, done, "tasks done with a pair")
	require.Equal(b, cpSamples*prompts, responses, "responses of %d tokens", cpTokens)
	require.Equal(b, prompts, pairs)
	require.Equal(b, prompts, bestVsWorst, "pairs of choice 2 (reward 2.0) over choice 1 (reward -1.5)")
	chats, classifies := lm.Requests()
	require.EqualValues(b, prompts, chats, "one chat completion per prompt")
	require.EqualValues(b, cpSamples*prompts, classifies, "one /classify request per response")
	require.Zero(b, lm.TokenIDRequests(), "token ids asked for with no reference to teacher-force under")
}

// profileWorker writes a CPU profile of the worker's first seconds of
// work, read from its metrics server's /debug/pprof.
func profileWorker(addr, path string) error {
	var resp *http.Response
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var err error
		resp, err = http.Get("http://" + addr + "/debug/pprof/profile?seconds=4")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("worker's pprof: %w", err)
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("worker's pprof: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
