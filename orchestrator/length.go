package orchestrator

import (
	"context"
	"log/slog"

	"github.com/selfplay/selfplay/store"
)

// logLength logs the iteration's length fit as scoring stored it — saying
// so when the slope is undefined and the raw margin was scored in its
// place — and warns when the mean chosen length of the selected pairs grew
// by more than scoring.length_drift_warn since the previous iteration.
func (s *iterationState) logLength(ctx context.Context) error {
	fit, groups, err := store.IterationLength(ctx, s.o.pool, s.it.ID)
	if err != nil {
		return err
	}
	attrs := []any{"run", s.run.Name, "iteration", s.it.Name, "responses", fit.N, "length_control", string(fit.Control),
		"residual_applied", fit.Applied}
	if m := store.FindLengthGroup(groups, "selected_chosen").Mean; m != nil {
		attrs = append(attrs, "selected_chosen_tokens", *m)
	}
	if fit.Defined {
		s.o.log.InfoContext(ctx, "reward on length", append(attrs, "slope", fit.Slope, "r2", fit.R2)...)
	} else {
		level := slog.LevelInfo
		if fit.Control == "residual" {
			level = slog.LevelWarn // the control asked for could not act
		}
		s.o.log.Log(ctx, level, "reward on length: slope undefined", append(attrs, "note", fit.Note)...)
	}
	warn := s.cfg.Scoring.LengthDriftWarn
	if warn <= 0 || s.it.Ordinal == 0 {
		return nil
	}
	trend, err := store.RunLengths(ctx, s.o.pool, s.it.RunID)
	if err != nil {
		return err
	}
	if prev, cur, drift, ok := store.LengthDriftOf(trend, s.it.Name); ok && drift > warn {
		s.o.log.WarnContext(ctx, "chosen replies grew longer", "run", s.run.Name, "iteration", s.it.Name,
			"previous_iteration", prev.Name, "previous_selected_chosen_tokens", *prev.SelectedChosen,
			"selected_chosen_tokens", *cur.SelectedChosen, "growth", drift, "length_drift_warn", warn)
	}
	return nil
}
