package orchestrator_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/llm/llamacpptest"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
	"github.com/selfplay/selfplay/tinylm"
)

// learnLoop is one iteration on the built-in model whose train hook makes
// tiny-1 (hooks.final_model) with `selfplay lm train`, with the learning
// check on: the check teacher-forces the iteration's pairs under tiny-1.
type learnLoop struct {
	pool    *pgxpool.Pool
	cfgPath string
	models  string
	exports string
}

type learnOptions struct {
	prompts   int
	sample    int
	lmArgs    []string
	workerCon int
}

func startLearnLoop(t *testing.T, o learnOptions) *learnLoop {
	t.Helper()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	l := &learnLoop{pool: pool, models: filepath.Join(dir, "models"), exports: filepath.Join(dir, "exports")}
	require.NoError(t, os.MkdirAll(l.models, 0o755))
	addr := selfplaytest.FreeAddr(t)
	selfplaytest.StartLM(t, "lm", addr, nil, append([]string{"--model", "tiny-0=builtin", "--models-dir", l.models, "--rescan-interval", "200ms"}, o.lmArgs...)...)

	src, err := os.Open(filepath.Join(selfplaytest.Root(), "examples", "prompts.jsonl"))
	require.NoError(t, err)
	defer src.Close()
	var lines []string
	sc := bufio.NewScanner(src)
	for sc.Scan() && len(lines) < o.prompts {
		lines = append(lines, sc.Text())
	}
	prompts := filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	cfg := fmt.Sprintf(`
run: learn
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", timeout: 10s, max_retries: 8}
  reward: {base_url: "http://%s", kind: classify, model: reward, chat_template: tinylm}
generation: {samples: 4, max_tokens: 32}
selection: {metric: alignment_potential, ratio: 0.4}
evolve: {enabled: false}
learning_check: {enabled: true, sample: %d, seed: 5}
worker: {concurrency: %d, ack_wait: 30s}
orchestrator: {progress_interval: 1s, poll_interval: 100ms}
export: {dir: %q}
hooks:
  train: [%q, lm, train, --models-dir, %q, --data, "{dataset}", --init, "{policy_model}", --out, "{next_model}", --loss, dpo, --epochs, "3", --seed, "1"]
  final_model: tiny-1
  wait_for_model: 1m
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
`, dbURL, nats.URL, nats.Stream, addr, addr, o.sample, o.workerCon, l.exports, selfplaytest.Binary(t), l.models, prompts)
	l.cfgPath = filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(l.cfgPath, []byte(cfg), 0o600))
	return l
}

func (l *learnLoop) count(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, l.pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
	return n
}

// checkedPair is a pair_learning row with what the test needs of its pair.
type checkedPair struct {
	msgs                        []prompt.Message
	chosen, rejected            string
	chosenTokens, rejTokens     int
	chosenFinish, rejFinish     string
	oldMargin, explicit, ap     float64
	selected                    bool
	model                       string
	chosenLP, rejectedLP        float64
	newMargin, storedOld, delta float64
}

func (l *learnLoop) checked(t *testing.T) []checkedPair {
	t.Helper()
	rows, err := l.pool.Query(context.Background(), `
		SELECT pr.messages, c.content, x.content, c.token_count, x.token_count, c.finish_reason, x.finish_reason,
		       p.implicit_margin, p.explicit_margin, p.alignment_potential, p.selected,
		       pl.model, pl.chosen_logps, pl.rejected_logps, pl.implicit_margin, pl.old_implicit_margin, pl.delta
		FROM pair_learning pl JOIN pairs p ON p.id = pl.pair_id JOIN prompts pr ON pr.id = p.prompt_id
		JOIN responses c ON c.id = p.chosen_id JOIN responses x ON x.id = p.rejected_id ORDER BY p.id`)
	require.NoError(t, err)
	var out []checkedPair
	for rows.Next() {
		var c checkedPair
		require.NoError(t, rows.Scan(&c.msgs, &c.chosen, &c.rejected, &c.chosenTokens, &c.rejTokens, &c.chosenFinish, &c.rejFinish,
			&c.oldMargin, &c.explicit, &c.ap, &c.selected, &c.model, &c.chosenLP, &c.rejectedLP, &c.newMargin, &c.storedOld, &c.delta))
		out = append(out, c)
	}
	require.NoError(t, rows.Err())
	return out
}

