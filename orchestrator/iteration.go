package orchestrator

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/store"
)

// stages in order; an iteration's stored stage says which one to (re)do.
var stages = []string{
	store.StageLoading, store.StageGenerating, store.StageScoring, store.StageSelecting,
	store.StageEvolving, store.StageExporting, store.StageTraining, store.StageChecking, store.StageDone,
}

// iterationState is one iteration being driven.
type iterationState struct {
	o    *Orchestrator
	run  store.Run
	it   store.Iteration
	cfg  config.Iteration
	next *config.Iteration // nil for the last iteration
	last bool
	// checkModel is the learning check's model once its stage started.
	checkModel string
}

// drive runs the iteration from its stored stage to done.
func (s *iterationState) drive(ctx context.Context) error {
	start := 0
	for i, st := range stages {
		if st == s.it.Stage {
			start = i
		}
	}
	for _, stage := range stages[start:] {
		err := s.o.riding(ctx, s.it.Name+" "+stage, func() error { return s.runStage(ctx, stage) })
		if err != nil {
			return fmt.Errorf("%s: %w", stage, err)
		}
	}
	return nil
}

// runStage records that the iteration is in stage, then does its work.
func (s *iterationState) runStage(ctx context.Context, stage string) error {
	if err := store.SetStage(ctx, s.o.pool, s.it.ID, stage, ""); err != nil {
		return err
	}
	if s.o.opts.OnStage != nil {
		s.o.opts.OnStage(s.it.Name, stage)
	}
	s.o.log.InfoContext(ctx, "stage", "run", s.run.Name, "iteration", s.it.Name, "stage", stage)
	if d := s.o.opts.StageDelay[stage]; d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	switch stage {
	case store.StageLoading:
		return s.load(ctx)
	case store.StageGenerating:
		return s.dispatch(ctx, bus.KindGenerate)
	case store.StageScoring:
		return s.score(ctx)
	case store.StageSelecting:
		return s.selectEvolve(ctx)
	case store.StageEvolving:
		if s.evolves() {
			if err := s.dispatch(ctx, bus.KindEvolve); err != nil {
				return err
			}
			return s.screenEvolved(ctx)
		}
	case store.StageExporting:
		res, err := Export(ctx, s.o.pool, s.exportSpec())
		if err == nil {
			s.writeReport(ctx, filepath.Join(res.Dir, "report.html"))
		}
		return err
	case store.StageTraining:
		return s.train(ctx)
	case store.StageChecking:
		return s.checkLearning(ctx)
	}
	return nil
}

// evolves says whether this iteration evolves prompts: evolution is on and
// the next iteration takes evolved prompts.
func (s *iterationState) evolves() bool {
	return s.cfg.Evolve.Enabled && s.next != nil && s.next.Prompts.Evolved
}

// load fills the pool from the prompt files. Prompts evolved by the
// previous iteration are already in the pool (the evolve tasks put them
// there).
func (s *iterationState) load(ctx context.Context) error {
	if len(s.cfg.Prompts.Files) > 0 {
		src := s.cfg.Prompts
		ps, err := prompt.ReadSource(ctx, prompt.Source{Files: src.Files, Column: src.Column, IDColumn: src.IDColumn,
			Limit: src.Limit, Sample: src.Sample, Seed: src.Seed, MaxChars: s.cfg.Evolve.MaxPromptChars})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return &permanentError{err}
		}
		if err := s.loadPool(ctx, ps); err != nil {
			return err
		}
	}
	n, err := store.PoolSize(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	if n == 0 {
		return s.emptyPool(ctx)
	}
	s.o.log.InfoContext(ctx, "pool loaded", "iteration", s.it.Name, "prompts", n)
	return nil
}

// emptyPool says why the pool is empty: which of the previous iteration's
// filters dropped its rewrites, or that it selected nothing to evolve.
func (s *iterationState) emptyPool(ctx context.Context) error {
	if !s.cfg.Prompts.Evolved || s.it.Ordinal == 0 {
		return fmt.Errorf("the prompt pool is empty: prompts.files gave no prompts")
	}
	prev, err := store.PreviousIteration(ctx, s.o.pool, s.it.RunID, s.it.Ordinal)
	if err != nil {
		return err
	}
	outcomes, err := store.TaskOutcomes(ctx, s.o.pool, prev.ID, bus.KindEvolve, 5)
	if err != nil {
		return err
	}
	if len(outcomes) == 0 {
		ps, err := storedSettings(prev)
		if err != nil {
			return err
		}
		return fmt.Errorf("the prompt pool is empty: iteration %s selected no prompts to evolve (evolve.ratio %g of its pairs); add prompts.files or raise evolve.ratio",
			prev.Name, ps.Evolve.Ratio)
	}
	var tasks int64
	var parts []string
	for _, o := range outcomes {
		tasks += o.Count
		parts = append(parts, fmt.Sprintf("%d× %s", o.Count, o.Outcome))
	}
	return fmt.Errorf("the prompt pool is empty: the evolve tasks of iteration %s kept no rewrite (%s); the filters are evolve.length_ratio, evolve.max_prompt_chars, non-empty, not the original and not a duplicate of a prompt of this run; add prompts.files or loosen them",
		prev.Name, strings.Join(parts, "; "))
}

