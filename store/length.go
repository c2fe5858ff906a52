package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/selfplay/selfplay/metric"
)

// LengthFit is an iteration's stored fit of reward on reply length
// (length_fits) and how the last training scoring used it.
type LengthFit struct {
	metric.LengthFit
	// Control is the scoring.length_control the selection was scored with.
	Control metric.LengthControl
	// Applied says the residual margin scored the selection: Control is
	// residual and the fit is defined.
	Applied bool
	// Note says why the fit is undefined ("" when it is defined).
	Note string
}

// LengthGroup is the reply length statistics of one group of an iteration
// (length_stats).
type LengthGroup struct {
	// Group: all (every rewarded response), chosen, rejected,
	// selected_chosen, selected_rejected.
	Group string
	// Replies counts the group; the rest are nil when it is 0.
	Replies  int64
	Mean, SD *float64 // tokens; SD is the population standard deviation
	Min, Max *int32
}

// LengthGroups lists the groups of length_stats in order.
var LengthGroups = []string{"all", "chosen", "rejected", "selected_chosen", "selected_rejected"}

// fitLengthSQL fits reward on token_count over the iteration's responses
// with a finite reward, with PostgreSQL's regression aggregates
// (Youngs–Cramer, one pass), and takes the statistics of their lengths.
// Whether the lengths (or the rewards) are all equal is read from the
// extremes, never from a rounded variance, as metric.FitLength does. $2
// scales the rewards by a power of two (exact): 1 for ordinary rewards, and
// for rewards whose sums overflow, metric.Scale of the largest.
const fitLengthSQL = `
SELECT count(*), min(token_count), max(token_count), avg(token_count)::float8,
       stddev_pop(token_count::float8),
       CASE WHEN max(token_count) > min(token_count) THEN regr_slope(reward * $2, token_count) / $2 END,
       CASE WHEN max(token_count) > min(token_count) THEN regr_intercept(reward * $2, token_count) / $2 END,
       CASE WHEN max(token_count) = min(token_count) THEN NULL
            WHEN max(reward) = min(reward) THEN 0
            ELSE least(1, regr_r2(reward * $2, token_count)) END
FROM responses WHERE iteration_id = $1 AND abs(reward) < 'Infinity'`

// fitLength computes the iteration's length fit and the statistics of
// every response's length (group all), over the responses with a finite
// reward.
func fitLength(ctx context.Context, tx pgx.Tx, iterationID int64) (metric.LengthFit, LengthGroup, error) {
	var fit metric.LengthFit
	all := LengthGroup{Group: "all"}
	var n int64
	var slope, intercept, r2 *float64
	query := func(scale float64) error {
		// In a savepoint: an overflow must leave the transaction usable.
		return pgx.BeginFunc(ctx, tx, func(sp pgx.Tx) error {
			return sp.QueryRow(ctx, fitLengthSQL, iterationID, scale).Scan(&n, &all.Min, &all.Max, &all.Mean, &all.SD,
				&slope, &intercept, &r2)
		})
	}
	err := query(1)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "22003" { // numeric_value_out_of_range
		// Rewards near the float64 limit: their sums overflow unscaled.
		var maxAbs float64
		if err = tx.QueryRow(ctx, `SELECT max(abs(reward)) FROM responses
			WHERE iteration_id = $1 AND abs(reward) < 'Infinity'`, iterationID).Scan(&maxAbs); err == nil {
			err = query(metric.Scale(maxAbs))
		}
	}
	if err != nil {
		return fit, all, fmt.Errorf("fit reward on length: %w", err)
	}
	fit.N, all.Replies = int(n), n
	if slope != nil {
		fit.Defined, fit.Slope, fit.Intercept, fit.R2 = true, *slope, deref(intercept), deref(r2)
	}
	return fit, all, nil
}

// lengthNote says why a fit is undefined.
func lengthNote(fit metric.LengthFit, all LengthGroup) string {
	switch {
	case fit.Defined:
		return ""
	case fit.N == 0:
		return "no response with a finite reward: slope undefined, raw margin scored"
	case fit.N == 1:
		return "one response with a finite reward: slope undefined, raw margin scored"
	default:
		unit := "tokens"
		if *all.Min == 1 {
			unit = "token"
		}
		return fmt.Sprintf("every reply has the same length (%d %s): slope undefined, raw margin scored", *all.Min, unit)
	}
}

