package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
)

// checkLearning is the learning check (learning_check.enabled): once the
// train hook's policy is served, a sample of the iteration's pairs is
// teacher-forced under it, by workers, one learn task per pair, and the
// summary is stored, logged, and written into the export's manifest and
// report.
//
// The work is tasks, not the orchestrator's own calls: each pair is two
// teacher-forcing requests, as independent as the generate tasks' samples,
// and the tasks give the check what every stage has — any number of
// workers with their retries and bounded concurrency, a kill anywhere
// resumed from the tasks' rows (the check and its sample are stored in one
// transaction with the tasks; a pair's result and its task's settlement in
// another), lost messages recovered, failures bounded by
// max_failed_fraction. It is a stage of its own after training, so a
// restart inside it never runs the train hook again.
func (s *iterationState) checkLearning(ctx context.Context) error {
	lc := s.cfg.LearningCheck
	if !lc.Enabled {
		return nil
	}
	model := s.newPolicy()
	if model == "" {
		s.o.log.InfoContext(ctx, "learning check skipped: no new policy follows this iteration (no train hook, or the last iteration without hooks.final_model)",
			"iteration", s.it.Name)
		return nil
	}
	chk, err := store.StartLearningCheck(ctx, s.o.pool, store.LearningCheck{
		IterationID: s.it.ID, Model: model, Implicit: s.cfg.Scoring.Implicit, Beta: s.cfg.Scoring.Beta,
		Sample: lc.Sample, Seed: lc.Seed,
	})
	if err != nil {
		return err
	}
	s.checkModel = chk.Model
	s.o.log.InfoContext(ctx, "learning check", "iteration", s.it.Name, "model", chk.Model, "pairs", chk.Pairs, "sampled", chk.Sampled)
	if err := s.dispatch(ctx, bus.KindLearn); err != nil {
		return err
	}
	sum, err := LearningSummary(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	if err := store.SetLearningSummary(ctx, s.o.pool, s.it.ID, sum); err != nil {
		return err
	}
	s.logLearning(ctx, sum)
	// The manifest and the report were written before training: again,
	// with the check. The dataset is rewritten with the same rows.
	res, err := Export(ctx, s.o.pool, s.exportSpec())
	if err != nil {
		return err
	}
	s.writeReport(ctx, filepath.Join(res.Dir, "report.html"))
	return nil
}

// newPolicy is the model the iteration's training made: the next
// iteration's policy, or hooks.final_model after the last; "" when there is
// none, or when no hook trained and the next iteration samples the same
// model.
func (s *iterationState) newPolicy() string {
	hook := s.o.cfg.Hooks
	trained := len(hook.Train) > 0
	switch {
	case s.next != nil && (trained || s.next.PolicyModel != s.it.PolicyModel):
		return s.next.PolicyModel
	case s.next == nil && trained:
		return hook.FinalModel
	}
	return ""
}

// LearningSummary computes an iteration's learning-check summary from its
// stored results: the same rows give the same summary (the bootstrap is
// seeded with learning_check.seed).
func LearningSummary(ctx context.Context, pool store.DBTX, iterationID int64) (metric.LearningSummary, error) {
	chk, err := store.GetLearningCheck(ctx, pool, iterationID)
	if err != nil {
		return metric.LearningSummary{}, err
	}
	it, err := store.GetIteration(ctx, pool, iterationID)
	if err != nil {
		return metric.LearningSummary{}, err
	}
	settings, err := storedSettings(it)
	if err != nil {
		return metric.LearningSummary{}, err
	}
	rows, err := store.LearningRows(ctx, pool, iterationID, settings.Selection.Seed)
	if err != nil {
		return metric.LearningSummary{}, err
	}
	sum := metric.SummarizeLearning(rows, metric.BootstrapResamples, uint64(chk.Seed))
	sum.Model, sum.Implicit, sum.Pairs, sum.Sampled = chk.Model, chk.Implicit, chk.Pairs, chk.Sampled
	return sum, nil
}

// logLearning writes the summary to the log: mean Δ of selected and other
// pairs, the share learned, and Spearman's ρ of Δ with each metric.
func (s *iterationState) logLearning(ctx context.Context, sum metric.LearningSummary) {
	args := []any{"iteration", s.it.Name, "model", sum.Model, "checked", sum.Checked, "sampled", sum.Sampled,
		"mean_delta_selected", fmtPtr(sum.Selected.MeanDelta), "mean_delta_not_selected", fmtPtr(sum.NotSelected.MeanDelta),
		"learned_selected", fmtPtr(sum.Selected.Learned), "learned_selected_before", fmtPtr(sum.Selected.LearnedBefore)}
	for _, m := range metric.LearningMetrics {
		c := sum.Spearman[m]
		v := "undefined"
		if c.Rho != nil {
			v = fmt.Sprintf("%.3f", *c.Rho)
			if c.Interval != nil {
				v += fmt.Sprintf(" [%.3f, %.3f]", c.Interval.Lo, c.Interval.Hi)
			}
		}
		args = append(args, "spearman_"+string(m), v)
	}
	s.o.log.InfoContext(ctx, "learning check done", args...)
}

func fmtPtr(v *float64) string {
	if v == nil {
		return "none"
	}
	return fmt.Sprintf("%.4f", *v)
}

// learningForManifest is the iteration's learning-check summary when one
// was stored, nil otherwise.
func learningForManifest(ctx context.Context, db store.DBTX, iterationID int64) (*metric.LearningSummary, error) {
	chk, err := store.GetLearningCheck(ctx, db, iterationID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return chk.Summary, nil
}
