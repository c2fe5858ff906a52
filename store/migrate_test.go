package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/migrations"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestMigration2ReadsEndpointsOfEarlierFailures: a database at schema 1
// with failed tasks gets error_endpoint and error_status filled in from
// the error text when migrated.
func TestMigration2ReadsEndpointsOfEarlierFailures(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewEmptyDatabase(t))
	require.NoError(t, err)
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithTableName("goose_db_version"))
	require.NoError(t, err)
	_, err = p.UpTo(ctx, 1)
	require.NoError(t, err)

	_, err = pool.Exec(ctx, `
		INSERT INTO runs (name, config) VALUES ('old', '{}');
		INSERT INTO iterations (run_id, ordinal, name, policy_model) SELECT id, 0, 'i', 'm' FROM runs;
		INSERT INTO prompts (hash, messages, source) SELECT 'h' || g, '[]', 'seed' FROM generate_series(1, 4) g;
		INSERT INTO iteration_prompts (iteration_id, prompt_id) SELECT i.id, p.id FROM iterations i, prompts p;
		INSERT INTO tasks (iteration_id, prompt_id, kind, status, error)
		SELECT iteration_id, prompt_id, 'generate',
		       CASE WHEN prompt_id = min(prompt_id) OVER () + 3 THEN 'pending' ELSE 'failed' END,
		       CASE prompt_id - min(prompt_id) OVER ()
		           WHEN 0 THEN 'gave up after 5 deliveries: sample: llm: policy endpoint (model "tiny-0") /v1/chat/completions: status 503: server error (after 4 attempts)'
		           WHEN 1 THEN 'reward: llm: reward endpoint /classify: malformed body'
		           WHEN 2 THEN 'no worker finished it after 3 publications'
		       END
		FROM iteration_prompts`)
	require.NoError(t, err)

	_, err = store.Migrate(ctx, pool)
	require.NoError(t, err)
	rows, err := pool.Query(ctx, `SELECT coalesce(error_endpoint, ''), coalesce(error_status, 0) FROM tasks ORDER BY prompt_id`)
	require.NoError(t, err)
	type got struct {
		Endpoint string
		Status   int
	}
	var all []got
	for rows.Next() {
		var g got
		require.NoError(t, rows.Scan(&g.Endpoint, &g.Status))
		all = append(all, g)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []got{{"policy", 503}, {"reward", 0}, {"", 0}, {"", 0}}, all)
}
