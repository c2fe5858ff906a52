// Command ablation runs the same three-iteration self-play on the built-in
// model once per selection metric and training loss, for several seeds,
// and reports the held-out reward of each final policy.
//
// Every run is the real system: its own PostgreSQL database (created,
// migrated with `selfplay migrate`, dropped afterwards), its own JetStream
// stream, a `selfplay lm serve --models-dir` process, a `selfplay worker`
// and `selfplay run` with `selfplay lm train` as the train hook. The final
// policy (trained on the last iteration's export) is scored with
// `selfplay lm eval` on examples/heldout.jsonl. Runs go one after another,
// so they do not compete for the CPU.
//
//	go run ./examples/ablation                          # 4 metrics × {dpo, epsilon-dpo} × seeds 1–5
//	go run ./examples/ablation -seeds 1 -losses dpo     # a quicker look
//
// With -length-controls none,residual and -reward-length-bonus X it
// compares scoring.length_control under a length-biased reward, and with
// -eval-each it scores every iteration's policy, not only the final one
// (examples/length/run.sh, docs/length.md).
//
// It prints a Markdown table and writes one JSON line per run to -results.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// options are the command-line flags.
type options struct {
	bin, dbURL, natsURL, prompts, heldout, results, workdir string
	seeds                                                   []uint64
	metrics, losses, controls                               []string
	beta, lengthBonus                                       float64
	samples, evalSamples, maxTokens, count                  int
	keep, evalEach                                          bool
}

// runResult is one self-play run and its final policy's held-out score.
type runResult struct {
	Metric        string      `json:"metric"`
	Loss          string      `json:"loss"`
	LengthControl string      `json:"length_control,omitempty"`
	LengthBonus   float64     `json:"reward_length_bonus,omitempty"`
	Seed          uint64      `json:"seed"`
	Iterations    []iterStats `json:"iterations"`
	// Policies are the held-out scores of tiny-1, tiny-2, … (-eval-each);
	// the last one is Final.
	Policies []evalLine `json:"policies,omitempty"`
	Final    evalLine   `json:"final"`
	Seconds  float64    `json:"seconds"`
	// Learning is each iteration's learning check (learning.go).
	Learning []iterLearning `json:"learning,omitempty"`
}

// iterStats are an iteration's numbers read from PostgreSQL.
type iterStats struct {
	Name         string  `json:"name"`
	Policy       string  `json:"policy"`
	Prompts      int64   `json:"prompts"`
	Pairs        int64   `json:"pairs"`
	Selected     int64   `json:"selected"`
	MeanReward   float64 `json:"mean_reward"`
	ChosenReward float64 `json:"selected_chosen_reward"`
	// Reply lengths in tokens (length_details): every response, and the
	// chosen replies of the selected pairs; the fit of reward on length.
	MeanTokens     float64  `json:"mean_tokens"`
	ChosenTokens   float64  `json:"selected_chosen_tokens"`
	Slope          *float64 `json:"slope"`
	R2             *float64 `json:"r2"`
	ResidualScored bool     `json:"residual_applied"`
}

// evalLine is what `selfplay lm eval --json` prints per model.
type evalLine struct {
	Model      string  `json:"model"`
	Prompts    int     `json:"prompts"`
	MeanReward float64 `json:"mean_reward"`
	StdErr     float64 `json:"stderr"`
	Relevance  float64 `json:"relevance"`
	Repetition float64 `json:"repetition"`
	Words      float64 `json:"words"`
	StopRate   float64 `json:"stop_rate"`
}

