package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/prompt"
)

// Reasons a prompt is flagged (prompt_flags.reason).
const (
	ReasonNearDuplicate = "near_duplicate"
	ReasonContaminated  = "contaminated"
)

// Flag is a prompt found near-duplicate or contaminated.
type Flag struct {
	IterationID int64
	Reason      string
	// Dropped: left out of the pool; false for a near-duplicate of a
	// prompt file kept under dedup.loaded: report.
	Dropped bool
	// Prompt is the flagged prompt (hash, messages, source, source id,
	// parent and strategy); PromptID its row when it is stored, else 0.
	Prompt   prompt.Prompt
	PromptID int64
	// Near-duplicates: the prompt matched and the two similarities.
	MatchedPromptID  int64
	Estimated, Exact float64
	// Contamination: the benchmark prompt's file and row.
	BenchmarkFile string
	BenchmarkRow  int
}

// InsertFlags stores flags; a flag already stored for the same iteration,
// prompt, origin and reason is left as it is.
func InsertFlags(ctx context.Context, db DBTX, flags []Flag) error {
	if len(flags) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, f := range flags {
		var sid, strategy, file *string
		var parent, id, matched *int64
		var est, exact *float64
		var row *int
		p := f.Prompt
		if p.SourceID != "" {
			sid = &p.SourceID
		}
		if p.Strategy != "" {
			strategy = &p.Strategy
		}
		if p.ParentID != 0 {
			parent = &p.ParentID
		}
		if f.PromptID != 0 {
			id = &f.PromptID
		}
		if f.Reason == ReasonNearDuplicate {
			matched, est, exact = &f.MatchedPromptID, &f.Estimated, &f.Exact
		}
		if f.Reason == ReasonContaminated {
			file, row = &f.BenchmarkFile, &f.BenchmarkRow
		}
		b.Queue(`
			INSERT INTO prompt_flags (iteration_id, reason, dropped, hash, messages, prompt_id, source, source_id,
			    parent_prompt_id, strategy, matched_prompt_id, estimated_jaccard, exact_jaccard, benchmark_file, benchmark_row)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT DO NOTHING`,
			f.IterationID, f.Reason, f.Dropped, p.Hash, json.RawMessage(prompt.Canonical(p.Messages)), id, p.Source, sid,
			parent, strategy, matched, est, exact, file, row)
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store %d prompt flags: %w", len(flags), err)
	}
	return nil
}

// DropFromPool takes prompts out of an iteration's pool and out of the
// run's LSH index, so that they count as never having entered the run.
func DropFromPool(ctx context.Context, db DBTX, runID, iterationID int64, promptIDs []int64) error {
	if len(promptIDs) == 0 {
		return nil
	}
	if _, err := db.Exec(ctx, `DELETE FROM iteration_prompts WHERE iteration_id = $1 AND prompt_id = ANY($2)`, iterationID, promptIDs); err != nil {
		return fmt.Errorf("drop %d prompts from the pool of iteration %d: %w", len(promptIDs), iterationID, err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM prompt_bands WHERE run_id = $1 AND prompt_id = ANY($2)`, runID, promptIDs); err != nil {
		return fmt.Errorf("drop %d prompts from the LSH index of run %d: %w", len(promptIDs), runID, err)
	}
	return nil
}

// PoolPrompts reads an iteration's pool, by prompt id.
func PoolPrompts(ctx context.Context, db DBTX, iterationID int64) ([]StoredPrompt, error) {
	rows, err := db.Query(ctx, `
		SELECT p.id, p.hash, p.messages, p.source, p.source_id, p.parent_prompt_id, p.strategy
		FROM iteration_prompts ip JOIN prompts p ON p.id = ip.prompt_id
		WHERE ip.iteration_id = $1 ORDER BY p.id`, iterationID)
	if err != nil {
		return nil, fmt.Errorf("read the pool of iteration %d: %w", iterationID, err)
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByName[StoredPrompt])
	if err != nil {
		return nil, fmt.Errorf("read the pool of iteration %d: %w", iterationID, err)
	}
	return ps, nil
}

// FlagCount counts an iteration's flags of one reason, action and origin:
// Source is the prompt file for loaded prompts, the strategy for evolved
// ones.
type FlagCount struct {
	Reason  string `db:"reason"`
	Dropped bool   `db:"dropped"`
	Origin  string `db:"origin"`
	Source  string `db:"source"`
	Count   int64  `db:"count"`
}

// FlagCounts counts an iteration's flags by reason, action, origin and
// source or strategy.
func FlagCounts(ctx context.Context, db DBTX, iterationID int64) ([]FlagCount, error) {
	rows, err := db.Query(ctx, `
		SELECT reason, dropped, CASE WHEN strategy IS NULL THEN 'loaded' ELSE 'evolved' END AS origin,
		       coalesce(strategy, source) AS source, count(*) AS count
		FROM prompt_flags WHERE iteration_id = $1
		GROUP BY 1, 2, 3, 4 ORDER BY 1, 2 DESC, 3 DESC, 4`, iterationID)
	if err != nil {
		return nil, fmt.Errorf("prompt flags of iteration %d: %w", iterationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[FlagCount])
}

// FlagExample is one flag with the texts a reader compares.
type FlagExample struct {
	Reason        string   `db:"reason"`
	Dropped       bool     `db:"dropped"`
	Source        string   `db:"source"`
	Strategy      *string  `db:"strategy"`
	Text          string   `db:"prompt_text"`
	MatchedText   *string  `db:"matched_text"`
	Estimated     *float64 `db:"estimated_jaccard"`
	Exact         *float64 `db:"exact_jaccard"`
	BenchmarkFile *string  `db:"benchmark_file"`
	BenchmarkRow  *int32   `db:"benchmark_row"`
}

// FlagExamples returns up to limit flags of an iteration with a reason,
// first stored first.
func FlagExamples(ctx context.Context, db DBTX, iterationID int64, reason string, limit int) ([]FlagExample, error) {
	rows, err := db.Query(ctx, `
		SELECT f.reason, f.dropped, f.source, f.strategy, coalesce(last_user_message(f.messages), '') AS prompt_text,
		       last_user_message(m.messages) AS matched_text, f.estimated_jaccard, f.exact_jaccard,
		       f.benchmark_file, f.benchmark_row
		FROM prompt_flags f LEFT JOIN prompts m ON m.id = f.matched_prompt_id
		WHERE f.iteration_id = $1 AND f.reason = $2 ORDER BY f.id LIMIT $3`, iterationID, reason, limit)
	if err != nil {
		return nil, fmt.Errorf("prompt flag examples of iteration %d: %w", iterationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[FlagExample])
}