// pairLengthColumns are the aggregates, over the iteration's pairs, of the
// chosen and rejected lengths of all pairs and of the selected ones, in the
// order of LengthGroups[1:], named len_0, len_1, …; and the list of those
// names. ScorePairs reads them in the pass that checks its writes.
func pairLengthColumns() (aggregates, names string) {
	i := 0
	for _, g := range []struct{ col, filter string }{
		{"chosen_tokens", "true"}, {"rejected_tokens", "true"},
		{"chosen_tokens", "selected"}, {"rejected_tokens", "selected"},
	} {
		for _, agg := range []string{"count(*)", "avg(%[1]s)", "stddev_pop(%[1]s::float8)", "min(%[1]s)", "max(%[1]s)"} {
			aggregates += fmt.Sprintf(", "+agg+" FILTER (WHERE %[2]s)::%[3]s AS len_%[4]d", g.col, g.filter,
				map[bool]string{true: "float8", false: "bigint"}[strings.Contains(agg, "avg") || strings.Contains(agg, "stddev")], i)
			names += fmt.Sprintf(", len_%d", i)
			i++
		}
	}
	return aggregates, names
}

// scanTargets are the destinations of pairLengthColumns in gs (LengthGroups[1:]).
func scanTargets(gs []LengthGroup) []any {
	var out []any
	for i := range gs {
		g := &gs[i]
		out = append(out, &g.Replies, &g.Mean, &g.SD, &g.Min, &g.Max)
	}
	return out
}

// writeLength stores an iteration's fit and length statistics.
func writeLength(ctx context.Context, tx pgx.Tx, iterationID int64, fit LengthFit, groups []LengthGroup) error {
	var slope, intercept, r2 *float64
	if fit.Defined {
		slope, intercept, r2 = &fit.Slope, &fit.Intercept, &fit.R2
	}
	_, err := tx.Exec(ctx, `
		INSERT INTO length_fits (iteration_id, responses, slope, intercept, r2, control, applied, note)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (iteration_id) DO UPDATE SET responses = EXCLUDED.responses, slope = EXCLUDED.slope,
		    intercept = EXCLUDED.intercept, r2 = EXCLUDED.r2, control = EXCLUDED.control,
		    applied = EXCLUDED.applied, note = EXCLUDED.note, fitted_at = now()`,
		iterationID, fit.N, slope, intercept, r2, string(fit.Control), fit.Applied, fit.Note)
	if err != nil {
		return fmt.Errorf("store the length fit: %w", err)
	}
	b := &pgx.Batch{}
	for _, g := range groups {
		b.Queue(`
			INSERT INTO length_stats (iteration_id, reply_group, replies, mean_tokens, sd_tokens, min_tokens, max_tokens)
			VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (iteration_id, reply_group) DO UPDATE SET replies = EXCLUDED.replies,
			    mean_tokens = EXCLUDED.mean_tokens, sd_tokens = EXCLUDED.sd_tokens,
			    min_tokens = EXCLUDED.min_tokens, max_tokens = EXCLUDED.max_tokens`,
			iterationID, g.Group, g.Replies, g.Mean, g.SD, g.Min, g.Max)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store the length statistics: %w", err)
	}
	return nil
}

