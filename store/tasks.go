package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/prompt"
)

// Task statuses.
const (
	TaskPending = "pending"
	TaskDone    = "done"
	TaskFailed  = "failed"
)

// TaskKey identifies a task.
type TaskKey struct {
	IterationID int64
	PromptID    int64
	Kind        string
}

func (k TaskKey) String() string {
	return fmt.Sprintf("%s task of prompt %d in iteration %d", k.Kind, k.PromptID, k.IterationID)
}

// Task is a row of tasks.
type Task struct {
	IterationID  int64      `db:"iteration_id"`
	PromptID     int64      `db:"prompt_id"`
	Kind         string     `db:"kind"`
	Status       string     `db:"status"`
	Attempts     int        `db:"attempts"`
	Publications int        `db:"publications"`
	Losses       int        `db:"losses"`
	Outcome      *string    `db:"outcome"`
	Error        *string    `db:"error"`
	PublishedAt  *time.Time `db:"published_at"`
	UpdatedAt    time.Time  `db:"updated_at"`
	// SettingsVersion changes whenever the iteration's row is written (its
	// xmin, the writing transaction's id): when a failed iteration is
	// retried with a changed schedule, and at each stage change. Set by
	// ReadTask only; reading it costs nothing.
	SettingsVersion string `db:"-"`
}

const taskColumns = `iteration_id, prompt_id, kind, status, attempts, publications, losses, outcome, error, published_at, updated_at`

// CreateGenerateTasks makes one pending generate task per pool prompt that
// has none, and returns how many it made.
func CreateGenerateTasks(ctx context.Context, db DBTX, iterationID int64) (int64, error) {
	tag, err := db.Exec(ctx, `
		INSERT INTO tasks (iteration_id, prompt_id, kind)
		SELECT iteration_id, prompt_id, 'generate' FROM iteration_prompts WHERE iteration_id = $1
		ON CONFLICT DO NOTHING`, iterationID)
	if err != nil {
		return 0, fmt.Errorf("create generate tasks of iteration %d: %w", iterationID, err)
	}
	return tag.RowsAffected(), analyzeTasks(ctx, db)
}

// analyzeTasks refreshes the planner's statistics of tasks after a stage's
// tasks are made, before workers read and settle them one by one, so their
// plans are made for the table's real size. (Before migration 3 dropped
// tasks_status_idx, a table that looked empty made the task's primary key
// and that index cost the same, and workers' cached generic plans found
// each task by scanning its iteration's tasks through the status index.)
// Workers re-plan when the statistics change.
func analyzeTasks(ctx context.Context, db DBTX) error {
	if _, err := db.Exec(ctx, `ANALYZE tasks`); err != nil {
		return fmt.Errorf("analyze tasks: %w", err)
	}
	return nil
}

// CreateEvolveTasks makes one pending evolve task per prompt whose pair is
// selected for evolution, and returns how many it made.
func CreateEvolveTasks(ctx context.Context, db DBTX, iterationID int64) (int64, error) {
	tag, err := db.Exec(ctx, `
		INSERT INTO tasks (iteration_id, prompt_id, kind)
		SELECT iteration_id, prompt_id, 'evolve' FROM pairs WHERE iteration_id = $1 AND evolve_selected
		ON CONFLICT DO NOTHING`, iterationID)
	if err != nil {
		return 0, fmt.Errorf("create evolve tasks of iteration %d: %w", iterationID, err)
	}
	return tag.RowsAffected(), analyzeTasks(ctx, db)
}

// TaskCounts tallies an iteration's tasks of a kind by status.
type TaskCounts struct {
	Pending, Done, Failed int64
}

// Total is the number of tasks.
func (c TaskCounts) Total() int64 { return c.Pending + c.Done + c.Failed }

// CountTasks tallies an iteration's tasks of a kind from the counts the
// tasks table's triggers keep, after folding the changes since the last
// fold (CompactTaskCounts): its cost follows the tasks settled since the
// last call, not the size of the iteration. The counts are those of the
// tasks committed when the fold ran.
func CountTasks(ctx context.Context, db DBTX, iterationID int64, kind string) (TaskCounts, error) {
	var c TaskCounts
	if err := CompactTaskCounts(ctx, db); err != nil {
		return c, fmt.Errorf("count %s tasks of iteration %d: %w", kind, iterationID, err)
	}
	err := db.QueryRow(ctx, `
		SELECT coalesce(sum(n) FILTER (WHERE status = 'pending'), 0),
		       coalesce(sum(n) FILTER (WHERE status = 'done'), 0),
		       coalesce(sum(n) FILTER (WHERE status = 'failed'), 0)
		FROM task_counts WHERE iteration_id = $1 AND kind = $2`, iterationID, kind).Scan(&c.Pending, &c.Done, &c.Failed)
	if err != nil {
		return c, fmt.Errorf("count %s tasks of iteration %d: %w", kind, iterationID, err)
	}
	return c, nil
}

