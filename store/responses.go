package store

import (
	"context"
	"fmt"
)

// Response is a sampled response to store.
type Response struct {
	SampleIndex   int
	Content       string
	TokenCount    int
	LogProbSum    float64
	FinishReason  string
	Reward        *float64
	RefLogProbSum *float64
}

// PairChoice names a prompt's pair by sample index, with its margins.
type PairChoice struct {
	Chosen, Rejected int
	ExplicitMargin   float64
	ImplicitMargin   float64
	DPOMargin        *float64
}

// completeGenerateSQL settles a generate task in one statement (one round
// trip, one implicit transaction): it marks the task done only if it is
// still pending — taking the row lock, so a racing delivery waits and
// then finds it done — and writes the responses and the pair only when it
// did.
const completeGenerateSQL = `
WITH done AS (
    UPDATE tasks SET status = 'done', outcome = $3, error = NULL, updated_at = now(),
        attempts = greatest(attempts, $17)
    WHERE iteration_id = $1 AND prompt_id = $2 AND kind = 'generate' AND status = 'pending'
    RETURNING 1
), ins AS (
    INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count,
                           logprob_sum, finish_reason, reward, ref_logprob_sum)
    SELECT $1, $2, r.* FROM unnest($4::int[], $5::text[], $6::int[], $7::float8[], $8::text[],
                                   $9::float8[], $10::float8[]) AS r
    WHERE EXISTS (SELECT 1 FROM done)
    ON CONFLICT (iteration_id, prompt_id, sample_index) DO NOTHING
    RETURNING id, sample_index
)
INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin, dpo_margin)
SELECT $1, $2, c.id, x.id, $13, $14, $15
FROM ins c JOIN ins x ON c.sample_index = $11 AND x.sample_index = $12
WHERE $16
ON CONFLICT (iteration_id, prompt_id) DO NOTHING`

// CompleteGenerate records a generate task's results — its responses, its
// pair (nil when the prompt yielded none) and status done with outcome —
// atomically, and only if the task is still pending; a task another
// delivery settled first is left as it is.
//
// attempts is the task's delivery count, recorded with it.
func CompleteGenerate(ctx context.Context, db DBTX, k TaskKey, outcome string, attempts int, rs []Response, pair *PairChoice) error {
	n := len(rs)
	idx, tokens := make([]int32, n), make([]int32, n)
	content, finish := make([]string, n), make([]string, n)
	lp := make([]float64, n)
	reward, ref := make([]*float64, n), make([]*float64, n)
	for i, r := range rs {
		idx[i], content[i], tokens[i], lp[i], finish[i] = int32(r.SampleIndex), r.Content, int32(r.TokenCount), r.LogProbSum, r.FinishReason
		reward[i], ref[i] = r.Reward, r.RefLogProbSum
	}
	p := PairChoice{Chosen: -1, Rejected: -1}
	if pair != nil {
		p = *pair
	}
	_, err := db.Exec(ctx, completeGenerateSQL, k.IterationID, k.PromptID, outcome,
		idx, content, tokens, lp, finish, reward, ref,
		p.Chosen, p.Rejected, p.ExplicitMargin, p.ImplicitMargin, p.DPOMargin, pair != nil, attempts)
	if err != nil {
		return fmt.Errorf("complete %s: %w", k, translate(err))
	}
	return nil
}