// IterationLength reads an iteration's stored length fit and statistics
// (groups in LengthGroups order, those stored). ErrNotFound when the
// iteration has not been scored for training yet.
func IterationLength(ctx context.Context, db DBTX, iterationID int64) (LengthFit, []LengthGroup, error) {
	var fit LengthFit
	var slope, intercept, r2 *float64
	var control string
	var n int64
	err := db.QueryRow(ctx, `SELECT responses, slope, intercept, r2, control, applied, note
		FROM length_fits WHERE iteration_id = $1`, iterationID).Scan(&n, &slope, &intercept, &r2, &control, &fit.Applied, &fit.Note)
	if errors.Is(err, pgx.ErrNoRows) {
		return fit, nil, ErrNotFound
	}
	if err != nil {
		return fit, nil, fmt.Errorf("read the length fit of iteration %d: %w", iterationID, err)
	}
	fit.N, fit.Control = int(n), metric.LengthControl(control)
	if slope != nil {
		fit.Defined, fit.Slope, fit.Intercept, fit.R2 = true, *slope, deref(intercept), deref(r2)
	}
	rows, err := db.Query(ctx, `SELECT reply_group, replies, mean_tokens, sd_tokens, min_tokens, max_tokens
		FROM length_stats WHERE iteration_id = $1
		ORDER BY array_position('{all,chosen,rejected,selected_chosen,selected_rejected}'::text[], reply_group)`, iterationID)
	if err != nil {
		return fit, nil, fmt.Errorf("read the length statistics of iteration %d: %w", iterationID, err)
	}
	groups, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (LengthGroup, error) {
		var g LengthGroup
		return g, row.Scan(&g.Group, &g.Replies, &g.Mean, &g.SD, &g.Min, &g.Max)
	})
	if err != nil {
		return fit, nil, fmt.Errorf("read the length statistics of iteration %d: %w", iterationID, err)
	}
	return fit, groups, nil
}

// FindLengthGroup returns the named group of gs, or a zero group of that name.
func FindLengthGroup(gs []LengthGroup, name string) LengthGroup {
	for _, g := range gs {
		if g.Group == name {
			return g
		}
	}
	return LengthGroup{Group: name}
}

// RunLength is one iteration's length summary in a run's trend.
type RunLength struct {
	Ordinal int
	Name    string
	// Mean tokens of every rewarded response, of the chosen replies of
	// all pairs, and of the chosen and rejected replies of the selected
	// pairs; nil for an empty group.
	All, Chosen, SelectedChosen, SelectedRejected *float64
	// Slope and R2 of the fit; nil when it is undefined.
	Slope, R2 *float64
	// Applied says the residual margin scored the selection.
	Applied bool
}

// RunLengths lists the length summaries of a run's iterations that were
// scored for training, by ordinal.
func RunLengths(ctx context.Context, db DBTX, runID int64) ([]RunLength, error) {
	rows, err := db.Query(ctx, `
		SELECT i.ordinal, i.name,
		       (SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND reply_group = 'all'),
		       (SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND reply_group = 'chosen'),
		       (SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND reply_group = 'selected_chosen'),
		       (SELECT mean_tokens FROM length_stats s WHERE s.iteration_id = i.id AND reply_group = 'selected_rejected'),
		       f.slope, f.r2, f.applied
		FROM iterations i JOIN length_fits f ON f.iteration_id = i.id
		WHERE i.run_id = $1 ORDER BY i.ordinal`, runID)
	if err != nil {
		return nil, fmt.Errorf("read the length trend of run %d: %w", runID, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (RunLength, error) {
		var l RunLength
		return l, row.Scan(&l.Ordinal, &l.Name, &l.All, &l.Chosen, &l.SelectedChosen, &l.SelectedRejected, &l.Slope, &l.R2, &l.Applied)
	})
	if err != nil {
		return nil, fmt.Errorf("read the length trend of run %d: %w", runID, err)
	}
	return out, nil
}

// LengthDriftOf finds, in a run's trend, the iteration named name and the
// one before it (by ordinal, when it was scored too) and returns their mean
// chosen lengths of the selected pairs and metric.LengthDrift of the two.
// ok is false when either is missing.
func LengthDriftOf(trend []RunLength, name string) (prev, cur RunLength, drift float64, ok bool) {
	for i, l := range trend {
		if l.Name != name {
			continue
		}
		if i == 0 || trend[i-1].Ordinal != l.Ordinal-1 || trend[i-1].SelectedChosen == nil || l.SelectedChosen == nil {
			return RunLength{}, l, 0, false
		}
		prev = trend[i-1]
		return prev, l, metric.LengthDrift(*prev.SelectedChosen, *l.SelectedChosen), true
	}
	return RunLength{}, RunLength{}, 0, false
}