// ReasonCount is a failure reason with how many tasks failed with it.
type ReasonCount struct {
	// Reason is the error text, or for failures of one endpoint and HTTP
	// status, one of their texts (the first in order).
	Reason string `db:"reason"`
	Count  int64  `db:"count"`
	// Texts is how many different error texts the count covers.
	Texts int64 `db:"texts"`
}

// Label is the reason as a summary shows it.
func (r ReasonCount) Label() string {
	switch {
	case r.Texts == 2:
		return r.Reason + " (and 1 other error of that endpoint and status)"
	case r.Texts > 2:
		return fmt.Sprintf("%s (and %d other errors of that endpoint and status)", r.Reason, r.Texts-1)
	}
	return r.Reason
}

// FailureReasons returns the most frequent failure reasons of a kind.
// Failures of one endpoint with one HTTP status count together (their
// texts often differ only in the prompt's details); others by their text.
func FailureReasons(ctx context.Context, db DBTX, iterationID int64, kind string, limit int) ([]ReasonCount, error) {
	rows, err := db.Query(ctx, `
		SELECT min(error) AS reason, count(*) AS count, count(DISTINCT error) AS texts FROM tasks
		WHERE iteration_id = $1 AND kind = $2 AND status = 'failed'
		GROUP BY error_endpoint, error_status, CASE WHEN error_endpoint IS NULL THEN error END
		ORDER BY count DESC, reason LIMIT $3`, iterationID, kind, limit)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[ReasonCount])
}

// LockTask reads a task and locks its row until the transaction ends, so
// two workers racing on one task write its results once.
func LockTask(ctx context.Context, tx pgx.Tx, k TaskKey) (Task, error) {
	rows, err := tx.Query(ctx, `SELECT `+taskColumns+` FROM tasks
		WHERE iteration_id = $1 AND prompt_id = $2 AND kind = $3 FOR UPDATE`, k.IterationID, k.PromptID, k.Kind)
	if err != nil {
		return Task{}, err
	}
	t, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[Task])
	if err != nil {
		return Task{}, fmt.Errorf("%s: %w", k, translate(err))
	}
	return t, nil
}

// ReadTask returns a task with its prompt's messages, in one read. The
// delivery count is recorded when the task is settled (FinishTask,
// CompleteGenerate, FailTask), so starting a task writes nothing.
func ReadTask(ctx context.Context, db DBTX, k TaskKey) (Task, []prompt.Message, error) {
	var t Task
	var msgs []prompt.Message
	err := db.QueryRow(ctx, `
		SELECT t.status, t.attempts, t.publications, p.messages, i.xmin::text
		FROM tasks t JOIN prompts p ON p.id = t.prompt_id JOIN iterations i ON i.id = t.iteration_id
		WHERE t.iteration_id = $1 AND t.prompt_id = $2 AND t.kind = $3`,
		k.IterationID, k.PromptID, k.Kind).Scan(&t.Status, &t.Attempts, &t.Publications, &msgs, &t.SettingsVersion)
	if err != nil {
		return Task{}, nil, fmt.Errorf("%s: %w", k, translate(err))
	}
	t.IterationID, t.PromptID, t.Kind = k.IterationID, k.PromptID, k.Kind
	return t, msgs, nil
}

// FinishTask marks a task done with its outcome after attempts deliveries.
func FinishTask(ctx context.Context, db DBTX, k TaskKey, outcome string, attempts int) error {
	_, err := db.Exec(ctx, `
		UPDATE tasks SET status = 'done', outcome = $4, error = NULL, error_endpoint = NULL, error_status = NULL, updated_at = now(),
		    attempts = greatest(attempts, $5)
		WHERE iteration_id = $1 AND prompt_id = $2 AND kind = $3`, k.IterationID, k.PromptID, k.Kind, outcome, attempts)
	if err != nil {
		return fmt.Errorf("finish %s: %w", k, err)
	}
	return nil
}

// Failure is why a task failed.
type Failure struct {
	// Reason is the error, as a person reads it.
	Reason string
	// Endpoint names the endpoint whose error it was ("policy", "reward",
	// ...), empty when it was not an endpoint's.
	Endpoint string
	// Status is the HTTP status the endpoint answered with, 0 when none.
	Status int
}

// FailTask marks a pending task failed with the reason after attempts
// deliveries (0 when no worker had it). A task already done stays done.
func FailTask(ctx context.Context, db DBTX, k TaskKey, f Failure, attempts int) error {
	if f.Reason == "" {
		f.Reason = "unknown error"
	}
	_, err := db.Exec(ctx, `
		UPDATE tasks SET status = 'failed', error = $4, error_endpoint = nullif($5, ''), error_status = nullif($6, 0),
		    updated_at = now(), attempts = greatest(attempts, $7)
		WHERE iteration_id = $1 AND prompt_id = $2 AND kind = $3 AND status = 'pending'`,
		k.IterationID, k.PromptID, k.Kind, f.Reason, f.Endpoint, f.Status, attempts)
	if err != nil {
		return fmt.Errorf("fail %s: %w", k, err)
	}
	return nil
}
