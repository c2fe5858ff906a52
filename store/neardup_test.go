package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

var dedup = minhash.Params{Shingle: 3, Bands: 20, Rows: 6}

// fridge has 65 words, all three-word shingles distinct: 63.
const fridge = "Explain how a refrigerator keeps food cold, what the compressor and the refrigerant do, " +
	"why the back of the fridge feels warm, and how much electricity a typical kitchen fridge uses in a year at home. " +
	"Then compare it with an old icebox that needed a block of ice delivered every week, and say which design " +
	"wastes less energy over ten years of daily use."

// runWith makes a run with two iterations and returns their ids.
func runWith(t *testing.T, pool *pgxpool.Pool, name string) (runID int64, its []int64) {
	t.Helper()
	ctx := context.Background()
	run, err := store.EnsureRun(ctx, pool, name, []byte(`{}`))
	require.NoError(t, err)
	stored, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{
		{Ordinal: 0, Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)},
		{Ordinal: 1, Name: "iter1", PolicyModel: "m", Config: []byte(`{}`)},
	})
	require.NoError(t, err)
	return run.ID, []int64{stored[0].ID, stored[1].ID}
}

// enter stores prompts with these texts in the run as brought in by the
// iteration of the ordinal, and returns their ids.
func enter(t *testing.T, pool *pgxpool.Pool, runID int64, ordinal int, texts ...string) []int64 {
	t.Helper()
	ctx := context.Background()
	var ps []prompt.Prompt
	var items []store.NearItem
	for _, text := range texts {
		p := prompt.New([]prompt.Message{{Role: "user", Content: text}}, "test", "")
		ps = append(ps, p)
		items = append(items, store.NewNearItem(dedup, p.Hash, p.Messages))
	}
	ids, err := store.InsertPrompts(ctx, pool, ps)
	require.NoError(t, err)
	require.NoError(t, store.StoreSignatures(ctx, pool, runID, ordinal, dedup, ids, items))
	return ids
}

func items(texts ...string) []store.NearItem {
	var out []store.NearItem
	for _, text := range texts {
		p := prompt.New([]prompt.Message{{Role: "user", Content: text}}, "test", "")
		out = append(out, store.NewNearItem(dedup, p.Hash, p.Messages))
	}
	return out
}

// replaceWords replaces the words at the given positions of fridge.
func replaceWords(at ...int) string {
	w := strings.Fields(fridge)
	for k, i := range at {
		w[i] = fmt.Sprintf("zz%d", k)
	}
	return strings.Join(w, " ")
}

func TestFindNear(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	runID, _ := runWith(t, pool, "a")
	otherRun, _ := runWith(t, pool, "b")
	ids := enter(t, pool, runID, 0, fridge)
	later := enter(t, pool, runID, 1, "Write a short poem about the sea at night, with the moon on the water and a lighthouse far away on the rocks.")
	enter(t, pool, otherRun, 0, "Describe a mountain village in winter, its people, its animals and the long nights by the fire in great detail.")

	check := store.NearCheck{RunID: runID, MaxOrdinal: store.AllOrdinals, Params: dedup, Threshold: 0.8, DropMatched: true}
	whitespace := strings.ReplaceAll(strings.ReplaceAll(fridge, " ", "  \n"), "cold,", "COLD ,")
	// One word replaced, at position 20, changes 3 of the 63 shingles:
	// J = 60/66.
	oneWord := replaceWords(20)
	// Words 3, 9, 15, …, 33 (6 apart) replaced: 18 of 63 shingles change,
	// J = 45/81.
	sixWords := replaceWords(3, 9, 15, 21, 27, 33)
	got, err := store.FindNear(ctx, pool, check, items(
		fridge,     // the same prompt (same hash): not a near-duplicate of itself
		whitespace, // identical but for white space, case and punctuation
		oneWord,
		sixWords,
		"Describe a mountain village in winter, its people, its animals and the long nights by the fire in great detail.", // another run's
		"Write a short poem about the sea at night, with the moon on the water and a lighthouse far away on the rocks!",   // ordinal 1
		"?!", // no words, no signature
	))
	require.NoError(t, err)
	require.Len(t, got, 7)
	require.Nil(t, got[0])
	require.NotNil(t, got[1])
	require.Equal(t, store.NearMatch{PromptID: ids[0], Item: -1, Estimated: 1, Exact: 1}, *got[1])
	require.NotNil(t, got[2])
	require.Equal(t, ids[0], got[2].PromptID)
	require.InDelta(t, 60.0/66, got[2].Exact, 1e-12)
	require.GreaterOrEqual(t, got[2].Estimated, 0.8)
	require.Nil(t, got[3], "J = 45/81")
	require.Nil(t, got[4], "another run's prompt")
	require.NotNil(t, got[5])
	require.Equal(t, later[0], got[5].PromptID)
	require.Nil(t, got[6])

	// Brought in at ordinal 1: not before ordinal 1.
	check.MaxOrdinal = 0
	got, err = store.FindNear(ctx, pool, check, items("Write a short poem about the sea at night, with the moon on the water and a lighthouse far away on the rocks!"))
	require.NoError(t, err)
	require.Nil(t, got[0])
}

// TestFindNearWithinTheItems: an item matches an earlier kept item; with
// DropMatched a dropped item does not count for later ones.
func TestFindNearWithinTheItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	runID, _ := runWith(t, pool, "a")
	ws := strings.ReplaceAll(fridge, " ", "\t")
	check := store.NearCheck{RunID: runID, MaxOrdinal: store.AllOrdinals, Params: dedup, Threshold: 0.8, DropMatched: true}
	got, err := store.FindNear(ctx, pool, check, items(fridge, ws, strings.ToUpper(fridge)))
	require.NoError(t, err)
	require.Nil(t, got[0])
	require.Equal(t, store.NearMatch{Item: 0, Estimated: 1, Exact: 1}, *got[1])
	require.Equal(t, store.NearMatch{Item: 0, Estimated: 1, Exact: 1}, *got[2]) // item 1 was dropped

	check.DropMatched = false // item 1 is kept: item 2 ties between 0 and 1, the earliest wins
	got, err = store.FindNear(ctx, pool, check, items(fridge, ws, strings.ToUpper(fridge)))
	require.NoError(t, err)
	require.Equal(t, 0, got[2].Item)
}

// TestStoreSignaturesTwice: storing the same prompts again, or in another
// run, adds no signature; each run has its own bands.
func TestStoreSignaturesTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	runA, _ := runWith(t, pool, "a")
	runB, _ := runWith(t, pool, "b")
	texts := []string{fridge, "How do I cook rice?", "?!"}
	enter(t, pool, runA, 0, texts...)
	enter(t, pool, runA, 0, texts...)
	enter(t, pool, runB, 1, texts...)
	var sigs, bandsA, bandsB int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompt_signatures`).Scan(&sigs))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompt_bands WHERE run_id = $1`, runA).Scan(&bandsA))
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM prompt_bands WHERE run_id = $1`, runB).Scan(&bandsB))
	require.Equal(t, 2, sigs) // "?!" has no words
	require.Equal(t, 2*20, bandsA)
	require.Equal(t, 2*20, bandsB)
}
