// Package store is selfplay's PostgreSQL layer: the pgx v5 pool, schema
// migrations, and typed queries for runs, iterations, prompts, tasks,
// responses, pairs and exports. Functions take a DBTX so a pool, a
// connection and a transaction all work; bulk writes use CopyFrom or
// batches. Errors are translated once here: no rows becomes ErrNotFound and
// a unique violation ErrDuplicate.
package store
