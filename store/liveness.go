package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// DeploymentToken is the database's random deployment token (migration 5):
// task subjects and the workers' consumer are named from it, so deployments
// sharing a NATS server and stream name never see each other's tasks.
// A database copied from another (a template, a restored dump) holds the
// original's token along with the original's identity; the first read in
// the copy gives it a token of its own.
func DeploymentToken(ctx context.Context, db DBTX) (string, error) {
	// Two statements: a concurrent first read waits for the other's
	// update, and its own SELECT then sees the token that update wrote.
	_, err := db.Exec(ctx, `
		WITH here AS (
		    SELECT d.oid::bigint AS db_oid, (SELECT system_identifier FROM pg_control_system()) AS sys
		    FROM pg_database d WHERE d.datname = current_database())
		UPDATE deployment SET token = left(md5(random()::text || clock_timestamp()::text), 16),
		    db_oid = here.db_oid, system_identifier = here.sys
		FROM here
		WHERE deployment.db_oid IS DISTINCT FROM here.db_oid OR deployment.system_identifier IS DISTINCT FROM here.sys`)
	if err != nil {
		return "", fmt.Errorf("renew the deployment token of a copied database: %w", err)
	}
	var tok string
	err = db.QueryRow(ctx, `SELECT token FROM deployment`).Scan(&tok)
	if err != nil {
		return "", fmt.Errorf("read the deployment token: %w", translate(err))
	}
	return tok, nil
}

// TaskRef is what a task's message is made of: its key and the
// generation of its publication.
type TaskRef struct {
	PromptID     int64 `db:"prompt_id"`
	Publications int   `db:"publications"`
	Losses       int   `db:"losses"`
}

// Unpublished returns up to limit pending tasks of a kind that were never
// published, with prompt ids above after, in prompt id order. Call
// MarkPublished once their messages are stored; a crash in between
// publishes them again under the same message ids, which JetStream drops.
func Unpublished(ctx context.Context, db DBTX, iterationID int64, kind string, after int64, limit int) ([]TaskRef, error) {
	rows, err := db.Query(ctx, `
		SELECT prompt_id, publications, losses FROM tasks
		WHERE iteration_id = $1 AND kind = $2 AND prompt_id > $3 AND status = 'pending' AND published_at IS NULL
		ORDER BY prompt_id LIMIT $4`, iterationID, kind, after, limit)
	if err != nil {
		return nil, fmt.Errorf("unpublished %s tasks of iteration %d: %w", kind, iterationID, err)
	}
	return pgx.CollectRows(rows, pgx.RowToStructByName[TaskRef])
}

// MarkPublished records that the tasks' messages are stored in the stream.
func MarkPublished(ctx context.Context, db DBTX, iterationID int64, kind string, promptIDs []int64) error {
	_, err := db.Exec(ctx, `
		UPDATE tasks SET published_at = now()
		WHERE iteration_id = $1 AND kind = $2 AND prompt_id = ANY($3) AND status = 'pending'`, iterationID, kind, promptIDs)
	if err != nil {
		return fmt.Errorf("mark %s tasks of iteration %d published: %w", kind, iterationID, err)
	}
	return nil
}

// BumpLost counts a loss for up to limit pending tasks of a kind with
// prompt ids above after, and moves them to their next publication: the
// caller has just seen that JetStream holds no deliverable message for any
// of them. Tasks settled since are left alone (status = 'pending' is part
// of the update), so a task done a moment ago is never brought back.
func BumpLost(ctx context.Context, db DBTX, iterationID int64, kind string, after int64, limit int) ([]TaskRef, error) {
	rows, err := db.Query(ctx, `
		UPDATE tasks t SET publications = t.publications + 1, losses = t.losses + 1, published_at = now()
		FROM (SELECT prompt_id FROM tasks
		      WHERE iteration_id = $1 AND kind = $2 AND prompt_id > $3 AND status = 'pending'
		      ORDER BY prompt_id LIMIT $4) lost
		WHERE t.iteration_id = $1 AND t.kind = $2 AND t.prompt_id = lost.prompt_id AND t.status = 'pending'
		RETURNING t.prompt_id, t.publications, t.losses`, iterationID, kind, after, limit)
	if err != nil {
		return nil, fmt.Errorf("lost %s tasks of iteration %d: %w", kind, iterationID, err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByName[TaskRef])
	if err != nil {
		return nil, err
	}
	// RETURNING follows no order; callers page on the largest id.
	slices.SortFunc(refs, func(a, b TaskRef) int { return cmp.Compare(a.PromptID, b.PromptID) })
	return refs, nil
}

// RetryFailedTasks makes an iteration's failed tasks pending again with
// fresh counters (no deliveries, no losses) and a new publication, so the
// retried task is published under a message id never used before.
func RetryFailedTasks(ctx context.Context, db DBTX, iterationID int64) (int64, error) {
	tag, err := db.Exec(ctx, `
		UPDATE tasks SET status = 'pending', error = NULL, error_endpoint = NULL, error_status = NULL,
		    attempts = 0, losses = 0, publications = publications + 1, published_at = NULL, updated_at = now()
		WHERE iteration_id = $1 AND status = 'failed'`, iterationID)
	if err != nil {
		return 0, fmt.Errorf("retry failed tasks of iteration %d: %w", iterationID, err)
	}
	return tag.RowsAffected(), nil
}

// BumpLostTask counts a loss for one pending task whose message of
// publication pub ran out of deliveries, and moves it to its next
// publication. ok is false when the task is no longer pending or has moved
// past that publication already (the news came late, or twice).
func BumpLostTask(ctx context.Context, db DBTX, k TaskKey, pub int) (ref TaskRef, ok bool, err error) {
	rows, err := db.Query(ctx, `
		UPDATE tasks SET publications = publications + 1, losses = losses + 1, published_at = now()
		WHERE iteration_id = $1 AND prompt_id = $2 AND kind = $3 AND status = 'pending' AND publications = $4
		RETURNING prompt_id, publications, losses`, k.IterationID, k.PromptID, k.Kind, pub)
	if err != nil {
		return TaskRef{}, false, fmt.Errorf("lost %s: %w", k, err)
	}
	refs, err := pgx.CollectRows(rows, pgx.RowToStructByName[TaskRef])
	if err != nil || len(refs) == 0 {
		return TaskRef{}, false, err
	}
	return refs[0], true, nil
}
