package orchestrator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/tinylm"
)

// TestTrainHookChangesThePolicy runs two iterations with `selfplay lm
// train` as the train hook: iter0 samples tiny-0 (the built-in model), the
// hook trains tiny-1 on iter0's export into the directory lm serve watches,
// the orchestrator waits until tiny-1 is served, and iter1 samples it.
func TestTrainHookChangesThePolicy(t *testing.T) {
	t.Parallel()
	models := t.TempDir()
	hook := fmt.Sprintf(`[%q, lm, train, --models-dir, %q, --data, "{dataset}", --init, "{policy_model}", --out, "{next_model}", --loss, dpo, --epochs, "3", --seed, "1"]
  final_model: tiny-final`,
		selfplaytest.Binary(t), models)
	l := startLoop(t, loopOptions{prompts: 60, samples: 4, ackWait: "30s", workerCon: 8,
		lmArgs: []string{"--models-dir", models, "--rescan-interval", "200ms"}, hook: hook, nextPolicy: "tiny-1"})
	l.worker(t, "worker-1")
	l.worker(t, "worker-2")
	run := l.orchestrator(t, "orchestrator")
	require.NoError(t, run.Wait(3*time.Minute), run.Tail(40))
	l.checkInvariants(t, 60)

	out := run.Output()
	require.Contains(t, out, "epoch 3/3", "the trainer's progress is in the orchestrator's log")
	require.Equal(t, 2, strings.Count(out, "next policy model is served"), "tiny-1, then hooks.final_model")
	require.Contains(t, out, `model=tiny-final`)
	ctx := context.Background()
	rows, err := l.pool.Query(ctx, `SELECT policy_model FROM iterations ORDER BY ordinal`)
	require.NoError(t, err)
	var policies []string
	for rows.Next() {
		var p string
		require.NoError(t, rows.Scan(&p))
		policies = append(policies, p)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"tiny-0", "tiny-1"}, policies)

	tiny1, err := tinylm.Load(filepath.Join(models, "tiny-1.bin.gz"))
	require.NoError(t, err)
	_, err = tinylm.Load(filepath.Join(models, "tiny-final.bin.gz"))
	require.NoError(t, err, "the last iteration's hook trained the final policy")
	tiny0 := tinylm.Builtin()

	// iter1's responses were sampled from tiny-1: their stored log-probs
	// are tiny-1's teacher-forced ones, not tiny-0's.
	rs, err := l.pool.Query(ctx, `SELECT p.messages, r.content, r.token_count, r.logprob_sum, r.finish_reason
		FROM responses r JOIN prompts p ON p.id = r.prompt_id JOIN iterations i ON i.id = r.iteration_id
		WHERE i.ordinal = 1 ORDER BY r.id LIMIT 40`)
	require.NoError(t, err)
	checked := 0
	for rs.Next() {
		var msgs []prompt.Message
		var content, finish string
		var tokens int
		var stored float64
		require.NoError(t, rs.Scan(&msgs, &content, &tokens, &stored, &finish))
		var chat []tinylm.Message
		for _, m := range msgs {
			chat = append(chat, tinylm.Message{Role: m.Role, Content: m.Content})
		}
		promptIDs, err := tiny1.Tok.EncodeChat(chat, true)
		require.NoError(t, err)
		ids := tiny1.Tok.Encode(content)
		if finish == tinylm.FinishStop {
			ids = append(ids, tinylm.EndID)
		}
		if len(ids) != tokens || slices.Contains(ids, 0) {
			continue // the text does not re-tokenize to the sampled ids (<unk>)
		}
		lp1, lp0 := logProb(t, tiny1, promptIDs, ids), logProb(t, tiny0, promptIDs, ids)
		require.InDelta(t, stored, lp1, 1e-6, "iter1 sampled tiny-1: %q", content)
		require.Greater(t, math.Abs(lp1-lp0), 1e-3)
		checked++
	}
	require.NoError(t, rs.Err())
	require.Greater(t, checked, 20)

	// The server serves both, with different log-probs for the same reply.
	base := "http://" + l.lmAddr
	served := servedModels(t, base)
	require.Subset(t, served, []string{"tiny-0", "tiny-1", "tiny-final"}, served)
	promptIDs, err := tiny0.Tok.EncodeChat([]tinylm.Message{{Role: "user", Content: "how do i cook rice ?"}}, true)
	require.NoError(t, err)
	reply := append(tiny0.Tok.Encode("rinse the rice , then boil it in salty water ."), tinylm.EndID)
	s0, s1 := servedLogProb(t, base, "tiny-0", promptIDs, reply), servedLogProb(t, base, "tiny-1", promptIDs, reply)
	require.InDelta(t, logProb(t, tiny0, promptIDs, reply), s0, 1e-9)
	require.InDelta(t, logProb(t, tiny1, promptIDs, reply), s1, 1e-9)
	require.Greater(t, math.Abs(s1-s0), 1e-3, "tiny-1 is a different policy")

	// The held-out mean reward of iteration 2's policy differs from
	// iteration 1's.
	held, err := prompt.ReadFile(filepath.Join(selfplaytest.Root(), "examples", "heldout.jsonl"), 0)
	require.NoError(t, err)
	var heldMsgs [][]tinylm.Message
	for _, p := range held {
		heldMsgs = append(heldMsgs, []tinylm.Message{{Role: p.Messages[0].Role, Content: p.Messages[0].Content}})
	}
	opts := tinylm.EvalOptions{Sampling: tinylm.SampleOptions{Temperature: 0.8, TopP: 0.95, MaxTokens: 128}, Samples: 2, Seed: 1}
	r0, err := tinylm.Evaluate(tiny0, heldMsgs, opts)
	require.NoError(t, err)
	r1, err := tinylm.Evaluate(tiny1, heldMsgs, opts)
	require.NoError(t, err)
	t.Logf("held-out mean reward: tiny-0 %.4f ± %.4f, tiny-1 %.4f ± %.4f", r0.MeanReward, r0.StdErr, r1.MeanReward, r1.StdErr)
	require.NotEqual(t, r0.MeanReward, r1.MeanReward)
}

func logProb(t *testing.T, m *tinylm.Model, promptIDs, ids []int) float64 {
	t.Helper()
	lps, err := m.ResponseLogProbs(promptIDs, ids)
	require.NoError(t, err)
	var s float64
	for _, x := range lps {
		s += x
	}
	return s
}

// servedLogProb asks the server for the teacher-forced log-probability of
// reply after promptIDs, the way the reference scorer does.
func servedLogProb(t *testing.T, base, model string, promptIDs, reply []int) float64 {
	t.Helper()
	body, err := json.Marshal(map[string]any{"model": model, "prompt": append(slices.Clone(promptIDs), reply...), "max_tokens": 1, "prompt_logprobs": 0})
	require.NoError(t, err)
	resp, err := http.Post(base+"/v1/completions", "application/json", strings.NewReader(string(body)))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var r struct {
		Choices []struct {
			PromptLogprobs []map[string]struct {
				Logprob float64 `json:"logprob"`
			} `json:"prompt_logprobs"`
		} `json:"choices"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&r))
	var s float64
	for i, id := range reply {
		s += r.Choices[0].PromptLogprobs[len(promptIDs)+i][fmt.Sprint(id)].Logprob
	}
	return s
}

func servedModels(t *testing.T, base string) []string {
	t.Helper()
	resp, err := http.Get(base + "/v1/models")
	require.NoError(t, err)
	defer resp.Body.Close()
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&list))
	var ids []string
	for _, d := range list.Data {
		ids = append(ids, d.ID)
	}
	return ids
}