func main() {
	var o options
	var seeds, metrics, losses, controls string
	flag.StringVar(&o.bin, "bin", "", "selfplay binary (default: go build ./cmd/selfplay into the work folder)")
	flag.StringVar(&o.dbURL, "db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL server (a database is created per run)")
	flag.StringVar(&o.natsURL, "nats", "nats://127.0.0.1:4222", "NATS server with JetStream")
	flag.StringVar(&o.prompts, "prompts", "examples/prompts.jsonl", "iteration 0's prompt pool")
	flag.StringVar(&o.heldout, "heldout", "examples/heldout.jsonl", "held-out prompts the final policies are scored on")
	flag.StringVar(&o.results, "results", "examples/ablation/results.jsonl", "per-run JSON lines")
	flag.StringVar(&o.workdir, "workdir", "", "folder for configs, logs, exports and models (default: a temporary folder)")
	flag.StringVar(&seeds, "seeds", "1,2,3,4,5", "seeds: generation, selection (random metric), training shuffle")
	flag.StringVar(&metrics, "metrics", "alignment_potential,explicit_margin,implicit_margin,random", "selection metrics")
	flag.StringVar(&losses, "losses", "dpo,epsilon-dpo", "training losses")
	flag.StringVar(&controls, "length-controls", "none", "scoring.length_control values: none, residual")
	flag.Float64Var(&o.lengthBonus, "reward-length-bonus", 0, "reward per reply word added by lm serve (lm serve --reward-length-bonus)")
	flag.BoolVar(&o.evalEach, "eval-each", false, "score every iteration's trained policy on the held-out prompts, not only the final one")
	flag.Float64Var(&o.beta, "beta", 0.1, "β of every loss (the initial base β of epsilon-dpo)")
	flag.IntVar(&o.samples, "samples", 4, "responses per prompt")
	flag.IntVar(&o.maxTokens, "max-tokens", 64, "longest response")
	flag.IntVar(&o.count, "count", 40, "pairs selected for training per iteration (the data budget)")
	flag.IntVar(&o.evalSamples, "eval-samples", 8, "held-out responses per prompt")
	flag.BoolVar(&o.keep, "keep", false, "keep each run's database")
	flag.Parse()
	var err error
	if o.seeds, err = parseSeeds(seeds); err != nil {
		fail(err)
	}
	o.metrics, o.losses, o.controls = strings.Split(metrics, ","), strings.Split(losses, ","), strings.Split(controls, ",")
	if *tableFrom != "" {
		if err := learningTableFrom(os.Stdout, options{losses: o.losses, metrics: o.metrics}, *tableFrom); err != nil {
			fail(err)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ablation:", err)
	os.Exit(1)
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("-seeds %q: %w", s, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func run(ctx context.Context, o options) error {
	start := time.Now()
	if o.workdir == "" {
		dir, err := os.MkdirTemp("", "selfplay-ablation-")
		if err != nil {
			return err
		}
		o.workdir = dir
	}
	for _, p := range []*string{&o.prompts, &o.heldout} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if o.bin == "" {
		o.bin = filepath.Join(o.workdir, "selfplay")
		build := exec.CommandContext(ctx, "go", "build", "-o", o.bin, "./cmd/selfplay")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build selfplay (run from the repository root): %w", err)
		}
	}
	res, err := os.Create(o.results)
	if err != nil {
		return err
	}
	defer res.Close()
	fmt.Fprintf(os.Stderr, "ablation: work folder %s\n", o.workdir)

	baseline, err := evaluate(ctx, o, "", "builtin")
	if err != nil {
		return err
	}
	var all []runResult
	for _, seed := range o.seeds {
		for _, loss := range o.losses {
			for _, metric := range o.metrics {
				for _, control := range o.controls {
					r, err := selfPlay(ctx, o, metric, loss, control, seed)
					if err != nil {
						return fmt.Errorf("%s/%s/%s/seed %d: %w", metric, loss, control, seed, err)
					}
					b, _ := json.Marshal(r)
					fmt.Fprintln(res, string(b))
					fmt.Fprintf(os.Stderr, "ablation: %-19s %-11s %-8s seed %d: held-out reward %.4f (%.0fs)\n", metric, loss, control, seed, r.Final.MeanReward, r.Seconds)
					all = append(all, r)
				}
			}
		}
	}
	if len(o.controls) > 1 || o.lengthBonus != 0 {
		printLengthTable(os.Stdout, o, baseline, all, time.Since(start))
		return nil
	}
	printTable(os.Stdout, o, baseline, all, time.Since(start))
	printLearning(os.Stdout, o, all)
	return nil
}

// selfPlay runs one three-iteration self-play and scores its final policy.
func selfPlay(ctx context.Context, o options, metric, loss, control string, seed uint64) (runResult, error) {
	start := time.Now()
	name := fmt.Sprintf("%s-%s-s%d", metric, loss, seed)
	if control != "none" {
		name = fmt.Sprintf("%s-%s-%s-s%d", metric, loss, control, seed)
	}
	dir := filepath.Join(o.workdir, name)
	models := filepath.Join(dir, "models")
	if err := os.MkdirAll(models, 0o755); err != nil {
		return runResult{}, err
	}
	dbURL, dropDB, err := createDatabase(ctx, o.dbURL, "ablation_"+strings.NewReplacer("-", "_").Replace(name))
	if err != nil {
		return runResult{}, err
	}
	if !o.keep {
		defer dropDB()
	}
	stream := "ABLATION_" + strings.ToUpper(strings.NewReplacer("-", "_").Replace(name))
	defer deleteStream(o.natsURL, stream)
	addr, err := freeAddr()
	if err != nil {
		return runResult{}, err
	}
	hook, _ := json.Marshal([]string{o.bin, "lm", "train", "--models-dir", models, "--data", "{dataset}",
		"--init", "{policy_model}", "--out", "{next_model}", "--final-model", "final",
		"--loss", loss, "--beta", fmt.Sprint(o.beta), "--epochs", "3", "--seed", fmt.Sprint(seed)})
	cfg := fmt.Sprintf(`run: %s
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", max_concurrency: 16, timeout: 30s}
  reward: {base_url: "http://%s", kind: classify, model: reward, chat_template: tinylm, max_concurrency: 16, timeout: 30s}
generation: {samples: %d, temperature: 0.8, top_p: 0.95, max_tokens: %d, seed: %d}
scoring: {length_control: %s}
selection: {metric: %s, count: %d, seed: %d}
evolve: {metric: alignment_potential, implicit_weight: 2.5, ratio: 0.25}
export: {dir: %q}
hooks: {train: %s, train_timeout: 10m, wait_for_model: 2m, final_model: final}
worker: {concurrency: 8, ack_wait: 1m}
orchestrator: {progress_interval: 1m, poll_interval: 100ms}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
  - {name: iter1, policy_model: tiny-1, prompts: {evolved: true}}
  - {name: iter2, policy_model: tiny-2, prompts: {evolved: true}}
`, name, dbURL, o.natsURL, stream, addr, addr, o.samples, o.maxTokens, seed, control, metric, o.count, seed,
		filepath.Join(dir, "exports"), hook, o.prompts)
	cfg += learningYAML(seed)
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return runResult{}, err
	}
	if err := command(ctx, o.bin, dir, "migrate", "migrate", "-c", cfgPath).Run(); err != nil {
		return runResult{}, fmt.Errorf("migrate: %w (see %s)", err, filepath.Join(dir, "migrate.log"))
	}
	lm := command(ctx, o.bin, dir, "lm", "lm", "serve", "--addr", addr, "--models-dir", models, "--rescan-interval", "200ms",
		"--reward-length-bonus", fmt.Sprint(o.lengthBonus))
	if err := lm.Start(); err != nil {
		return runResult{}, err
	}
	defer stopProcess(lm)
	if err := waitHealthy(ctx, "http://"+addr+"/health"); err != nil {
		return runResult{}, err
	}
	worker := command(ctx, o.bin, dir, "worker", "worker", "-c", cfgPath, "--log-level", "warn")
	if err := worker.Start(); err != nil {
		return runResult{}, err
	}
	defer stopProcess(worker)
	if err := command(ctx, o.bin, dir, "run", "run", "-c", cfgPath).Run(); err != nil {
		return runResult{}, fmt.Errorf("selfplay run: %w (see %s)", err, filepath.Join(dir, "run.log"))
	}
	r := runResult{Metric: metric, Loss: loss, Seed: seed}
	if len(o.controls) > 1 || control != "none" {
		r.LengthControl = control
	}
	r.LengthBonus = o.lengthBonus
	if r.Iterations, err = iterationStats(ctx, dbURL); err != nil {
		return runResult{}, err
	}
	if r.Learning, err = learningStats(ctx, dbURL); err != nil {
		return runResult{}, err
	}
	if o.evalEach {
		for _, it := range r.Iterations[1:] {
			e, err := evaluate(ctx, o, models, it.Policy)
			if err != nil {
				return runResult{}, err
			}
			r.Policies = append(r.Policies, e)
		}
	}
	if r.Final, err = evaluate(ctx, o, models, "final"); err != nil {
		return runResult{}, err
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

// command is the selfplay binary with args, run in dir, its output in
// dir/<log>.log.
func command(ctx context.Context, bin, dir, log string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	if f, err := os.OpenFile(filepath.Join(dir, log+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// stopProcess asks a process this program started to stop and waits.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func waitHealthy(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer within 30s", url)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// createDatabase creates a fresh database on the server of adminURL and
// returns its URL and a function that drops it.
func createDatabase(ctx context.Context, adminURL, name string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL at %s: %w", adminURL, err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, err
	}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return "", nil, err
	}
	u := strings.Replace(adminURL, "/"+cfg.Database+"?", "/"+name+"?", 1)
	if !strings.Contains(u, "/"+name) {
		return "", nil, fmt.Errorf("cannot derive the URL of database %s from %s", name, adminURL)
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, adminURL); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	return u, drop, nil
}

func deleteStream(url, name string) {
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = js.DeleteStream(ctx, name)
}

func iterationStats(ctx context.Context, dbURL string) ([]iterStats, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT i.name, i.policy_model,
		       (SELECT count(*) FROM iteration_prompts ip WHERE ip.iteration_id = i.id),
		       (SELECT count(*) FROM pairs p WHERE p.iteration_id = i.id),
		       (SELECT count(*) FROM pairs p WHERE p.iteration_id = i.id AND p.selected),
		       coalesce((SELECT avg(r.reward) FROM responses r WHERE r.iteration_id = i.id), 0),
		       coalesce((SELECT avg(r.reward) FROM pairs p JOIN responses r ON r.id = p.chosen_id
		                 WHERE p.iteration_id = i.id AND p.selected), 0),
		       coalesce((SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND s.reply_group = 'all'), 0),
		       coalesce((SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND s.reply_group = 'selected_chosen'), 0),
		       f.slope, f.r2, coalesce(f.applied, false)
		FROM iterations i LEFT JOIN length_fits f ON f.iteration_id = i.id ORDER BY i.ordinal`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (iterStats, error) {
		var s iterStats
		err := row.Scan(&s.Name, &s.Policy, &s.Prompts, &s.Pairs, &s.Selected, &s.MeanReward, &s.ChosenReward,
			&s.MeanTokens, &s.ChosenTokens, &s.Slope, &s.R2, &s.ResidualScored)
		return s, err
	})
}

// evaluate scores one model with `selfplay lm eval` on the held-out prompts.
func evaluate(ctx context.Context, o options, modelsDir, model string) (evalLine, error) {
	args := []string{"lm", "eval", "--prompts", o.heldout, "--samples", fmt.Sprint(o.evalSamples), "--max-tokens", "128", "--seed", "1", "--json"}
	if modelsDir != "" {
		args = append(args, "--models-dir", modelsDir)
	}
	out, err := exec.CommandContext(ctx, o.bin, append(args, model)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return evalLine{}, fmt.Errorf("lm eval %s: %w: %s", model, err, ee.Stderr)
		}
		return evalLine{}, err
	}
	var line evalLine
	if err := json.Unmarshal(out, &line); err != nil {
		return evalLine{}, fmt.Errorf("lm eval %s: %w", model, err)
	}
	return line, nil
}

// printTable writes the Markdown table: per metric and loss the mean and
// sample standard deviation over seeds of the final policy's held-out
// reward, and the per-seed values.
func printTable(w io.Writer, o options, baseline evalLine, all []runResult, took time.Duration) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "Held-out reward of the final policy (%d prompts × %d samples, seed 1) after three self-play iterations; mean ± sample sd over seeds %v.\n\n",
		baseline.Prompts, o.evalSamples, o.seeds)
	fmt.Fprintln(bw, "| selection metric | training | held-out reward | per seed | words / reply | ended | chosen reward, iter0 → iter2 |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|---|")
	fmt.Fprintf(bw, "| — (tiny-0, untrained) | — | %.3f | — | %.1f | %.0f%% | — |\n", baseline.MeanReward, baseline.Words, 100*baseline.StopRate)
	for _, loss := range o.losses {
		for _, metric := range o.metrics {
			var xs, words, stops, c0, c2 []float64
			for _, r := range all {
				if r.Metric == metric && r.Loss == loss {
					xs = append(xs, r.Final.MeanReward)
					words = append(words, r.Final.Words)
					stops = append(stops, r.Final.StopRate)
					c0 = append(c0, r.Iterations[0].ChosenReward)
					c2 = append(c2, r.Iterations[len(r.Iterations)-1].ChosenReward)
				}
			}
			if len(xs) == 0 {
				continue
			}
			m, sd := meanSD(xs)
			per := make([]string, len(xs))
			for i, x := range xs {
				per[i] = fmt.Sprintf("%.3f", x)
			}
			mw, _ := meanSD(words)
			ms, _ := meanSD(stops)
			m0, _ := meanSD(c0)
			m2, _ := meanSD(c2)
			fmt.Fprintf(bw, "| %s | %s | **%.3f ± %.3f** | %s | %.1f | %.0f%% | %.2f → %.2f |\n", metric, loss, m, sd, strings.Join(per, ", "), mw, 100*ms, m0, m2)
		}
	}
	fmt.Fprintf(bw, "\n%d runs in %s.\n", len(all), took.Round(time.Second))
}

func meanSD(xs []float64) (float64, float64) {
	var m float64
	for _, x := range xs {
		m += x
	}
	m /= float64(len(xs))
	if len(xs) < 2 {
		return m, 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(xs)-1))
}

// printLengthTable writes the length study's Markdown table: per length
// control and iteration, means over seeds of the in-loop reply length, the
// selected chosen length, the fit's slope and R², and the held-out words
// and reward of the policy trained on that iteration's selection, without
// and with the length bonus (reward + bonus·words, exact: the bonus is
// linear in words).
func printLengthTable(w io.Writer, o options, baseline evalLine, all []runResult, took time.Duration) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	fmt.Fprintf(bw, "Reward bonus %g per reply word; held-out: %d prompts × %d samples, seed 1; means over seeds %v (± sample sd).\n\n",
		o.lengthBonus, baseline.Prompts, o.evalSamples, o.seeds)
	fmt.Fprintln(bw, "| length_control | iteration | reply tokens (in loop) | selected chosen tokens | slope (reward/token) | R² | trained policy | held-out words | held-out reward | held-out reward + bonus |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|---|---|---|---|")
	fmt.Fprintf(bw, "| — | — | — | — | — | — | tiny-0 (untrained) | %.1f | %.3f | %.3f |\n", baseline.Words, baseline.MeanReward,
		baseline.MeanReward+o.lengthBonus*baseline.Words)
	for _, control := range o.controls {
		var runs []runResult
		for _, r := range all {
			if r.LengthControl == control || (r.LengthControl == "" && control == "none") {
				runs = append(runs, r)
			}
		}
		if len(runs) == 0 {
			continue
		}
		for i := range runs[0].Iterations {
			var tok, chosen, slope, r2, words, reward, bonus []float64
			policy := ""
			for _, r := range runs {
				it := r.Iterations[i]
				tok, chosen = append(tok, it.MeanTokens), append(chosen, it.ChosenTokens)
				if it.Slope != nil {
					slope, r2 = append(slope, *it.Slope), append(r2, *it.R2)
				}
				e := r.Final
				if i < len(r.Policies) {
					e = r.Policies[i]
				}
				policy = fmt.Sprintf("trained on %s", it.Name)
				words, reward = append(words, e.Words), append(reward, e.MeanReward)
				bonus = append(bonus, e.MeanReward+o.lengthBonus*e.Words)
			}
			if !o.evalEach && i < len(runs[0].Iterations)-1 {
				words, reward, bonus = nil, nil, nil
			}
			fmt.Fprintf(bw, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", control, runs[0].Iterations[i].Name,
				cell(tok, "%.1f"), cell(chosen, "%.1f"), cell(slope, "%.4f"), cell(r2, "%.3f"), policy,
				cell(words, "%.1f"), cell(reward, "%.3f"), cell(bonus, "%.3f"))
		}
	}
	fmt.Fprintf(bw, "\n%d runs in %s.\n", len(all), took.Round(time.Second))
}

// cell formats the mean ± sample sd of xs, or — when there are none.
func cell(xs []float64, format string) string {
	if len(xs) == 0 {
		return "—"
	}
	m, sd := meanSD(xs)
	if len(xs) < 2 {
		return fmt.Sprintf(format, m)
	}
	return fmt.Sprintf(format+" ± "+format, m, sd)
}
