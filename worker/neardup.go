package worker

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// insertUnlessNear stores the rewrites that are no near-duplicate of a
// prompt of the run (nor of an earlier rewrite of the task), with their
// signatures in the run's LSH index, and records the others as dropped
// (store.ReasonNearDuplicate, with the prompt each matched); it returns the
// stored rewrites' ids and the strategies of the dropped ones. Settings
// stored without a dedup section (Bands 0) store every rewrite unchecked.
func insertUnlessNear(ctx context.Context, tx pgx.Tx, it iterationInfo, fresh []prompt.Prompt) ([]int64, []string, error) {
	d := it.Settings.Dedup
	if d.Bands == 0 || d.Rows == 0 || d.Shingle == 0 {
		ids, err := store.InsertPrompts(ctx, tx, fresh)
		return ids, nil, err
	}
	params := minhash.Params{Shingle: d.Shingle, Bands: d.Bands, Rows: d.Rows}
	if err := store.LockRunPrompts(ctx, tx, it.RunID); err != nil {
		return nil, nil, err
	}
	items := make([]store.NearItem, len(fresh))
	for i, p := range fresh {
		items[i] = store.NewNearItem(params, p.Hash, p.Messages)
	}
	matches, err := store.FindNear(ctx, tx, store.NearCheck{RunID: it.RunID, MaxOrdinal: store.AllOrdinals,
		Params: params, Threshold: d.NearThreshold, DropMatched: true}, items)
	if err != nil {
		return nil, nil, err
	}
	var kept []prompt.Prompt
	var keptItems []store.NearItem
	at := make([]int, len(fresh))
	for i, p := range fresh {
		at[i] = -1
		if matches[i] == nil {
			at[i] = len(kept)
			kept, keptItems = append(kept, p), append(keptItems, items[i])
		}
	}
	ids, err := store.InsertPrompts(ctx, tx, kept)
	if err != nil {
		return nil, nil, err
	}
	if err := store.StoreSignatures(ctx, tx, it.RunID, it.Ordinal, params, ids, keptItems); err != nil {
		return nil, nil, err
	}
	var flags []store.Flag
	var strategies []string
	for i, m := range matches {
		if m == nil {
			continue
		}
		matched := m.PromptID
		if matched == 0 {
			matched = ids[at[m.Item]]
		}
		flags = append(flags, store.Flag{IterationID: it.ID, Reason: store.ReasonNearDuplicate, Dropped: true,
			Prompt: fresh[i], MatchedPromptID: matched, Estimated: m.Estimated, Exact: m.Exact})
		strategies = append(strategies, fresh[i].Strategy)
	}
	return ids, strategies, store.InsertFlags(ctx, tx, flags)
}
