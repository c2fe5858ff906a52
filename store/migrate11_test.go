package store_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestResponsesCompressWithLZ4: since migration 11 a response long enough
// to be compressed is stored with lz4 (this project's PostgreSQL is built
// with it), reads back unchanged, and a short one is stored as it is.
func TestResponsesCompressWithLZ4(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 1)
	long := strings.Repeat("Water the garden early in the morning, and mulch keeps the soil cool. ", 60) // 4,260 bytes
	short := "Water it early."
	rs := []store.Response{
		{SampleIndex: 0, Content: long, TokenCount: 512, LogProbSum: -100, FinishReason: "length"},
		{SampleIndex: 1, Content: short, TokenCount: 4, LogProbSum: -2, FinishReason: "stop"},
	}
	k := store.TaskKey{IterationID: it, PromptID: ids[0], Kind: "generate"}
	require.NoError(t, store.CompleteGenerate(ctx, pool, k, "paired", 1, rs, nil))

	var method string
	require.NoError(t, pool.QueryRow(ctx, `SELECT attcompression FROM pg_attribute
		WHERE attrelid = 'responses'::regclass AND attname = 'content'`).Scan(&method))
	require.Equal(t, "l", method, "the column's compression method")
	rows, err := pool.Query(ctx, `SELECT content, pg_column_compression(content) FROM responses
		WHERE iteration_id = $1 ORDER BY sample_index`, it)
	require.NoError(t, err)
	var got []string
	var methods []*string
	for rows.Next() {
		var content string
		var m *string
		require.NoError(t, rows.Scan(&content, &m))
		got, methods = append(got, content), append(methods, m)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{long, short}, got)
	require.NotNil(t, methods[0])
	require.Equal(t, "lz4", *methods[0])
	require.Nil(t, methods[1], "a short response is not compressed")
}
