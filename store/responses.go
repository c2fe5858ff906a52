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

// completeGeneratesSQL is completeGenerateSQL for several tasks: each
// task's key is in $1/$2, its outcome and deliveries in $3/$4; responses
// and pairs name their task by its key. A task it does not find pending is
// left as it is, and its responses and pair are not written.
//
// Its plan should be the generic one: a custom plan, which the server
// prefers for arrays of known length, costs more to make than the
// statement costs to run (CompleteGenerates says how).
const completeGeneratesSQL = `
WITH k AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[]) AS k(iteration_id, prompt_id, outcome, attempts)
), done AS (
    UPDATE tasks t SET status = 'done', outcome = k.outcome, error = NULL, updated_at = now(),
        attempts = greatest(t.attempts, k.attempts)
    FROM k
    WHERE t.iteration_id = k.iteration_id AND t.prompt_id = k.prompt_id AND t.kind = 'generate' AND t.status = 'pending'
    RETURNING t.iteration_id, t.prompt_id
), ins AS (
    INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count,
                           logprob_sum, finish_reason, reward, ref_logprob_sum)
    SELECT r.* FROM unnest($5::bigint[], $6::bigint[], $7::int[], $8::text[], $9::int[], $10::float8[], $11::text[],
                           $12::float8[], $13::float8[])
         AS r(iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, finish_reason, reward, ref_logprob_sum)
    WHERE (r.iteration_id, r.prompt_id) IN (SELECT iteration_id, prompt_id FROM done)
    ON CONFLICT (iteration_id, prompt_id, sample_index) DO NOTHING
    RETURNING id, iteration_id, prompt_id, sample_index
)
INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin, dpo_margin)
SELECT p.iteration_id, p.prompt_id, c.id, x.id, p.explicit_margin, p.implicit_margin, p.dpo_margin
FROM unnest($14::bigint[], $15::bigint[], $16::int[], $17::int[], $18::float8[], $19::float8[], $20::float8[])
         AS p(iteration_id, prompt_id, chosen, rejected, explicit_margin, implicit_margin, dpo_margin)
JOIN ins c ON c.iteration_id = p.iteration_id AND c.prompt_id = p.prompt_id AND c.sample_index = p.chosen
JOIN ins x ON x.iteration_id = p.iteration_id AND x.prompt_id = p.prompt_id AND x.sample_index = p.rejected
ON CONFLICT (iteration_id, prompt_id) DO NOTHING`

// Completion is a generate task's results, as CompleteGenerate takes them.
type Completion struct {
	Key       TaskKey
	Outcome   string
	Attempts  int
	Responses []Response
	Pair      *PairChoice
}

// GenericPlans is the setting under which CompleteGenerates runs at its
// cost: a connection that writes batches runs it once, after connecting.
const GenericPlans = `SET plan_cache_mode = force_generic_plan`

// CompleteGenerates is CompleteGenerate for several tasks in one statement
// (one round trip, one transaction: all are recorded, or on an error none
// is). Each task is recorded only if it is still pending. The tasks must
// differ. On a connection with GenericPlans it costs the database about
// half of what as many CompleteGenerate calls cost, from four tasks on;
// without, more (it is planned at every call).
func CompleteGenerates(ctx context.Context, db DBTX, cs []Completion) error {
	switch len(cs) {
	case 0:
		return nil
	case 1:
		c := cs[0]
		return CompleteGenerate(ctx, db, c.Key, c.Outcome, c.Attempts, c.Responses, c.Pair)
	}
	var kIt, kPrompt []int64
	var kOutcome []string
	var kAttempts []int32
	var rIt, rPrompt []int64
	var rIdx, rTokens []int32
	var rContent, rFinish []string
	var rLP []float64
	var rReward, rRef []*float64
	var pIt, pPrompt []int64
	var pChosen, pRejected []int32
	var pMex, pMim []float64
	var pDPO []*float64
	seen := make(map[TaskKey]bool, len(cs))
	for _, c := range cs {
		if seen[c.Key] {
			return fmt.Errorf("complete %s: the task is given twice", c.Key)
		}
		seen[c.Key] = true
		kIt, kPrompt = append(kIt, c.Key.IterationID), append(kPrompt, c.Key.PromptID)
		kOutcome, kAttempts = append(kOutcome, c.Outcome), append(kAttempts, int32(c.Attempts))
		for _, r := range c.Responses {
			rIt, rPrompt = append(rIt, c.Key.IterationID), append(rPrompt, c.Key.PromptID)
			rIdx, rContent, rTokens = append(rIdx, int32(r.SampleIndex)), append(rContent, r.Content), append(rTokens, int32(r.TokenCount))
			rLP, rFinish = append(rLP, r.LogProbSum), append(rFinish, r.FinishReason)
			rReward, rRef = append(rReward, r.Reward), append(rRef, r.RefLogProbSum)
		}
		if p := c.Pair; p != nil {
			pIt, pPrompt = append(pIt, c.Key.IterationID), append(pPrompt, c.Key.PromptID)
			pChosen, pRejected = append(pChosen, int32(p.Chosen)), append(pRejected, int32(p.Rejected))
			pMex, pMim, pDPO = append(pMex, p.ExplicitMargin), append(pMim, p.ImplicitMargin), append(pDPO, p.DPOMargin)
		}
	}
	_, err := db.Exec(ctx, completeGeneratesSQL, kIt, kPrompt, kOutcome, kAttempts,
		rIt, rPrompt, rIdx, rContent, rTokens, rLP, rFinish, rReward, rRef,
		pIt, pPrompt, pChosen, pRejected, pMex, pMim, pDPO)
	if err != nil {
		return fmt.Errorf("complete %d generate tasks: %w", len(cs), translate(err))
	}
	return nil
}

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
