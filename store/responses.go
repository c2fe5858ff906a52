package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
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

// InsertResponses stores a prompt's responses for an iteration (rows that
// exist already are kept) and returns the id of each sample index.
func InsertResponses(ctx context.Context, db DBTX, iterationID, promptID int64, rs []Response) (map[int]int64, error) {
	b := &pgx.Batch{}
	for _, r := range rs {
		b.Queue(`INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count,
			logprob_sum, finish_reason, reward, ref_logprob_sum)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (iteration_id, prompt_id, sample_index) DO NOTHING`,
			iterationID, promptID, r.SampleIndex, r.Content, r.TokenCount, r.LogProbSum, r.FinishReason, r.Reward, r.RefLogProbSum)
	}
	b.Queue(`SELECT sample_index, id FROM responses WHERE iteration_id = $1 AND prompt_id = $2`, iterationID, promptID)
	br := db.SendBatch(ctx, b)
	defer br.Close()
	for range rs {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("insert responses of prompt %d: %w", promptID, translate(err))
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("read response ids of prompt %d: %w", promptID, err)
	}
	ids := map[int]int64{}
	var idx int
	var id int64
	if _, err := pgx.ForEachRow(rows, []any{&idx, &id}, func() error { ids[idx] = id; return nil }); err != nil {
		return nil, fmt.Errorf("read response ids of prompt %d: %w", promptID, err)
	}
	return ids, br.Close()
}

// Pair is a preference pair to store.
type Pair struct {
	IterationID    int64
	PromptID       int64
	ChosenID       int64
	RejectedID     int64
	ExplicitMargin float64
	ImplicitMargin float64
	DPOMargin      *float64
}

// InsertPair stores a prompt's pair; an existing pair is kept.
func InsertPair(ctx context.Context, db DBTX, p Pair) error {
	_, err := db.Exec(ctx, `INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id,
		explicit_margin, implicit_margin, dpo_margin) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (iteration_id, prompt_id) DO NOTHING`,
		p.IterationID, p.PromptID, p.ChosenID, p.RejectedID, p.ExplicitMargin, p.ImplicitMargin, p.DPOMargin)
	if err != nil {
		return fmt.Errorf("insert pair of prompt %d: %w", p.PromptID, translate(err))
	}
	return nil
}
