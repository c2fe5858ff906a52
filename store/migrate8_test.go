package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestScoringUpdatesLockNoRows: since migration 8, pairs has no row-level
// BEFORE UPDATE trigger, so an update of scoring's columns writes one WAL
// record per pair (a HOT update) and no lock record before it, as migration
// 4's trigger made PostgreSQL do (two records per pair: measured 2,258,064
// for a million pairs against 1,258,064 without). A pair still gets its
// responses' rewards when inserted, and changing its responses afterwards
// is refused with a hint, in the statement that tries it.
func TestScoringUpdatesLockNoRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	const n = 400
	mex, mim := make([]float64, n), make([]float64, n)
	for i := range n {
		mex[i], mim[i] = float64(i%13)/4, float64(i%5)-2
	}
	storetest.SeedPairs(t, pool, it, mex, mim)
	_, err := pool.Exec(ctx, `VACUUM pairs`)
	require.NoError(t, err)

	// SeedPairs stores chosen rewards 1 + margin and rejected rewards 1.
	var copied int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pairs
		WHERE iteration_id = $1 AND chosen_reward = 1 + explicit_margin AND rejected_reward = 1`, it).Scan(&copied))
	require.Equal(t, n, copied)

	var triggers []string
	rows, err := pool.Query(ctx, `SELECT tgname FROM pg_trigger
		WHERE tgrelid = 'pairs'::regclass AND NOT tgisinternal
		  AND tgtype & 1 = 1 AND tgtype & 2 = 2 AND tgtype & 16 = 16 -- row, before, update`)
	require.NoError(t, err)
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		triggers = append(triggers, name)
	}
	require.NoError(t, rows.Err())
	require.Empty(t, triggers, "row-level BEFORE UPDATE triggers on pairs")

	// The columns one scoring writes, in one statement, as ScorePairs
	// does; the plan's WAL counters say what it wrote.
	var plan []map[string]any
	var raw []byte
	require.NoError(t, pool.QueryRow(ctx, `EXPLAIN (ANALYZE, WAL, FORMAT JSON)
		UPDATE pairs SET explicit_z = 0.5, rank = id::int, selected = id % 2 = 0 WHERE iteration_id = $1`, it).Scan(&raw))
	require.NoError(t, json.Unmarshal(raw, &plan))
	top := plan[0]["Plan"].(map[string]any)
	records := top["WAL Records"].(float64)
	require.GreaterOrEqual(t, records, float64(n))
	require.Less(t, records, 1.5*n, "a lock record per pair means a row-level BEFORE UPDATE trigger is back")

	_, err = pool.Exec(ctx, `UPDATE pairs SET chosen_id = rejected_id, rejected_id = chosen_id WHERE iteration_id = $1`, it)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%v", err)
	require.Equal(t, "0A000", pgErr.Code)
	require.Contains(t, pgErr.Hint, "Insert a new pair instead")
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM pairs
		WHERE iteration_id = $1 AND chosen_reward = 1 + explicit_margin AND rejected_reward = 1`, it).Scan(&copied))
	require.Equal(t, n, copied, "nothing changed")

	// Scoring itself goes on as before.
	k, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.25}, store.TrainSelection)
	require.NoError(t, err)
	require.EqualValues(t, n/4, k)
}
