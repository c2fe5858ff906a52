package orchestrator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/llm/llamacpptest"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// llamaLoop is a whole system on llama.cpp's llama-server: the policy and
// a judge are two llama-server processes serving tiny synthetic GGUF
// models (llm/llamacpptest), with the real PostgreSQL and NATS.
type llamaLoop struct {
	*loop
	policy, judge *llamacpptest.Server
	prompts       []string
}

const (
	llamaSamples   = 5 // above the policy server's 4 slots: the n fallback runs
	llamaMaxTokens = 24
	llamaSeed      = 42
)

// startLlamaLoop writes a two-iteration schedule against llama-server.
// endpointsExtra is YAML added under endpoints, iterationsYAML replaces the
// iterations; in both {policy} stands for the policy server's URL and
// {prompts} for the prompts file.
func startLlamaLoop(t *testing.T, prompts int, endpointsExtra, iterationsYAML string) *llamaLoop {
	t.Helper()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	l := &llamaLoop{
		loop:   &loop{dbURL: dbURL, pool: pool, dir: dir, samples: llamaSamples, ratio: 0.4},
		policy: llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 1}, Alias: "tiny-llama", Slots: 4}),
		judge:  llamacpptest.Start(t, llamacpptest.Options{Model: llamacpptest.Model{Seed: 2, Judge: true}, Alias: "judge", Slots: 4}),
	}

	src, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "examples", "prompts.jsonl"))
	require.NoError(t, err)
	var lines []string
	for _, line := range strings.Split(string(src), "\n")[:prompts] {
		var p struct{ Prompt string }
		require.NoError(t, json.Unmarshal([]byte(line), &p))
		l.prompts = append(l.prompts, p.Prompt)
		lines = append(lines, line)
	}
	promptsPath := filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(promptsPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	endpointsExtra = strings.ReplaceAll(endpointsExtra, "{policy}", l.policy.URL)
	iterationsYAML = strings.ReplaceAll(iterationsYAML, "{prompts}", promptsPath)
	if iterationsYAML == "" {
		iterationsYAML = fmt.Sprintf(`
  - {name: iter0, policy_model: tiny-llama, prompts: {files: [%q]}}
  - {name: iter1, policy_model: tiny-llama, prompts: {evolved: true}}`, promptsPath)
	}
	cfg := fmt.Sprintf(`
run: llama
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "%s/v1", max_concurrency: 8, timeout: 30s}
  reward: {base_url: %q, kind: judge, model: judge, max_concurrency: 8, timeout: 30s}%s
generation: {samples: %d, max_tokens: %d, seed: %d}
selection: {metric: alignment_potential, ratio: 0.4}
evolve: {strategies: [breadth, deepen, concretize], max_tokens: %d}
worker: {concurrency: 4, ack_wait: 30s, max_deliver: 3}
orchestrator: {progress_interval: 1s, poll_interval: 100ms}
export: {dir: %q}
hooks:
  train: [/bin/sh, -c, 'printf "%%s %%s %%s\n" "$1" "$2" "$3" >> %s', hook, "{dataset}", "{iteration}", "{next_model}"]
  wait_for_model: 30s
iterations:%s
`, dbURL, nats.URL, nats.Stream, l.policy.URL, l.judge.URL, endpointsExtra, llamaSamples, llamaMaxTokens, llamaSeed, llamaMaxTokens,
		filepath.Join(dir, "exports"), filepath.Join(dir, "hook.log"), iterationsYAML)
	l.cfgPath = filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(l.cfgPath, []byte(cfg), 0o600))
	return l
}

