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
	store.StageEvolving, store.StageExporting, store.StageTraining, store.StageDone,
}

// iterationState is one iteration being driven.
type iterationState struct {
	o    *Orchestrator
	run  store.Run
	it   store.Iteration
	cfg  config.Iteration
	next *config.Iteration // nil for the last iteration
	last bool
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
			return s.dispatch(ctx, bus.KindEvolve)
		}
	case store.StageExporting:
		res, err := Export(ctx, s.o.pool, s.exportSpec())
		if err == nil {
			s.writeReport(ctx, filepath.Join(res.Dir, "report.html"))
		}
		return err
	case store.StageTraining:
		return s.train(ctx)
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
		if _, err := store.LoadPool(ctx, s.o.pool, s.it.ID, ps); err != nil {
			return err
		}
	}
	n, err := store.PoolSize(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("the prompt pool is empty: the previous iteration evolved no prompts that passed the filters; add prompts.files")
	}
	s.o.log.InfoContext(ctx, "pool loaded", "iteration", s.it.Name, "prompts", n)
	return nil
}

func (s *iterationState) score(ctx context.Context) error {
	sel := s.cfg.Selection
	n, err := store.ScorePairs(ctx, s.o.pool, s.it.ID, store.ScoreSpec{
		Metric: sel.Metric, ImplicitWeight: s.cfg.Scoring.ImplicitWeight, Ratio: sel.Ratio,
		Count: sel.Count, Seed: sel.Seed, Implicit: s.cfg.Scoring.Implicit,
	}, store.TrainSelection)
	if err != nil {
		return err
	}
	s.o.log.InfoContext(ctx, "pairs selected for training", "iteration", s.it.Name, "metric", sel.Metric, "selected", n)
	return nil
}

func (s *iterationState) selectEvolve(ctx context.Context) error {
	if !s.evolves() {
		return nil
	}
	ev := s.cfg.Evolve
	n, err := store.ScorePairs(ctx, s.o.pool, s.it.ID, store.ScoreSpec{
		Metric: ev.Metric, ImplicitWeight: ev.ImplicitWeight, Ratio: ev.Ratio,
		Seed: s.cfg.Selection.Seed, Implicit: s.cfg.Scoring.Implicit,
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