// tinyLogProb is log π(reply | msgs) under m, computed here from tinylm's
// own probabilities: the prompt rendered by the chat template, the reply
// tokenized as the server's /tokenize does, and the end-of-turn token
// appended when the reply stopped on its own (as vLLM's samples count it).
func tinyLogProb(t *testing.T, m *tinylm.Model, msgs []prompt.Message, reply, finish string) float64 {
	t.Helper()
	var chat []tinylm.Message
	for _, x := range msgs {
		chat = append(chat, tinylm.Message{Role: x.Role, Content: x.Content})
	}
	promptIDs, err := m.Tok.EncodeChatTemplate(chat, true)
	require.NoError(t, err)
	ids := m.Tok.Encode(reply)
	if finish == tinylm.FinishStop {
		ids = append(ids, tinylm.EndID)
	}
	return logProb(t, m, promptIDs, ids)
}

// TestLearningCheckNumbers: every stored number of a learning check, worked
// out in the test from tinylm's exact probabilities of the trained tiny-1,
// the sample's split in proportion, the summary in the manifest from those
// values, and a second run of the same schedule that adds nothing.
func TestLearningCheckNumbers(t *testing.T) {
	t.Parallel()
	l := startLearnLoop(t, learnOptions{prompts: 20, sample: 9, workerCon: 4})
	selfplaytest.Start(t, "worker", nil, "worker", "-c", l.cfgPath, "--log-level", "warn")
	run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", l.cfgPath)
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(40))
	require.Contains(t, run.Output(), "learning check done")
	for _, line := range strings.Split(run.Output(), "\n") {
		if strings.Contains(line, "learning check done") {
			t.Log(line)
		}
	}

	// The sample: min(9, N) pairs, round(m·S/N) of them selected.
	n := l.count(t, `SELECT count(*) FROM pairs`)
	s := l.count(t, `SELECT count(*) FROM pairs WHERE selected`)
	require.Greater(t, n, int64(9), "the pool is larger than the sample")
	wantSel := int64(math.Floor(9*float64(s)/float64(n) + 0.5))
	require.EqualValues(t, 9, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'learn' AND status = 'done'`))
	require.EqualValues(t, 9, l.count(t, `SELECT count(*) FROM pair_learning`))
	require.Equal(t, wantSel, l.count(t, `SELECT count(*) FROM pair_learning pl JOIN pairs p ON p.id = pl.pair_id WHERE p.selected`))

	tiny1, err := tinylm.Load(filepath.Join(l.models, "tiny-1.bin.gz"))
	require.NoError(t, err)
	tiny0 := tinylm.Builtin()
	rows := l.checked(t)
	require.Len(t, rows, 9)
	var sumSel, sumNot float64
	var nSel, nNot, learned int
	var aps, deltas []float64
	for _, r := range rows {
		require.Equal(t, "tiny-1", r.model)
		lc := tinyLogProb(t, tiny1, r.msgs, r.chosen, r.chosenFinish)
		lr := tinyLogProb(t, tiny1, r.msgs, r.rejected, r.rejFinish)
		require.InDelta(t, lc, r.chosenLP, 1e-9, "chosen %q", r.chosen)
		require.InDelta(t, lr, r.rejectedLP, 1e-9, "rejected %q", r.rejected)
		// simpo form, normalised by the stored token counts.
		margin := lc/float64(r.chosenTokens) - lr/float64(r.rejTokens)
		require.InDelta(t, margin, r.newMargin, 1e-9)
		require.Equal(t, r.oldMargin, r.storedOld, "the old margin is the pair's")
		require.InDelta(t, margin-r.oldMargin, r.delta, 1e-9)
		// Before training the same computation under tiny-0 gives the
		// stored margin: the sampler's log-probs are tinylm's exact ones.
		old := tinyLogProb(t, tiny0, r.msgs, r.chosen, r.chosenFinish)/float64(r.chosenTokens) -
			tinyLogProb(t, tiny0, r.msgs, r.rejected, r.rejFinish)/float64(r.rejTokens)
		require.InDelta(t, r.oldMargin, old, 1e-9)
		if r.selected {
			sumSel += margin - r.oldMargin
			nSel++
			if margin > 0 {
				learned++
			}
		} else {
			sumNot += margin - r.oldMargin
			nNot++
		}
		aps, deltas = append(aps, r.ap), append(deltas, margin-r.oldMargin)
	}
	require.NotZero(t, nSel)
	require.NotZero(t, nNot)

	var m orchestrator.Manifest
	b, err := os.ReadFile(filepath.Join(l.exports, "learn", "iter0", "manifest.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &m))
	require.NotNil(t, m.LearningCheck, "the manifest carries the check")
	lc := m.LearningCheck
	require.Equal(t, "tiny-1", lc.Model)
	require.Equal(t, 9, lc.Sampled)
	require.Equal(t, 9, lc.Checked)
	require.EqualValues(t, n, lc.Pairs)
	require.Equal(t, nSel, lc.Selected.N)
	require.InDelta(t, sumSel/float64(nSel), *lc.Selected.MeanDelta, 1e-9)
	require.InDelta(t, sumNot/float64(nNot), *lc.NotSelected.MeanDelta, 1e-9)
	require.InDelta(t, float64(learned)/float64(nSel), *lc.Selected.Learned, 1e-12)
	rho, ok := metric.Spearman(aps, deltas)
	require.True(t, ok)
	require.InDelta(t, rho, *lc.Spearman[metric.AlignmentPotential].Rho, 1e-9)
	require.NotNil(t, lc.Spearman[metric.Random].Interval)

	html, err := os.ReadFile(filepath.Join(l.exports, "learn", "iter0", "report.html"))
	require.NoError(t, err)
	require.Contains(t, string(html), "Δ implicit margin against alignment potential", "the report was written again with the check")

	// The view agrees with the table.
	require.EqualValues(t, 9, l.count(t, `SELECT count(*) FROM pair_learning_details WHERE run = 'learn' AND implicit_form = 'simpo'`))
	require.EqualValues(t, learned, l.count(t, `SELECT count(*) FROM pair_learning_details WHERE selected AND learned`))

	// The same schedule again: the run is done, nothing is added.
	before := l.count(t, `SELECT count(*) FROM pair_learning`) + l.count(t, `SELECT count(*) FROM tasks`) + l.count(t, `SELECT count(*) FROM learning_checks`)
	again := selfplaytest.Start(t, "orchestrator-again", nil, "run", "-c", l.cfgPath)
	require.NoError(t, again.Wait(time.Minute), again.Tail(20))
	require.NotContains(t, again.Output(), "running hook")
	after := l.count(t, `SELECT count(*) FROM pair_learning`) + l.count(t, `SELECT count(*) FROM tasks`) + l.count(t, `SELECT count(*) FROM learning_checks`)
	require.Equal(t, before, after)
}

// TestLearningCheckResumesAfterKill kills the orchestrator and the worker
// inside the check, once some pairs are checked and others are not, and
// starts them again: the check finishes with every sampled pair stored
// once, the train hook not run again and no pair sampled anew.
func TestLearningCheckResumesAfterKill(t *testing.T) {
	t.Parallel()
	// One task at a time, each request 150 ms late: a pair takes about a
	// second, so the kill lands between the first and the last.
	l := startLearnLoop(t, learnOptions{prompts: 16, sample: 2000, workerCon: 1, lmArgs: []string{"--latency", "150ms"}})
	worker := selfplaytest.Start(t, "worker", nil, "worker", "-c", l.cfgPath, "--log-level", "warn")
	run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", l.cfgPath)
	require.Eventually(t, func() bool {
		return l.count(t, `SELECT count(*) FROM pair_learning`) >= 2 || run.Exited()
	}, 3*time.Minute, 20*time.Millisecond)
	require.NoError(t, run.Signal(syscall.SIGKILL))
	require.NoError(t, worker.Signal(syscall.SIGKILL))
	_ = run.Wait(10 * time.Second)
	_ = worker.Wait(10 * time.Second)
	sampled := l.count(t, `SELECT sampled FROM learning_checks`)
	pairs := l.count(t, `SELECT count(*) FROM pairs`)
	require.Equal(t, pairs, sampled, "a sample larger than the pool takes every pair")
	done := l.count(t, `SELECT count(*) FROM pair_learning`)
	require.Less(t, done, sampled, "killed inside the check")
	require.Equal(t, "checking", func() string {
		var s string
		require.NoError(t, l.pool.QueryRow(context.Background(), `SELECT stage FROM iterations`).Scan(&s))
		return s
	}())
	hookRuns := strings.Count(run.Output(), "running hook")
	require.Equal(t, 1, hookRuns)

	selfplaytest.Start(t, "worker-2", nil, "worker", "-c", l.cfgPath, "--log-level", "warn")
	run2 := selfplaytest.Start(t, "orchestrator-2", nil, "run", "-c", l.cfgPath)
	require.NoError(t, run2.Wait(3*time.Minute), run2.Tail(40))
	require.NotContains(t, run2.Output(), "running hook", "the train hook is not run again")
	require.Equal(t, sampled, l.count(t, `SELECT sampled FROM learning_checks`))
	require.Equal(t, sampled, l.count(t, `SELECT count(*) FROM pair_learning`))
	require.Equal(t, sampled, l.count(t, `SELECT count(DISTINCT pair_id) FROM pair_learning`))
	require.Equal(t, sampled, l.count(t, `SELECT count(*) FROM tasks WHERE kind = 'learn' AND status = 'done'`))
	require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM learning_checks WHERE (summary->>'checked')::int = $1`, sampled))
	require.EqualValues(t, 1, l.count(t, `SELECT count(*) FROM iterations WHERE stage = 'done'`))
}

