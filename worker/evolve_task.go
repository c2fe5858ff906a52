package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// evolve rewrites a selected prompt with every configured strategy, keeps
// the rewrites that pass the filters and are in none of the run's pools
// (another run's prompts do not count), stores them
// with parent and strategy, adds them to the next iteration's pool when it
// takes evolved prompts, and marks the task done — in one transaction.
func (w *Worker) evolve(ctx context.Context, it iterationInfo, key store.TaskKey, delivered int, parentMsgs []prompt.Message, log *slog.Logger) error {
	ev := it.Settings.Evolve
	model := w.clients.EvolverModel
	if model == "" {
		model = ev.Model
	}
	if model == "" {
		model = it.Settings.PolicyModel
	}
	var candidates []prompt.Prompt
	dropped := map[string]int{}
	for i, strategy := range ev.Strategies {
		msgs, err := prompt.EvolveMessages(strategy, parentMsgs)
		if err != nil {
			return Permanent(err)
		}
		seed := promptSeed(it.Settings.Generation.Seed, parentMsgs) + int64(i)
		out, err := w.clients.Evolver.Sample(ctx, toLLM(msgs), llm.SampleParams{
			Model: model, N: 1, Temperature: ev.Temperature, TopP: 1, MaxTokens: ev.MaxTokens, Seed: &seed,
			WithoutTokenIDs: true, // a rewrite is read as text
		})
		if err != nil {
			return classify("evolve ("+strategy+")", err)
		}
		if len(out) == 0 {
			return Permanentf("evolve (%s): no output", strategy)
		}
		text := prompt.CleanEvolved(out[0].Content)
		if why := prompt.Filter(text, parentMsgs, ev.LengthRatio, ev.MaxPromptChars); why != "" {
			dropped[why]++
			continue
		}
		candidates = append(candidates, prompt.Evolved(parentMsgs, text, key.PromptID, strategy))
	}

	next, err := store.NextIteration(ctx, w.pool, it.RunID, it.Ordinal)
	var nextID int64
	if err == nil {
		var s config.Settings
		if json.Unmarshal(next.Config, &s) == nil && s.Prompts.Evolved {
			nextID = next.ID
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return Retry(0, err)
	}

	var kept int
	err = pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		t, err := store.LockTask(ctx, tx, key)
		if err != nil {
			return err
		}
		if t.Status != store.TaskPending {
			return nil
		}
		hashes := make([]string, len(candidates))
		for i, c := range candidates {
			hashes[i] = c.Hash
		}
		known, err := store.KnownHashes(ctx, tx, it.RunID, hashes)
		if err != nil {
			return err
		}
		var fresh []prompt.Prompt
		seen := map[string]bool{}
		for _, c := range candidates {
			if known[c.Hash] || seen[c.Hash] {
				dropped["duplicate of a prompt of this run"]++
				continue
			}
			seen[c.Hash] = true
			fresh = append(fresh, c)
		}
		ids, near, err := insertUnlessNear(ctx, tx, it, fresh)
		if err != nil {
			return err
		}
		kept = len(ids)
		if nextID != 0 && len(ids) > 0 {
			if err := store.AddToPool(ctx, tx, nextID, ids); err != nil {
				return err
			}
		}
		return store.FinishTask(ctx, tx, key, evolveOutcome(kept, len(ev.Strategies), dropped, near), delivered)
	})
	if err != nil {
		return Retry(0, fmt.Errorf("store evolved prompts: %w", err))
	}
	log.Debug("evolved", "kept", kept, "strategies", len(ev.Strategies))
	return nil
}

// evolveOutcome reads like "kept 2 of 5; dropped: 1 too long for
// length_ratio, 1 empty, 1 near_duplicate (deepen)": near lists the
// strategies of the rewrites dropped as near-duplicates.
func evolveOutcome(kept, total int, dropped map[string]int, near []string) string {
	s := fmt.Sprintf("kept %d of %d", kept, total)
	if len(dropped) == 0 && len(near) == 0 {
		return s
	}
	var parts []string
	for _, why := range []string{"empty", "over max_prompt_chars", "too long for length_ratio", "too short for length_ratio", "same as the original", "duplicate of a prompt of this run"} {
		if n := dropped[why]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, why))
		}
	}
	if len(near) > 0 {
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(near), store.ReasonNearDuplicate, strings.Join(near, ", ")))
	}
	return s + "; dropped: " + strings.Join(parts, ", ")
}
