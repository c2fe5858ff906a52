package report

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
)

// Learning is the iteration's learning check as the report shows it: the
// stored summary and the checked pairs (every one up to maxScatterPoints,
// else every Stride-th by pair id).
type Learning struct {
	Summary metric.LearningSummary
	Points  []LearningPoint
	Stride  int
}

// LearningPoint is one checked pair: its AP before training and Δ.
type LearningPoint struct {
	PairID             int64
	AlignmentPotential float64
	Delta              float64
	Selected           bool
}

// loadLearning reads the learning check once it has a summary; Learning
// stays nil without one (the check is off, skipped or not finished).
func (d *Data) loadLearning(ctx context.Context, db store.DBTX, id int64) error {
	chk, err := store.GetLearningCheck(ctx, db, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && chk.Summary == nil) {
		return nil
	}
	if err != nil {
		return err
	}
	l := &Learning{Summary: *chk.Summary, Stride: max(1, (chk.Summary.Checked+maxScatterPoints-1)/maxScatterPoints)}
	rows, err := db.Query(ctx, `SELECT id, alignment_potential, delta, selected FROM (
			SELECT p.id, coalesce(p.alignment_potential, 'NaN') AS alignment_potential, l.delta, p.selected,
			       row_number() OVER (ORDER BY p.id) AS k
			FROM pair_learning l JOIN pairs p ON p.id = l.pair_id WHERE l.iteration_id = $1) s
		WHERE (k - 1) % $2 = 0 ORDER BY id`, id, l.Stride)
	if err != nil {
		return err
	}
	var pt LearningPoint
	_, err = pgx.ForEachRow(rows, []any{&pt.PairID, &pt.AlignmentPotential, &pt.Delta, &pt.Selected}, func() error {
		l.Points = append(l.Points, pt)
		return nil
	})
	if err != nil {
		return err
	}
	d.Learning = l
	return nil
}

// learningFigures is the learning check's chart, none without a check.
func learningFigures(d *Data) []Figure {
	l := d.Learning
	if l == nil {
		return nil
	}
	var sel, rest []point
	for _, p := range l.Points {
		pt := point{x: p.AlignmentPotential, y: p.Delta,
			title: fmt.Sprintf("pair %d: AP %s, Δ %s", p.PairID, num(p.AlignmentPotential), num(p.Delta))}
		if p.Selected {
			sel = append(sel, pt)
		} else {
			rest = append(rest, pt)
		}
	}
	s := l.Summary
	caption := fmt.Sprintf("Each dot is a pair teacher-forced under %s after training (%d of %d pairs checked); blue ones were selected, so trained on. "+
		"Mean Δ: selected %s, not selected %s. Selected pairs whose implicit margin favours the chosen reply: %s before, %s after. "+
		"Spearman's ρ of Δ with each metric's score (95%% bootstrap interval): %s.",
		s.Model, s.Checked, s.Pairs, num(orNaN(s.Selected.MeanDelta)), num(orNaN(s.NotSelected.MeanDelta)),
		share(s.Selected.LearnedBefore), share(s.Selected.Learned), spearmanText(s))
	if l.Stride > 1 {
		caption += fmt.Sprintf(" Showing one pair in %d, by id.", l.Stride)
	}
	return []Figure{{
		ID: "learning", Title: "Δ implicit margin against alignment potential", Caption: caption,
		SVG: scatterChart("Scatter of the change of each checked pair's implicit margin after training against its alignment potential, selected pairs highlighted",
			"alignment potential (before training)", "Δ implicit margin (new − old)", selectedSeries(rest, sel)),
	}}
}

func share(v *float64) string {
	if v == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100**v)
}

func spearmanText(s metric.LearningSummary) string {
	var parts []string
	for _, m := range metric.LearningMetrics {
		c := s.Spearman[m]
		v := "undefined"
		if c.Rho != nil {
			v = num(*c.Rho)
			if c.Interval != nil {
				v += fmt.Sprintf(" [%s, %s]", num(c.Interval.Lo), num(c.Interval.Hi))
			}
		}
		parts = append(parts, fmt.Sprintf("%s %s", m, v))
	}
	return strings.Join(parts, "; ")
}
