package store_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// Two databases cloned from one migrated template are two deployments:
// each gets a token of its own on its first read, and keeps it.
func TestDeploymentTokenIsPerDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tokens := map[string]bool{}
	for range 2 {
		pool, err := pgxpool.New(ctx, storetest.NewDatabase(t))
		require.NoError(t, err)
		defer pool.Close()
		tok, err := store.DeploymentToken(ctx, pool)
		require.NoError(t, err)
		require.Regexp(t, `^[0-9a-f]{16}$`, tok, "usable as a NATS subject token and in a consumer name")
		again, err := store.DeploymentToken(ctx, pool)
		require.NoError(t, err)
		require.Equal(t, tok, again, "stable within a database")
		tokens[tok] = true
	}
	require.Len(t, tokens, 2, "databases copied from one template have different tokens")
}
