package store_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// runRows counts a run's rows in each table that holds them.
func runRows(t testing.TB, db store.DBTX, run string) map[string]any {
	t.Helper()
	return queryMaps(t, db, `
		WITH its AS (SELECT i.id FROM iterations i JOIN runs r ON r.id = i.run_id WHERE r.name = $1)
		SELECT (SELECT count(*) FROM its) AS iterations,
		       (SELECT count(*) FROM iteration_prompts WHERE iteration_id IN (SELECT id FROM its)) AS pool,
		       (SELECT count(*) FROM tasks WHERE iteration_id IN (SELECT id FROM its)) AS tasks,
		       (SELECT count(*) FROM responses WHERE iteration_id IN (SELECT id FROM its)) AS responses,
		       (SELECT count(*) FROM pairs WHERE iteration_id IN (SELECT id FROM its)) AS pairs`, run)[0]
}

// TestDeletingARunDeletesItsRowsOnly: the statement docs/sql.md gives for
// deleting a run removes the run's iterations, pools, tasks, responses and
// pairs, and nothing of another run; the prompts, which runs share, stay.
func TestDeletingARunDeletesItsRowsOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	page, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "docs", "sql.md"))
	require.NoError(t, err)
	block := regexp.MustCompile("(?s)```sql delete-run\n(.*?)```").FindSubmatch(page)
	require.NotNil(t, block, "docs/sql.md has no delete-run block")
	pool, _ := storetest.NewPool(t)
	storetest.SeedRun(t, pool, storetest.RunSpec{Name: "demo", Iterations: iterationSettings(t, 2), Prompts: 60, Samples: 3, ResponseChars: 8})
	storetest.SeedRun(t, pool, storetest.RunSpec{Name: "kept", Iterations: iterationSettings(t, 2), Prompts: 40, Samples: 3, ResponseChars: 8})
	kept := runRows(t, pool, "kept")
	require.Positive(t, kept["pairs"])
	var prompts int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompts`).Scan(&prompts))

	tag, err := pool.Exec(ctx, string(block[1]))
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())

	zero := int64(0)
	require.Equal(t, map[string]any{"iterations": zero, "pool": zero, "tasks": zero, "responses": zero, "pairs": zero}, runRows(t, pool, "demo"))
	require.Equal(t, kept, runRows(t, pool, "kept"))
	var after int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompts`).Scan(&after))
	require.Equal(t, prompts, after, "prompts are shared and stay")
}

// BenchmarkDeleteRun deletes a finished run of 100,000 prompts (three
// responses each, one pair, both selections scored): a statement that
// checked every deleted response against every pair took the square of
// the run's size before migration 13 indexed the columns that point at
// responses and pairs.
//
//	go test ./store -run X -bench DeleteRun -benchtime 1x -count 3 -timeout 30m
func BenchmarkDeleteRun(b *testing.B) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		pool, _ := storetest.NewPool(b)
		storetest.SeedRun(b, pool, storetest.RunSpec{Name: "big", Iterations: iterationSettings(b, 1), Prompts: 100_000, Samples: 3, ResponseChars: 8})
		b.StartTimer()
		if _, err := pool.Exec(ctx, `DELETE FROM runs WHERE name = 'big'`); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		pool.Close()
	}
}