// The whole loop on llama-server: sampling with log-probs (n = 5 above
// its 4 slots, so the first request is refused and the model switches to
// one request per sample), the judge reward through chat, evolution, two
// iterations, exports and the train hook. Besides the invariants every
// finished run keeps, it checks what llama-server really returned: a
// stored response is the text and log-prob sum llama-server gives for the
// same request again, replies cut by max_tokens hold exactly max_tokens
// tokens (llama-server honours max_tokens, an alias of its n_predict:
// tools/server/server-schema.cpp), the grades are the judge's 1–9 digits.
func TestLlamaServerEndToEnd(t *testing.T) {
	t.Parallel()
	l := startLlamaLoop(t, 8, "", "")
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	l.checkInvariants(t, 8)
	require.Zero(t, l.count(t, `SELECT count(*) FROM tasks WHERE status = 'failed'`))

	lines := l.hookLines(t)
	require.Len(t, lines, 2, lines)
	require.Equal(t, filepath.Join(l.dir, "exports", "llama", "iter0", "train.jsonl")+" iter0 tiny-llama", lines[0])

	// Every response: tokens counted, a negative log-prob, and a grade
	// from the judge's digits.
	require.Zero(t, l.count(t, `SELECT count(*) FROM responses WHERE token_count < 1 OR token_count > $1
		OR NOT logprob_sum < 0 OR reward NOT IN (1, 2, 3, 4, 5, 6, 7, 8, 9) OR finish_reason NOT IN ('stop', 'length')
		OR ref_logprob_sum IS NOT NULL`, llamaMaxTokens))
	require.Zero(t, l.count(t, `SELECT count(*) FROM responses WHERE finish_reason = 'length' AND token_count <> $1`, llamaMaxTokens))
	require.Positive(t, l.count(t, `SELECT count(*) FROM responses WHERE finish_reason = 'length'`))
	require.Positive(t, l.count(t, `SELECT count(*) FROM responses WHERE finish_reason = 'stop'`))
	require.Positive(t, l.count(t, `SELECT count(DISTINCT reward) FROM responses`)-1, "the judge's grades differ")

	// Replay samples of the first iteration on llama-server: the same
	// request (seed = the prompt's seed + sample index, one sample per
	// request) returns the stored text and log-prob sum.
	rows, err := l.pool.Query(context.Background(), `SELECT p.messages, r.sample_index, r.content, r.logprob_sum, r.token_count, r.finish_reason
		FROM responses r JOIN prompts p ON p.id = r.prompt_id JOIN iterations i ON i.id = r.iteration_id
		WHERE i.ordinal = 0 AND r.sample_index IN (0, 3) ORDER BY r.prompt_id, r.sample_index LIMIT 6`)
	require.NoError(t, err)
	type stored struct {
		msgs     []prompt.Message
		index    int
		content  string
		logprob  float64
		tokens   int
		finished string
	}
	var replay []stored
	for rows.Next() {
		var s stored
		var raw []byte
		require.NoError(t, rows.Scan(&raw, &s.index, &s.content, &s.logprob, &s.tokens, &s.finished))
		require.NoError(t, json.Unmarshal(raw, &s.msgs))
		replay = append(replay, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, replay, 6)
	for _, s := range replay {
		seed := promptSeed(llamaSeed, s.msgs) + int64(s.index)
		got := llamaChat(t, l.policy, s.msgs, seed)
		require.Equal(t, s.content, got.content, "sample %d of %v", s.index, s.msgs)
		require.Equal(t, s.tokens, got.tokens)
		require.Equal(t, s.finished, got.finished)
		// Exactly equal, bit for bit: llamacpptest serves with
		// --ubatch-size 1 and one KV stream per slot, so every token goes
		// through the same one-row products and reads only its own
		// sequence's cache, however many requests were in flight when the
		// sample was drawn or whether the prompt's prefix was cached. With
		// llama-server's default ubatch a replay differed from the stored
		// sum by up to 3.3e-4 of it (issue 26).
		require.Equal(t, s.logprob, got.logprob, "log-prob sum of sample %d", s.index)
	}

	// The export holds llama-server's texts, chosen graded above rejected.
	f, err := os.Open(filepath.Join(l.dir, "exports", "llama", "iter0", "train.jsonl"))
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		var row orchestrator.Row
		require.NoError(t, json.Unmarshal(sc.Bytes(), &row))
		require.Greater(t, row.ScoreChosen, row.ScoreRejected)
		require.Nil(t, row.RefChosenLogps)
		n++
	}
	require.Positive(t, n)
}

// promptSeed is the worker's per-prompt seed (worker/generate_task.go):
// the base seed plus the first 48 bits of the prompt's hash, shifted by 10.
func promptSeed(base int64, msgs []prompt.Message) int64 {
	v, _ := strconv.ParseUint(prompt.Hash(msgs)[:12], 16, 64)
	return base + int64(v)<<10
}

type llamaReply struct {
	content, finished string
	logprob           float64
	tokens            int
}

// llamaChat asks llama-server for one sample the way the policy sampler
// does, and sums its log-probs.
func llamaChat(t *testing.T, srv *llamacpptest.Server, msgs []prompt.Message, seed int64) llamaReply {
	t.Helper()
	body, err := json.Marshal(map[string]any{
		"model": srv.Alias, "messages": msgs, "n": 1, "logprobs": true, "seed": seed,
		"temperature": 0.8, "top_p": 0.95, "max_tokens": llamaMaxTokens,
		// The neutral sampling settings the policy client always sends
		// (generation.top_k, min_p, repetition_penalty and the penalties),
		// so llama-server's own defaults (top_k 40, min_p 0.05) do not apply.
		"top_k": 0, "min_p": 0, "repetition_penalty": 1, "presence_penalty": 0, "frequency_penalty": 0,
	})
	require.NoError(t, err)
	resp, err := http.Post(srv.URL+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var out struct {
		Choices []struct {
			FinishReason string `json:"finish_reason"`
			Message      struct {
				Content string `json:"content"`
			} `json:"message"`
			LogProbs struct {
				Content []struct {
					LogProb float64 `json:"logprob"`
				} `json:"content"`
			} `json:"logprobs"`
		} `json:"choices"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	require.Len(t, out.Choices, 1)
	c := out.Choices[0]
	r := llamaReply{content: c.Message.Content, finished: c.FinishReason, tokens: len(c.LogProbs.Content)}
	for _, lp := range c.LogProbs.Content {
		r.logprob += lp.LogProb
	}
	require.False(t, math.IsNaN(r.logprob))
	return r
}

// A worker whose reference endpoint is llama-server refuses to start, with
// the reason: its /tokenize does not speak vLLM's form, so every reference
// log-prob would have been 0 (issue: "Reference log-probs silently 0").
// Nothing is scored and no task is touched.
func TestLlamaServerReferenceRefusedAtWorkerStart(t *testing.T) {
	t.Parallel()
	l := startLlamaLoop(t, 2, `
  reference: {base_url: "{policy}", model: tiny-llama}`, `
  - {name: iter0, policy_model: tiny-llama, reference_model: tiny-llama, prompts: {files: ["{prompts}"]}}`)
	w := l.worker(t, "worker")
	err := w.Wait(time.Minute)
	require.Error(t, err, "the worker must exit")
	out := w.Output()
	require.Contains(t, out, `endpoints.reference cannot score reference model "tiny-llama", so this worker will not start`)
	require.Contains(t, out, "the reference endpoint must be vLLM")
	require.Zero(t, l.count(t, `SELECT count(*) FROM responses`))
}
