package store

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
)

// NearItem is a prompt to check for near-duplicates: its hash, its words
// (prompt.Words of prompt.Content) and its signature from them.
type NearItem struct {
	Hash  string
	Words []string
	Sig   minhash.Signature
}

// NewNearItem computes the item of a prompt's messages.
func NewNearItem(p minhash.Params, hash string, msgs []prompt.Message) NearItem {
	w := prompt.Words(prompt.Content(msgs))
	return NearItem{Hash: hash, Words: w, Sig: p.Sign(w)}
}

// NearMatch is the prompt a near-duplicate matched: a prompt of the run
// (PromptID) or an earlier item of the same check (Item ≥ 0, PromptID 0).
type NearMatch struct {
	PromptID int64
	Item     int
	// Estimated is the similarity the signatures estimate (what the
	// threshold is compared with); Exact the Jaccard similarity of the
	// two shingle sets.
	Estimated, Exact float64
}

// NearCheck says what FindNear compares.
type NearCheck struct {
	RunID int64
	// MaxOrdinal: only prompts brought into the run by iterations up to
	// this ordinal count (math.MaxInt32 for all).
	MaxOrdinal int
	Params     minhash.Params
	Threshold  float64
	// DropMatched: an item found near-duplicate is left out of the
	// comparison of later items (it will be dropped); else it counts.
	DropMatched bool
}

// probeChunk is how many items one band probe query carries.
const probeChunk = 2000

// FindNear returns, for each item, the prompt it is a near-duplicate of
// (nil for none): the most similar of the run's prompts (by their LSH
// bands in prompt_bands and their stored signatures) and the earlier items
// that are kept, at estimated similarity ≥ c.Threshold. The same prompt
// (equal hash) never counts; ties go to the run's prompt of lowest id, then
// the earliest item.
func FindNear(ctx context.Context, db DBTX, c NearCheck, items []NearItem) ([]*NearMatch, error) {
	bands := make([][]int64, len(items))
	for i, it := range items {
		bands[i] = c.Params.BandHashes(it.Sig)
	}
	stored, err := probeBands(ctx, db, c, bands)
	if err != nil {
		return nil, err
	}
	sigs, err := storedSignatures(ctx, db, c.Params, stored)
	if err != nil {
		return nil, err
	}
	out := make([]*NearMatch, len(items))
	type bandKey struct {
		band int
		hash int64
	}
	kept := map[bandKey][]int{}
	size := c.Params.Size()
	var wanted []int64 // matched prompts whose texts the exact Jaccard needs
	for i, it := range items {
		var best *NearMatch
		bestAgree := -1
		consider := func(m NearMatch, sig minhash.Signature) {
			a := minhash.Agreeing(it.Sig, sig)
			if a > bestAgree && minhash.AtLeast(a, size, c.Threshold) {
				bestAgree, best = a, &m
				best.Estimated = float64(a) / float64(size)
			}
		}
		for _, id := range stored[i] { // ascending ids
			if s, ok := sigs[id]; ok && s.hash != it.Hash {
				consider(NearMatch{PromptID: id, Item: -1}, s.sig)
			}
		}
		var earlier []int
		for b, h := range bands[i] {
			earlier = append(earlier, kept[bandKey{b, h}]...)
		}
		slices.Sort(earlier)
		for k, j := range earlier {
			if (k == 0 || j != earlier[k-1]) && items[j].Hash != it.Hash {
				consider(NearMatch{Item: j}, items[j].Sig)
			}
		}
		out[i] = best
		if best != nil && best.PromptID != 0 {
			wanted = append(wanted, best.PromptID)
		}
		if best != nil && c.DropMatched {
			continue
		}
		for b, h := range bands[i] {
			kept[bandKey{b, h}] = append(kept[bandKey{b, h}], i)
		}
	}
	words, err := promptWords(ctx, db, wanted)
	if err != nil {
		return nil, err
	}
	for i, m := range out {
		switch {
		case m == nil:
		case m.PromptID != 0:
			m.Exact = minhash.Jaccard(items[i].Words, words[m.PromptID], c.Params.Shingle)
		default:
			m.Exact = minhash.Jaccard(items[i].Words, items[m.Item].Words, c.Params.Shingle)
		}
	}
	return out, nil
}

