package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

func numbered(from, to int, source string) []prompt.Prompt {
	var ps []prompt.Prompt
	for i := from; i < to; i++ {
		ps = append(ps, prompt.New([]prompt.Message{{Role: "user", Content: fmt.Sprintf("prompt %d", i)}}, source, fmt.Sprint(i)))
	}
	return ps
}

// TestInsertPromptsBothPathsAgree: a few prompts go in one statement with
// no temporary table, many through COPY; with duplicates inside a call and
// against stored prompts both return, in input order, the id stored under
// each hash, and the first copy of a prompt is the one stored.
func TestInsertPromptsBothPathsAgree(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)

	// 1,200 prompts (the COPY path), the last 200 repeating 0–199.
	many := append(numbered(0, 1000, "file"), numbered(0, 200, "again")...)
	ids, err := store.InsertPrompts(ctx, pool, many)
	require.NoError(t, err)
	require.Len(t, ids, 1200)
	require.Equal(t, ids[:200], ids[1000:])
	require.Equal(t, 1000, countPrompts(t, pool))

	// Six prompts (the unnest path) in a transaction: 998 and 999 known,
	// 5000 twice, 5001 and 5002 new.
	few := append(numbered(998, 1000, "evolved"), numbered(5000, 5001, "evolved")...)
	few = append(few, numbered(5000, 5003, "evolved")...)
	var got []int64
	require.NoError(t, pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		if got, err = store.InsertPrompts(ctx, tx, few); err != nil {
			return err
		}
		var temp bool
		require.NoError(t, tx.QueryRow(ctx, `SELECT to_regclass('pg_temp.prompt_load') IS NOT NULL`).Scan(&temp))
		require.False(t, temp, "no temporary table for a few prompts")
		return nil
	}))
	require.Len(t, got, 6)
	require.Equal(t, ids[998:1000], got[:2])
	require.Equal(t, got[2], got[3], "a duplicate within the call gets the same id")
	require.NotEqual(t, got[3], got[4])
	require.Equal(t, 1003, countPrompts(t, pool))
	for i, id := range got {
		p, err := store.GetPrompt(ctx, pool, id)
		require.NoError(t, err)
		require.Equal(t, few[i].Hash, p.Hash)
	}
	p, err := store.GetPrompt(ctx, pool, got[0])
	require.NoError(t, err)
	require.Equal(t, "file", p.Source, "a known prompt keeps its first source")
}

// TestInsertPromptsConcurrently: workers storing overlapping rewrites at
// the same time each get the one stored id per prompt.
func TestInsertPromptsConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	results := make([][]int64, 8)
	var wg sync.WaitGroup
	for w := range results {
		wg.Go(func() {
			ids, err := store.InsertPrompts(ctx, pool, numbered(w, w+5, "evolved"))
			if err != nil {
				t.Error(err)
			}
			results[w] = ids
		})
	}
	wg.Wait()
	byHash := map[int]int64{}
	for w, ids := range results {
		require.Len(t, ids, 5)
		for i, id := range ids {
			if prev, ok := byHash[w+i]; ok {
				require.Equal(t, prev, id, "prompt %d", w+i)
			}
			byHash[w+i] = id
		}
	}
	require.Equal(t, 12, countPrompts(t, pool))
}
