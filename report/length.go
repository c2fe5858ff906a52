package report

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
)

// Length is the report's reply length section: the iteration's fit of
// reward on length, its length statistics, the replies the scatter draws
// and the run's trend.
type Length struct {
	// Scored is false until the iteration's training scoring stored its
	// fit; the rest is then empty.
	Scored bool
	Fit    store.LengthFit
	Groups []store.LengthGroup
	// Replies are every Stride-th response with a finite reward (by id),
	// at most maxScatterPoints; Chosen the chosen replies of the selected
	// pairs, sampled the same way.
	Replies, Chosen []point
	Stride          int
	// Trend is the run's iterations that have a fit, by ordinal.
	Trend []store.RunLength
}

// loadLength reads the length section and adds its warnings: chosen
// replies of the selected pairs longer by more than
// scoring.length_drift_warn than in the previous iteration, and a residual
// control that could not act.
func (d *Data) loadLength(ctx context.Context, db store.DBTX, id int64) error {
	fit, groups, err := store.IterationLength(ctx, db, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	l := &d.Length
	l.Scored, l.Fit, l.Groups = true, fit, groups
	all := store.FindLengthGroup(groups, "all").Replies
	l.Stride = max(1, int((all+maxScatterPoints-1)/maxScatterPoints))
	sample := func(query string, args ...any) ([]point, error) {
		rows, err := db.Query(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(row pgx.CollectableRow) (point, error) {
			var pt point
			var tokens int32
			err := row.Scan(&tokens, &pt.y)
			pt.x = float64(tokens)
			pt.title = fmt.Sprintf("%d tokens, reward %s", tokens, num(pt.y))
			return pt, err
		})
	}
	if l.Replies, err = sample(`
		SELECT token_count, reward FROM (
		    SELECT token_count, reward, row_number() OVER (ORDER BY id) - 1 AS i
		    FROM responses WHERE iteration_id = $1 AND abs(reward) < 'Infinity') r
		WHERE i % $2 = 0`, id, l.Stride); err != nil {
		return err
	}
	selStride := max(1, int((store.FindLengthGroup(groups, "selected_chosen").Replies+maxScatterPoints-1)/maxScatterPoints))
	if l.Chosen, err = sample(`
		SELECT chosen_tokens, chosen_reward FROM (
		    SELECT chosen_tokens, chosen_reward, row_number() OVER (ORDER BY id) - 1 AS i
		    FROM pairs WHERE iteration_id = $1 AND selected AND abs(chosen_reward) < 'Infinity') p
		WHERE i % $2 = 0`, id, selStride); err != nil {
		return err
	}
	runID, err := runOf(ctx, db, id)
	if err != nil {
		return err
	}
	if l.Trend, err = store.RunLengths(ctx, db, runID); err != nil {
		return err
	}
	warn := d.Settings.Scoring.LengthDriftWarn
	if prev, cur, drift, ok := store.LengthDriftOf(l.Trend, d.Iteration); ok && warn > 0 && drift > warn {
		d.Warnings = append(d.Warnings, fmt.Sprintf(
			"Chosen replies grew longer: the selected pairs' chosen replies average %.1f tokens, %.0f%% more than the %.1f of iteration %s (scoring.length_drift_warn %g).",
			*cur.SelectedChosen, 100*drift, *prev.SelectedChosen, prev.Name, warn))
	}
	if fit.Control == metric.LengthResidual && !fit.Applied {
		d.Warnings = append(d.Warnings, "scoring.length_control is residual, but the length fit is undefined ("+fit.Note+").")
	}
	return nil
}

func runOf(ctx context.Context, db store.DBTX, iterationID int64) (int64, error) {
	var runID int64
	err := db.QueryRow(ctx, `SELECT run_id FROM iterations WHERE id = $1`, iterationID).Scan(&runID)
	return runID, err
}

func lengthFigure(d *Data) Figure {
	l := d.Length
	fig := Figure{ID: "length", Title: "Reward against reply length"}
	label := "Scatter of reward against reply length in tokens, with the least-squares fit"
	if !l.Scored {
		fig.Caption = "The iteration has not been scored yet."
		fig.SVG = emptyChart(label, "not scored yet")
		return fig
	}
	mean := func(g string) string {
		if m := store.FindLengthGroup(l.Groups, g).Mean; m != nil {
			return fmt.Sprintf("%.1f", *m)
		}
		return "–"
	}
	fig.Caption = fmt.Sprintf("Mean tokens: all %d responses %s, chosen %s, rejected %s; selected pairs: chosen %s, rejected %s. ",
		l.Fit.N, mean("all"), mean("chosen"), mean("rejected"), mean("selected_chosen"), mean("selected_rejected"))
	var lines []fitLine
	if l.Fit.Defined {
		fig.Caption += fmt.Sprintf("Fit over all responses: reward = %s + %s · tokens, R² = %s. ", num(l.Fit.Intercept), num(l.Fit.Slope), num(l.Fit.R2))
		lines = append(lines, fitLine{label: "fit", color: colCutoff, slope: l.Fit.Slope, intercept: l.Fit.Intercept})
	} else {
		fig.Caption += "No fit: " + l.Fit.Note + ". "
	}
	switch {
	case l.Fit.Applied:
		fig.Caption += "scoring.length_control residual: the selection scored explicit margins with this length effect removed."
	case l.Fit.Control == metric.LengthResidual:
		fig.Caption += "scoring.length_control residual, but the raw margins were scored."
	default:
		fig.Caption += "scoring.length_control none: the raw explicit margins were scored."
	}
	if l.Stride > 1 {
		fig.Caption += fmt.Sprintf(" Showing one response in %d.", l.Stride)
	}
	fig.SVG = scatterChart(label, "reply length (tokens)", "reward", []scatterSeries{
		{label: "responses", color: colNotSelected, radius: 2.5, points: l.Replies},
		{label: "chosen, selected", color: colSelected, radius: 3, points: l.Chosen},
	}, lines...)
	return fig
}

func trendLengthFigure(d *Data) Figure {
	var cats []string
	var all, chosen, sel []float64
	bold := -1
	val := func(v *float64) float64 {
		if v == nil {
			return math.NaN()
		}
		return *v
	}
	for i, t := range d.Length.Trend {
		cats = append(cats, t.Name)
		all, chosen, sel = append(all, val(t.All)), append(chosen, val(t.Chosen)), append(sel, val(t.SelectedChosen))
		if t.Name == d.Iteration {
			bold = i
		}
	}
	caption := fmt.Sprintf("Mean tokens per reply in every iteration of run %s scored so far; this iteration in bold.", d.Run)
	if w := d.Settings.Scoring.LengthDriftWarn; w > 0 {
		caption += fmt.Sprintf(" A warning is shown when the selected chosen length grows by more than %g%% from one iteration to the next.", 100*w)
	}
	return Figure{
		ID: "trend-length", Title: "Chosen reply length, by iteration", Caption: caption,
		SVG: lineChart("Line chart of mean reply length in tokens per iteration", "mean tokens", cats, bold, []lineSeries{
			{label: "all responses", color: colNotSelected, values: all},
			{label: "chosen", color: colChosen, values: chosen},
			{label: "chosen, selected", color: colSelected, values: sel},
		}),
	}
}