// TestLearningCheckRefusedWithoutTeacherForcing: a policy endpoint on
// llama.cpp's llama-server, whose /tokenize does not read vLLM's requests
// and which has no prompt_logprobs (see llm's
// TestLlamaServerIsRefusedAsReference), cannot teacher-force: with the
// check on, `run` and `worker` refuse to start and say why, and nothing of
// the run is stored.
func TestLearningCheckRefusedWithoutTeacherForcing(t *testing.T) {
	t.Parallel()
	srv := llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 3}})
	dbURL := storetest.NewDatabase(t)
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(`{"prompt": "tell me about the cold river"}`+"\n"), 0o600))
	cfg := fmt.Sprintf(`
run: refused
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "%s/v1", max_n: 2}
  reward: {base_url: "%s", kind: judge, model: %s}
learning_check: {enabled: true}
export: {dir: %q}
iterations:
  - {name: iter0, policy_model: %s, prompts: {files: [%q]}}
`, dbURL, nats.URL, nats.Stream, srv.URL, srv.URL, srv.Alias, filepath.Join(dir, "exports"), srv.Alias, prompts)
	path := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))

	for _, cmd := range []string{"run", "worker"} {
		p := selfplaytest.Start(t, cmd, nil, cmd, "-c", path)
		err := p.Wait(time.Minute)
		require.Error(t, err, "%s started: %s", cmd, p.Tail(20))
		out := p.Output()
		require.Contains(t, out, "learning_check.enabled needs a policy endpoint that can teacher-force", cmd)
		require.Contains(t, out, "must be vLLM", cmd)
		require.Contains(t, out, "set learning_check.enabled: false", cmd)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	var runs int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM runs`).Scan(&runs))
	require.Zero(t, runs, "nothing of the run is stored")
}
