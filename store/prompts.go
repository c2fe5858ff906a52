package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/prompt"
)

// copyThreshold is the number of prompts from which InsertPrompts copies
// them into a temporary table instead of sending them as arrays in one
// statement. Below it (an evolve task's handful of rewrites) no table is
// created: a temporary table per call would add and remove catalog rows
// for every task.
const copyThreshold = 1000

// InsertPrompts stores prompts, de-duplicated by hash against each other
// and against every prompt already stored, and returns the id of each
// input prompt in input order (an existing prompt's id when it was known).
// Up to copyThreshold prompts go in one INSERT … SELECT FROM unnest(…) ON
// CONFLICT; more are COPYed into a temporary table first, which takes a
// transaction (pass a pgx.Tx, or a pool to get one here).
func InsertPrompts(ctx context.Context, db DBTX, ps []prompt.Prompt) ([]int64, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	if len(ps) < copyThreshold {
		return insertPromptsUnnest(ctx, db, ps)
	}
	tx, ok := db.(pgx.Tx)
	if !ok {
		var ids []int64
		err := inTx(ctx, db, func(tx pgx.Tx) error {
			var err error
			ids, err = InsertPrompts(ctx, tx, ps)
			return err
		})
		return ids, err
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS prompt_load (
		ord int, hash text, messages jsonb, source text, source_id text,
		parent_prompt_id bigint, strategy text) ON COMMIT DROP`); err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	if _, err := tx.Exec(ctx, `TRUNCATE prompt_load`); err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"prompt_load"},
		[]string{"ord", "hash", "messages", "source", "source_id", "parent_prompt_id", "strategy"},
		pgx.CopyFromSlice(len(ps), func(i int) ([]any, error) {
			var sid, strategy *string
			var parent *int64
			if ps[i].SourceID != "" {
				sid = &ps[i].SourceID
			}
			if ps[i].ParentID != 0 {
				parent = &ps[i].ParentID
			}
			if ps[i].Strategy != "" {
				strategy = &ps[i].Strategy
			}
			return []any{i, ps[i].Hash, json.RawMessage(prompt.Canonical(ps[i].Messages)), ps[i].Source, sid, parent, strategy}, nil
		}))
	if err != nil {
		return nil, fmt.Errorf("insert prompts: copy: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO prompts (hash, messages, source, source_id, parent_prompt_id, strategy)
		SELECT hash, messages, source, source_id, parent_prompt_id, strategy FROM prompt_load ORDER BY ord
		ON CONFLICT (hash) DO NOTHING`); err != nil {
		return nil, fmt.Errorf("insert prompts: %w", translate(err))
	}
	rows, err := tx.Query(ctx, `SELECT l.ord, p.id FROM prompt_load l JOIN prompts p USING (hash)`)
	if err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	ids := make([]int64, len(ps))
	var ord int
	var id int64
	_, err = pgx.ForEachRow(rows, []any{&ord, &id}, func() error {
		ids[ord] = id
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	return ids, nil
}

// insertPromptsUnnest is InsertPrompts for a few prompts: one statement
// with the prompts as array parameters. A prompt a concurrent transaction
// committed after the statement's snapshot was skipped by ON CONFLICT and
// is invisible to the statement's own read, so its id is read afterwards.
func insertPromptsUnnest(ctx context.Context, db DBTX, ps []prompt.Prompt) ([]int64, error) {
	n := len(ps)
	hashes, messages, sources := make([]string, n), make([]string, n), make([]string, n)
	sourceIDs, strategies := make([]*string, n), make([]*string, n)
	parents := make([]*int64, n)
	for i := range ps {
		hashes[i], sources[i] = ps[i].Hash, ps[i].Source
		messages[i] = string(prompt.Canonical(ps[i].Messages))
		if ps[i].SourceID != "" {
			sourceIDs[i] = &ps[i].SourceID
		}
		if ps[i].ParentID != 0 {
			parents[i] = &ps[i].ParentID
		}
		if ps[i].Strategy != "" {
			strategies[i] = &ps[i].Strategy
		}
	}
	rows, err := db.Query(ctx, `
		WITH input AS (
		    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[])
		        WITH ORDINALITY AS t(hash, messages, source, source_id, parent_prompt_id, strategy, ord)
		), ins AS (
		    INSERT INTO prompts (hash, messages, source, source_id, parent_prompt_id, strategy)
		    SELECT hash, messages::jsonb, source, source_id, parent_prompt_id, strategy FROM input ORDER BY ord
		    ON CONFLICT (hash) DO NOTHING
		    RETURNING id, hash
		)
		SELECT i.ord - 1, coalesce(ins.id, p.id, 0) FROM input i
		LEFT JOIN ins ON ins.hash = i.hash LEFT JOIN prompts p ON p.hash = i.hash`,
		hashes, messages, sources, sourceIDs, parents, strategies)
	if err != nil {
		return nil, fmt.Errorf("insert prompts: %w", translate(err))
	}
	ids := make([]int64, n)
	var ord int
	var id int64
	missing := false
	_, err = pgx.ForEachRow(rows, []any{&ord, &id}, func() error {
		ids[ord] = id
		missing = missing || id == 0
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("insert prompts: %w", translate(err))
	}
	if !missing {
		return ids, nil
	}
	rows, err = db.Query(ctx, `SELECT hash, id FROM prompts WHERE hash = ANY($1)`, hashes)
	if err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	byHash := map[string]int64{}
	var h string
	if _, err = pgx.ForEachRow(rows, []any{&h, &id}, func() error { byHash[h] = id; return nil }); err != nil {
		return nil, fmt.Errorf("insert prompts: %w", err)
	}
	for i := range ids {
		if ids[i] == 0 {
			if ids[i] = byHash[hashes[i]]; ids[i] == 0 {
				return nil, fmt.Errorf("insert prompts: prompt %s neither inserted nor found", hashes[i])
			}
		}
	}
	return ids, nil
}

// AddToPool puts prompts into an iteration's pool; prompts already there
// are left alone.
func AddToPool(ctx context.Context, db DBTX, iterationID int64, promptIDs []int64) error {
	_, err := db.Exec(ctx, `
		INSERT INTO iteration_prompts (iteration_id, prompt_id)
		SELECT $1, unnest($2::bigint[]) ON CONFLICT DO NOTHING`, iterationID, promptIDs)
	if err != nil {
		return fmt.Errorf("add %d prompts to the pool of iteration %d: %w", len(promptIDs), iterationID, err)
	}
	return nil
}

// PoolSize counts an iteration's pool.
func PoolSize(ctx context.Context, db DBTX, iterationID int64) (int64, error) {
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM iteration_prompts WHERE iteration_id = $1`, iterationID).Scan(&n)
	return n, err
}

// StoredPrompt is a row of prompts.
type StoredPrompt struct {
	ID             int64            `db:"id"`
	Hash           string           `db:"hash"`
	Messages       []prompt.Message `db:"messages"`
	Source         string           `db:"source"`
	SourceID       *string          `db:"source_id"`
	ParentPromptID *int64           `db:"parent_prompt_id"`
	Strategy       *string          `db:"strategy"`
}

// GetPrompt reads one prompt.
func GetPrompt(ctx context.Context, db DBTX, id int64) (StoredPrompt, error) {
	rows, err := db.Query(ctx, `SELECT id, hash, messages, source, source_id, parent_prompt_id, strategy FROM prompts WHERE id = $1`, id)
	if err != nil {
		return StoredPrompt{}, err
	}
	p, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[StoredPrompt])
	if err != nil {
		return StoredPrompt{}, fmt.Errorf("prompt %d: %w", id, translate(err))
	}
	return p, nil
}

// LoadPool stores prompts and adds them all to an iteration's pool in one
// transaction: either every prompt is stored and pooled, or none is.
func LoadPool(ctx context.Context, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, iterationID int64, ps []prompt.Prompt) ([]int64, error) {
	var ids []int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if ids, err = InsertPrompts(ctx, tx, ps); err != nil {
			return err
		}
		return AddToPool(ctx, tx, iterationID, ids)
	})
	return ids, err
}

// KnownHashes returns which of the hashes are prompts in a pool of the run
// already. Prompts of other runs do not count: a prompt row may be shared by
// runs (the same file loaded twice, the same rewrite made twice), and a
// second run of a schedule in the same database must get its own pools.
func KnownHashes(ctx context.Context, db DBTX, runID int64, hashes []string) (map[string]bool, error) {
	rows, err := db.Query(ctx, `
		SELECT p.hash FROM prompts p
		WHERE p.hash = ANY($2) AND EXISTS (
		    SELECT 1 FROM iterations i JOIN iteration_prompts ip ON ip.iteration_id = i.id
		    WHERE i.run_id = $1 AND ip.prompt_id = p.id)`, runID, hashes)
	if err != nil {
		return nil, fmt.Errorf("look up prompt hashes: %w", err)
	}
	known := map[string]bool{}
	var h string
	_, err = pgx.ForEachRow(rows, []any{&h}, func() error { known[h] = true; return nil })
	return known, err
}

// OutcomeCount is a task outcome with how many tasks ended with it.
type OutcomeCount struct {
	Outcome string `db:"outcome"`
	Count   int64  `db:"count"`
}

// TaskOutcomes returns the most frequent outcomes of an iteration's done
// tasks of a kind (an evolve task's says what it kept and what the filters
// dropped), most frequent first.
func TaskOutcomes(ctx context.Context, db DBTX, iterationID int64, kind string, limit int) ([]OutcomeCount, error) {
	rows, err := db.Query(ctx, `
		SELECT coalesce(outcome, '') AS outcome, count(*) AS count FROM tasks
		WHERE iteration_id = $1 AND kind = $2 AND status = 'done'
		GROUP BY 1 ORDER BY count DESC, outcome LIMIT $3`, iterationID, kind, limit)
	if err != nil {
		return nil, fmt.Errorf("%s task outcomes of iteration %d: %w", kind, iterationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[OutcomeCount])
}

// NextIteration returns the iteration after the given one in its run.
func NextIteration(ctx context.Context, db DBTX, runID int64, ordinal int) (Iteration, error) {
	rows, err := db.Query(ctx, `SELECT `+iterationColumns+` FROM iterations WHERE run_id = $1 AND ordinal = $2`, runID, ordinal+1)
	if err != nil {
		return Iteration{}, err
	}
	it, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Iteration])
	if err != nil {
		return Iteration{}, fmt.Errorf("iteration after %d of run %d: %w", ordinal, runID, translate(err))
	}
	return it, nil
}

// PreviousIteration returns the iteration before the given one in its run.
func PreviousIteration(ctx context.Context, db DBTX, runID int64, ordinal int) (Iteration, error) {
	rows, err := db.Query(ctx, `SELECT `+iterationColumns+` FROM iterations WHERE run_id = $1 AND ordinal = $2`, runID, ordinal-1)
	if err != nil {
		return Iteration{}, err
	}
	it, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Iteration])
	if err != nil {
		return Iteration{}, fmt.Errorf("iteration before %d of run %d: %w", ordinal, runID, translate(err))
	}
	return it, nil
}
