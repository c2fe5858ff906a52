package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stages of an iteration, in order; Failed may follow any of them.
const (
	StagePending    = "pending"
	StageLoading    = "loading"
	StageGenerating = "generating"
	StageScoring    = "scoring"
	StageSelecting  = "selecting"
	StageEvolving   = "evolving"
	StageExporting  = "exporting"
	StageTraining   = "training"
	// StageChecking is the learning check: the iteration's pairs scored
	// under the policy its training made (learning_check.enabled).
	StageChecking = "checking"
	StageDone     = "done"
	StageFailed   = "failed"
)

// Run is a row of runs.
type Run struct {
	ID     int64           `db:"id"`
	Name   string          `db:"name"`
	Config json.RawMessage `db:"config"`
	// Nonce is random per run row; task message ids include it.
	Nonce     string    `db:"nonce"`
	CreatedAt time.Time `db:"created_at"`
}

// Iteration is a row of iterations.
type Iteration struct {
	ID             int64           `db:"id"`
	RunID          int64           `db:"run_id"`
	Ordinal        int             `db:"ordinal"`
	Name           string          `db:"name"`
	Stage          string          `db:"stage"`
	PolicyModel    string          `db:"policy_model"`
	ReferenceModel string          `db:"reference_model"`
	Config         json.RawMessage `db:"config"`
	Error          *string         `db:"error"`
	StartedAt      *time.Time      `db:"started_at"`
	FinishedAt     *time.Time      `db:"finished_at"`
}

// EnsureRun creates the run, or returns the existing one with its stored
// configuration snapshot replaced by config (the latest one used).
func EnsureRun(ctx context.Context, db DBTX, name string, config []byte) (Run, error) {
	rows, err := db.Query(ctx, `
		INSERT INTO runs (name, config) VALUES ($1, $2)
		ON CONFLICT (name) DO UPDATE SET config = EXCLUDED.config
		RETURNING id, name, config, nonce, created_at`, name, config)
	if err != nil {
		return Run{}, fmt.Errorf("ensure run %q: %w", name, err)
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Run])
	if err != nil {
		return Run{}, fmt.Errorf("ensure run %q: %w", name, translate(err))
	}
	return r, nil
}

// GetRun finds a run by name.
func GetRun(ctx context.Context, db DBTX, name string) (Run, error) {
	rows, err := db.Query(ctx, `SELECT id, name, config, nonce, created_at FROM runs WHERE name = $1`, name)
	if err != nil {
		return Run{}, err
	}
	r, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Run])
	if err != nil {
		return Run{}, fmt.Errorf("run %q: %w", name, translate(err))
	}
	return r, nil
}

// IterationSpec is what the schedule says of an iteration.
type IterationSpec struct {
	Ordinal        int
	Name           string
	PolicyModel    string
	ReferenceModel string
	Config         []byte
}

const iterationColumns = `id, run_id, ordinal, name, stage, policy_model, reference_model, config, error, started_at, finished_at`

// EnsureIterations creates the run's iterations from the schedule. An
// existing iteration keeps its stage; its models and config follow the
// schedule only while it has not started. It returns all of the run's
// iterations in order.
func EnsureIterations(ctx context.Context, db DBTX, runID int64, specs []IterationSpec) ([]Iteration, error) {
	b := &pgx.Batch{}
	for _, s := range specs {
		b.Queue(`
			INSERT INTO iterations (run_id, ordinal, name, policy_model, reference_model, config)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (run_id, ordinal) DO UPDATE
			SET name = EXCLUDED.name, policy_model = EXCLUDED.policy_model,
			    reference_model = EXCLUDED.reference_model, config = EXCLUDED.config
			WHERE iterations.stage = 'pending'`,
			runID, s.Ordinal, s.Name, s.PolicyModel, s.ReferenceModel, s.Config)
	}
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("ensure iterations of run %d: %w", runID, translate(err))
	}
	return ListIterations(ctx, db, runID)
}

// ListIterations returns a run's iterations by ordinal.
func ListIterations(ctx context.Context, db DBTX, runID int64) ([]Iteration, error) {
	rows, err := db.Query(ctx, `SELECT `+iterationColumns+` FROM iterations WHERE run_id = $1 ORDER BY ordinal`, runID)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[Iteration])
}

// GetIteration finds an iteration by id.
func GetIteration(ctx context.Context, db DBTX, id int64) (Iteration, error) {
	rows, err := db.Query(ctx, `SELECT `+iterationColumns+` FROM iterations WHERE id = $1`, id)
	if err != nil {
		return Iteration{}, err
	}
	it, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Iteration])
	if err != nil {
		return Iteration{}, fmt.Errorf("iteration %d: %w", id, translate(err))
	}
	return it, nil
}

// SetStage records an iteration's stage. Entering the first working stage
// stamps started_at; done and failed stamp finished_at; failed records
// errText.
func SetStage(ctx context.Context, db DBTX, iterationID int64, stage, errText string) error {
	var e *string
	if stage == StageFailed {
		e = &errText
	}
	_, err := db.Exec(ctx, `
		UPDATE iterations SET stage = $2, error = $3,
		    started_at = coalesce(started_at, now()),
		    finished_at = CASE WHEN $2 IN ('done', 'failed') THEN now() ELSE NULL END
		WHERE id = $1`, iterationID, stage, e)
	if err != nil {
		return fmt.Errorf("set stage of iteration %d to %s: %w", iterationID, stage, err)
	}
	return nil
}

// RunNonce reads a run's nonce.
func RunNonce(ctx context.Context, db DBTX, runID int64) (string, error) {
	var n string
	if err := db.QueryRow(ctx, `SELECT nonce FROM runs WHERE id = $1`, runID).Scan(&n); err != nil {
		return "", fmt.Errorf("run %d: %w", runID, translate(err))
	}
	return n, nil
}

// IterationHasWork reports whether any task of the iteration is done.
func IterationHasWork(ctx context.Context, db DBTX, iterationID int64) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM tasks WHERE iteration_id = $1 AND status = 'done')`, iterationID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("work of iteration %d: %w", iterationID, err)
	}
	return ok, nil
}

// ReplaceIterationSettings stores the schedule's name, models and settings
// for an iteration whatever its stage (EnsureIterations updates only
// iterations not yet started).
func ReplaceIterationSettings(ctx context.Context, db DBTX, iterationID int64, s IterationSpec) error {
	_, err := db.Exec(ctx, `UPDATE iterations SET name = $2, policy_model = $3, reference_model = $4, config = $5 WHERE id = $1`,
		iterationID, s.Name, s.PolicyModel, s.ReferenceModel, s.Config)
	if err != nil {
		return fmt.Errorf("replace settings of iteration %d: %w", iterationID, translate(err))
	}
	return nil
}
