package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/decontam"
	"github.com/selfplay/selfplay/minhash"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// buildBenchmark reads decontaminate.files into the run's n-gram set, once
// per run and before anything is stored: a bad benchmark file refuses the
// run with the file and row.
func (o *Orchestrator) buildBenchmark(ctx context.Context) error {
	d := o.cfg.Decontaminate
	if len(d.Files) == 0 {
		return nil
	}
	start := time.Now()
	set, err := decontam.Build(ctx, d.Files, d.Column, d.NGram)
	if err != nil {
		return err
	}
	o.bench = set
	o.log.InfoContext(ctx, "benchmark n-gram set built", "files", len(d.Files), "prompts", set.Prompts,
		"ngrams", set.NGrams(), "ngram_words", d.NGram, "took", time.Since(start).Round(time.Millisecond))
	if set.Short > 0 {
		o.log.WarnContext(ctx, "benchmark prompts shorter than decontaminate.ngram words can match no prompt; lower decontaminate.ngram to check them",
			"short", set.Short, "prompts", set.Prompts, "ngram_words", d.NGram)
	}
	return nil
}

// dedupParams are a run's MinHash parameters.
func dedupParams(d config.Dedup) minhash.Params {
	return minhash.Params{Shingle: d.Shingle, Bands: d.Bands, Rows: d.Rows}
}

// loadPool stores the prompts read from the iteration's files and adds them
// to its pool, in one transaction with the checks' results: a prompt that
// shares an n-gram with a benchmark is dropped, a near-duplicate of a
// prompt already in the run (or of an earlier one of the files) is flagged,
// and dropped under dedup.loaded: drop; the others get their signatures in
// the run's LSH index.
func (s *iterationState) loadPool(ctx context.Context, ps []prompt.Prompt) error {
	var flags []store.Flag
	var clean []prompt.Prompt
	for _, p := range ps {
		if m, ok := s.o.bench.Check(p.Messages); ok {
			flags = append(flags, store.Flag{IterationID: s.it.ID, Reason: store.ReasonContaminated, Dropped: true,
				Prompt: p, BenchmarkFile: m.File, BenchmarkRow: m.Row})
			continue
		}
		clean = append(clean, p)
	}
	d := s.cfg.Dedup
	params := dedupParams(d)
	items := make([]store.NearItem, len(clean))
	for i, p := range clean {
		items[i] = store.NewNearItem(params, p.Hash, p.Messages)
	}
	drop := d.Loaded == config.DedupDrop
	var near int
	err := pgx.BeginFunc(ctx, s.o.pool, func(tx pgx.Tx) error {
		if err := store.LockRunPrompts(ctx, tx, s.run.ID); err != nil {
			return err
		}
		matches, err := store.FindNear(ctx, tx, store.NearCheck{RunID: s.run.ID, MaxOrdinal: s.it.Ordinal - 1,
			Params: params, Threshold: d.NearThreshold, DropMatched: drop}, items)
		if err != nil {
			return err
		}
		var kept []prompt.Prompt
		var keptItems []store.NearItem
		at := make([]int, len(clean)) // index in kept, -1 when dropped
		for i, p := range clean {
			at[i] = -1
			if matches[i] != nil && drop {
				continue
			}
			at[i] = len(kept)
			kept, keptItems = append(kept, p), append(keptItems, items[i])
		}
		ids, err := store.InsertPrompts(ctx, tx, kept)
		if err != nil {
			return err
		}
		if err := store.AddToPool(ctx, tx, s.it.ID, ids); err != nil {
			return err
		}
		if err := store.StoreSignatures(ctx, tx, s.run.ID, s.it.Ordinal, params, ids, keptItems); err != nil {
			return err
		}
		nearFlags := flags
		for i, m := range matches {
			if m == nil {
				continue
			}
			f := store.Flag{IterationID: s.it.ID, Reason: store.ReasonNearDuplicate, Dropped: drop, Prompt: clean[i],
				MatchedPromptID: m.PromptID, Estimated: m.Estimated, Exact: m.Exact}
			if m.PromptID == 0 {
				f.MatchedPromptID = ids[at[m.Item]]
			}
			if at[i] >= 0 {
				f.PromptID = ids[at[i]]
			}
			nearFlags = append(nearFlags, f)
		}
		near = len(nearFlags) - len(flags)
		return store.InsertFlags(ctx, tx, nearFlags)
	})
	if err != nil {
		return err
	}
	if len(flags) > 0 || near > 0 {
		action := "kept (dedup.loaded: report)"
		if drop {
			action = "dropped (dedup.loaded: drop)"
		}
		s.o.log.WarnContext(ctx, "prompt files: contaminated prompts dropped, near-duplicates "+action,
			"iteration", s.it.Name, "contaminated", len(flags), "near_duplicates", near,
			"see", "the report's data quality section, or SELECT * FROM prompt_flag_details")
	}
	return nil
}

// screenEvolved drops from the next iteration's pool the rewrites of this
// iteration that share an n-gram with a benchmark. Workers do not read the
// benchmark files; the orchestrator checks the rewrites once the evolve
// tasks are done (and again, finding nothing new, when the stage is
// re-run).
func (s *iterationState) screenEvolved(ctx context.Context) error {
	if s.o.bench == nil {
		return nil
	}
	next, err := store.NextIteration(ctx, s.o.pool, s.it.RunID, s.it.Ordinal)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	pool, err := store.PoolPrompts(ctx, s.o.pool, next.ID)
	if err != nil {
		return err
	}
	var flags []store.Flag
	var ids []int64
	for _, sp := range pool {
		m, ok := s.o.bench.Check(sp.Messages)
		if !ok {
			continue
		}
		p := prompt.New(sp.Messages, sp.Source, deref(sp.SourceID))
		if sp.ParentPromptID != nil {
			p.ParentID = *sp.ParentPromptID
		}
		p.Strategy = deref(sp.Strategy)
		flags = append(flags, store.Flag{IterationID: s.it.ID, Reason: store.ReasonContaminated, Dropped: true,
			Prompt: p, PromptID: sp.ID, BenchmarkFile: m.File, BenchmarkRow: m.Row})
		ids = append(ids, sp.ID)
	}
	if len(flags) == 0 {
		return nil
	}
	err = pgx.BeginFunc(ctx, s.o.pool, func(tx pgx.Tx) error {
		if err := store.InsertFlags(ctx, tx, flags); err != nil {
			return err
		}
		return store.DropFromPool(ctx, tx, s.run.ID, next.ID, ids)
	})
	if err != nil {
		return fmt.Errorf("drop contaminated rewrites: %w", err)
	}
	s.o.log.WarnContext(ctx, "contaminated rewrites dropped", "iteration", s.it.Name, "dropped", len(flags))
	return nil
}
