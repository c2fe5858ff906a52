package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// TaskGroup is how many tasks of an iteration have one kind, status and
// outcome.
type TaskGroup struct {
	// Iteration is the iteration's name.
	Iteration string `db:"iteration"`
	Kind      string `db:"kind"`
	Status    string `db:"status"`
	// Outcome is a settled generate task's outcome ("paired" or the no-pair
	// reason); "" for evolve tasks and tasks not settled.
	Outcome string `db:"outcome"`
	N       int64  `db:"n"`
}

// CompactTaskCounts folds the per-statement task count changes that the
// tasks table's triggers append (migration 00006) into task_counts. It
// reads and deletes only the changes since the last fold; concurrent calls
// each fold a change once (the second waits on the first's row locks and
// then skips the rows it deleted). Groups that reach zero are removed.
func CompactTaskCounts(ctx context.Context, db DBTX) error {
	_, err := db.Exec(ctx, `
		WITH d AS (DELETE FROM task_count_deltas RETURNING iteration_id, kind, status, outcome, n)
		INSERT INTO task_counts AS c (iteration_id, kind, status, outcome, n)
		SELECT iteration_id, kind, status, outcome, sum(n) FROM d GROUP BY 1, 2, 3, 4
		ON CONFLICT (iteration_id, kind, status, outcome) DO UPDATE SET n = c.n + excluded.n`)
	if err != nil {
		return fmt.Errorf("fold task counts: %w", err)
	}
	if _, err := db.Exec(ctx, `DELETE FROM task_counts WHERE n = 0`); err != nil {
		return fmt.Errorf("fold task counts: %w", err)
	}
	return nil
}

// RunTaskCounts returns the run's tasks by iteration, kind, status and
// outcome, from the counts the triggers keep (after folding the changes
// since the last call): a few rows per iteration, whatever the number of
// tasks. Groups with no task are left out.
func RunTaskCounts(ctx context.Context, db DBTX, run string) ([]TaskGroup, error) {
	if err := CompactTaskCounts(ctx, db); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, `
		SELECT i.name AS iteration, c.kind, c.status, c.outcome, c.n
		FROM task_counts c JOIN iterations i ON i.id = c.iteration_id JOIN runs r ON r.id = i.run_id
		WHERE r.name = $1 AND c.n <> 0
		ORDER BY i.ordinal, c.kind, c.status, c.outcome`, run)
	if err != nil {
		return nil, fmt.Errorf("task counts of run %s: %w", run, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[TaskGroup])
}

// IterationTaskCounts returns an iteration's tasks by kind, status and
// outcome, from the counts the triggers keep plus the changes not folded
// yet. It only reads (a read-only role may call it), and costs the same
// for a hundred tasks as for a million.
func IterationTaskCounts(ctx context.Context, db DBTX, iterationID int64) ([]TaskGroup, error) {
	rows, err := db.Query(ctx, `
		SELECT (SELECT name FROM iterations WHERE id = $1) AS iteration, kind, status, outcome, sum(n)::bigint AS n
		FROM (SELECT kind, status, outcome, n FROM task_counts WHERE iteration_id = $1
		      UNION ALL
		      SELECT kind, status, outcome, n FROM task_count_deltas WHERE iteration_id = $1) c
		GROUP BY kind, status, outcome
		HAVING sum(n) <> 0
		ORDER BY kind, status, outcome`, iterationID)
	if err != nil {
		return nil, fmt.Errorf("task counts of iteration %d: %w", iterationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[TaskGroup])
}