func (s *iterationState) score(ctx context.Context) error {
	sel := s.cfg.Selection
	n, err := store.ScorePairs(ctx, s.o.pool, s.it.ID, store.ScoreSpec{
		Metric: sel.Metric, ImplicitWeight: s.cfg.Scoring.ImplicitWeight, Ratio: sel.Ratio,
		Count: sel.Count, Seed: sel.Seed, Implicit: s.cfg.Scoring.Implicit, LengthControl: s.cfg.Scoring.LengthControl,
	}, store.TrainSelection)
	if err != nil {
		return err
	}
	if n == 0 {
		return s.nothingSelected(ctx)
	}
	if err := s.logLength(ctx); err != nil {
		return err
	}
	s.o.log.InfoContext(ctx, "pairs selected for training", "iteration", s.it.Name, "metric", sel.Metric, "selected", n)
	return nil
}

// nothingSelected says why an iteration whose pool is not empty selected
// no pair for training: no prompt formed a pair, the dpo form found no pair
// a reference had scored, or the ratio keeps none of the pairs.
func (s *iterationState) nothingSelected(ctx context.Context) error {
	pool, err := store.PoolSize(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	c, err := store.CountPairs(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	switch {
	case c.Pairs == 0:
		outcomes, err := store.TaskOutcomes(ctx, s.o.pool, s.it.ID, bus.KindGenerate, 5)
		if err != nil {
			return err
		}
		var parts []string
		for _, o := range outcomes {
			parts = append(parts, fmt.Sprintf("%d× %s", o.Count, o.Outcome))
		}
		return &permanentError{fmt.Errorf("selected nothing: none of the %d prompts formed a pair (outcomes: %s)", pool, strings.Join(parts, "; "))}
	case s.cfg.Scoring.Implicit == "dpo" && c.WithDPO == 0:
		why := fmt.Sprintf("the iteration's reference_model %q scored none of them", s.it.ReferenceModel)
		if s.it.ReferenceModel == "" {
			why = "the iteration has no reference_model: set iterations[].reference_model or endpoints.reference.model"
		}
		return &permanentError{fmt.Errorf("selected nothing: scoring.implicit dpo scores only pairs with reference log-probs, and none of the %d pairs has them; %s", c.Pairs, why)}
	}
	sel := s.cfg.Selection
	return &permanentError{fmt.Errorf("selected nothing: selection ratio %g of %d pairs keeps none; raise selection.ratio or set selection.count", sel.Ratio, c.Pairs)}
}

func (s *iterationState) selectEvolve(ctx context.Context) error {
	if !s.evolves() {
		return nil
	}
	ev := s.cfg.Evolve
	n, err := store.ScorePairs(ctx, s.o.pool, s.it.ID, store.ScoreSpec{
		Metric: ev.Metric, ImplicitWeight: ev.ImplicitWeight, Ratio: ev.Ratio,
		Seed: s.cfg.Selection.Seed, Implicit: s.cfg.Scoring.Implicit, LengthControl: s.cfg.Scoring.LengthControl,
	}, store.EvolveSelection)
	if err != nil {
		return err
	}
	s.o.log.InfoContext(ctx, "prompts selected for evolution", "iteration", s.it.Name, "metric", ev.Metric, "selected", n)
	return nil
}

func (s *iterationState) exportSpec() ExportSpec {
	return ExportSpec{
		Dir: s.o.cfg.Export.Dir, Run: s.run.Name, IterationID: s.it.ID, Iteration: s.it.Name,
		ConfigHash: s.o.cfg.Hash(), Record: true, Formats: s.o.cfg.Export.Formats,
	}
}

// writeReport writes the iteration's HTML report next to its export. A
// report that cannot be made is logged, not fatal: the dataset is what the
// next stage needs, and `selfplay report` can make the report again.
func (s *iterationState) writeReport(ctx context.Context, path string) {
	if err := report.WriteFile(ctx, s.o.pool, s.run.Name, s.it.Name, path); err != nil {
		s.o.log.ErrorContext(ctx, "write report", "iteration", s.it.Name, "path", path, "err", err)
		return
	}
	s.o.log.InfoContext(ctx, "report written", "iteration", s.it.Name, "path", path)
}

// failureSummary lists the most common failure reasons.
func failureSummary(reasons []store.ReasonCount) string {
	var parts []string
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%d× %s", r.Count, r.Label()))
	}
	return strings.Join(parts, "; ")
}