// probeBands returns, per item, the ids (ascending) of the run's prompts
// that share a band with it.
func probeBands(ctx context.Context, db DBTX, c NearCheck, bands [][]int64) ([][]int64, error) {
	out := make([][]int64, len(bands))
	for start := 0; start < len(bands); start += probeChunk {
		end := min(start+probeChunk, len(bands))
		var item []int32
		var band []int16
		var hash []int64
		for i := start; i < end; i++ {
			for b, h := range bands[i] {
				item, band, hash = append(item, int32(i)), append(band, int16(b)), append(hash, h)
			}
		}
		if len(item) == 0 {
			continue
		}
		rows, err := db.Query(ctx, `
			SELECT DISTINCT p.item, pb.prompt_id
			FROM unnest($2::int[], $3::smallint[], $4::bigint[]) AS p(item, band, hash)
			JOIN prompt_bands pb ON pb.run_id = $1 AND pb.band = p.band AND pb.hash = p.hash
			WHERE pb.ordinal <= $5
			ORDER BY 1, 2`, c.RunID, item, band, hash, c.MaxOrdinal)
		if err != nil {
			return nil, fmt.Errorf("probe the LSH bands of run %d: %w", c.RunID, err)
		}
		var i int32
		var id int64
		_, err = pgx.ForEachRow(rows, []any{&i, &id}, func() error {
			out[i] = append(out[i], id)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("probe the LSH bands of run %d: %w", c.RunID, err)
		}
	}
	return out, nil
}

type storedSig struct {
	hash string
	sig  minhash.Signature
}

// storedSignatures reads the signatures (and hashes) of the prompts named
// in ids.
func storedSignatures(ctx context.Context, db DBTX, p minhash.Params, ids [][]int64) (map[int64]storedSig, error) {
	set := map[int64]bool{}
	var list []int64
	for _, l := range ids {
		for _, id := range l {
			if !set[id] {
				set[id] = true
				list = append(list, id)
			}
		}
	}
	out := map[int64]storedSig{}
	if len(list) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `
		SELECT s.prompt_id, p.hash, s.minhash FROM prompt_signatures s JOIN prompts p ON p.id = s.prompt_id
		WHERE s.params = $1 AND s.prompt_id = ANY($2)`, p.Key(), list)
	if err != nil {
		return nil, fmt.Errorf("read prompt signatures: %w", err)
	}
	var id int64
	var hash string
	var vals []int64
	_, err = pgx.ForEachRow(rows, []any{&id, &hash, &vals}, func() error {
		sig := make(minhash.Signature, len(vals))
		for i, v := range vals {
			sig[i] = uint64(v)
		}
		out[id] = storedSig{hash: hash, sig: sig}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read prompt signatures: %w", err)
	}
	return out, nil
}

// promptWords reads prompts' messages and splits them into words.
func promptWords(ctx context.Context, db DBTX, ids []int64) (map[int64][]string, error) {
	out := map[int64][]string{}
	if len(ids) == 0 {
		return out, nil
	}
	rows, err := db.Query(ctx, `SELECT id, messages FROM prompts WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("read matched prompts: %w", err)
	}
	var id int64
	var msgs []prompt.Message
	_, err = pgx.ForEachRow(rows, []any{&id, &msgs}, func() error {
		out[id] = prompt.Words(prompt.Content(msgs))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read matched prompts: %w", err)
	}
	return out, nil
}

// StoreSignatures stores the signatures of stored prompts (once per prompt
// and parameter set) and adds their bands to the run's LSH index, recording
// ordinal as the iteration that brought them into the run. Prompts already
// there keep their rows; items without words (nil signature) are skipped.
func StoreSignatures(ctx context.Context, db DBTX, runID int64, ordinal int, p minhash.Params, ids []int64, items []NearItem) error {
	for start := 0; start < len(ids); start += probeChunk {
		end := min(start+probeChunk, len(ids))
		var sigIDs []int64
		var sigs []string
		type bandRow struct {
			band int16
			hash int64
			id   int64
		}
		var rows []bandRow
		for i := start; i < end; i++ {
			if items[i].Sig == nil {
				continue
			}
			sigIDs, sigs = append(sigIDs, ids[i]), append(sigs, arrayLiteral(items[i].Sig))
			for b, h := range p.BandHashes(items[i].Sig) {
				rows = append(rows, bandRow{int16(b), h, ids[i]})
			}
		}
		// In the index's order: each insert lands near the one before.
		slices.SortFunc(rows, func(a, b bandRow) int {
			return cmp.Or(cmp.Compare(a.band, b.band), cmp.Compare(a.hash, b.hash), cmp.Compare(a.id, b.id))
		})
		bandIDs, band, hash := make([]int64, len(rows)), make([]int16, len(rows)), make([]int64, len(rows))
		for i, r := range rows {
			bandIDs[i], band[i], hash[i] = r.id, r.band, r.hash
		}
		if len(sigIDs) == 0 {
			continue
		}
		if _, err := db.Exec(ctx, `
			INSERT INTO prompt_signatures (prompt_id, params, minhash)
			SELECT id, $1, sig::bigint[] FROM unnest($2::bigint[], $3::text[]) AS t(id, sig)
			ON CONFLICT DO NOTHING`, p.Key(), sigIDs, sigs); err != nil {
			return fmt.Errorf("store prompt signatures: %w", err)
		}
		if _, err := db.Exec(ctx, `
			INSERT INTO prompt_bands (run_id, band, hash, prompt_id, ordinal)
			SELECT $1, band, hash, id, $5 FROM unnest($2::bigint[], $3::smallint[], $4::bigint[]) AS t(id, band, hash)
			ON CONFLICT DO NOTHING`, runID, bandIDs, band, hash, ordinal); err != nil {
			return fmt.Errorf("store the LSH bands of run %d: %w", runID, err)
		}
	}
	return nil
}

// arrayLiteral writes a signature as a PostgreSQL bigint[] literal (its
// values are below 2^61, so they fit a bigint).
func arrayLiteral(sig minhash.Signature) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range sig {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(v, 10))
	}
	b.WriteByte('}')
	return b.String()
}

// LockRunPrompts serialises, until the transaction ends, the transactions
// that check a run's prompts for near-duplicates and then add theirs: two
// evolve tasks committing near-identical rewrites at once would otherwise
// each miss the other's.
func LockRunPrompts(ctx context.Context, tx pgx.Tx, runID int64) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7324, hashtext($1::bigint::text))`, runID); err != nil {
		return fmt.Errorf("lock the prompts of run %d: %w", runID, err)
	}
	return nil
}

// AllOrdinals is NearCheck.MaxOrdinal for every prompt of the run.
const AllOrdinals = math.MaxInt32
