package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/metric"
)

// ScoreSpec says how to score and select an iteration's pairs in SQL. It
// mirrors metric.Spec so the Go and SQL implementations agree.
type ScoreSpec struct {
	// Metric: alignment_potential, explicit_margin, implicit_margin, random.
	Metric string
	// ImplicitWeight is w in AP = z(m_ex) − w·z(|m_im|).
	ImplicitWeight float64
	// Ratio keeps floor(Ratio·N + 1e-9) pairs when Count is 0.
	Ratio float64
	// Count keeps min(Count, N) pairs when positive.
	Count int
	// Seed of the random metric.
	Seed int64
	// Implicit is "simpo" (implicit_margin) or "dpo" (dpo_margin); with dpo,
	// pairs without a dpo_margin are left out of the pool.
	Implicit string
	// LengthControl is "none" ("" too: the explicit margin as stored) or
	// "residual": the explicit margin with the iteration's length effect
	// removed (residual_margin), when its length fit is defined.
	LengthControl string
}

// Target names the columns a scoring pass writes.
type Target int

const (
	// TrainSelection writes explicit_z, implicit_z, alignment_potential,
	// metric_score, rank and selected.
	TrainSelection Target = iota
	// EvolveSelection writes evolve_score, evolve_rank and evolve_selected.
	EvolveSelection
)

// scoreSQL computes, in one statement, population z-scores of the
// explicit margin and of |implicit margin| over the iteration's pairs, the
// metric's score, the rank (score descending, ties by pair id) and the
// selection flag, and writes them.
//
// The moments take one pass over the pool, and the z-scores and the ranks
// one more: the count, the extremes, and PostgreSQL's avg and var_pop (one
// Youngs–Cramer state, shared by the two) of the deviations from the
// pivot, the pool's pair of the smallest prompt id (found by index).
// Deviations from an element of the pool are exact for near-equal values
// (Sterbenz), as metric.Moments' deviations from the minimum are, so the
// two agree to within rounding; a quantity whose minimum equals its
// maximum has std 0 and z-term 0 (stddev_pop of ten copies of 0.1 is
// 1.1e-17, not 0). Taken as metric.Moments takes them (the extremes, the
// mean of the deviations from the minimum, then their squares: four passes
// over the pool), the moments made a million-pair scoring 1.18 times as
// long as with PostgreSQL's stddev_pop of the margins. The random metric
// reads 13 hex digits of md5('<seed>:<id>') as a fraction of 16^13,
// exactly as metric.RandomScore does.
//
// $8 and $9 scale the two quantities by powers of two (exact). The
// statement writes nothing unless every scaled magnitude is at most 2^199
// and every non-zero spread at least 2^-300: then no sum can overflow and
// no square of a deviation that matters can underflow. Deviations of
// larger values are left out of the sums, so that they never raise an
// overflow error. Ordinary margins pass with 1; for the others ScorePairs
// scales by metric.Scale of the largest finite magnitude, as
// metric.Moments does, and they pass. A margin that is not finite never
// passes.
//
// Each pair's z-scores are computed twice: in scored, for the ranks, and
// again from the row the update writes, for the values it stores, so that
// the two sorts of the whole pool carry only id, ctid, score and rank (the
// statement alone on a million pairs, alternately: 3% faster than carrying
// the z-scores and the AP through them, 4 runs each). Both come from mexOf,
// mimOf and zOf: the same float64 operations on the same values, equal bit
// for bit.
//
// The rows are written back by their ctid, in ctid order: each heap page
// is fetched once and updated in place, instead of a second scan of the
// table and updates in rank order, which dirty pages at random and, for a
// table larger than shared_buffers, write each page out many times over
// (a million pairs: about 6 s instead of 10). Reading ctids and updating by
// them is safe because nothing else updates pairs and ScorePairs holds the
// iteration's scoring lock, so the ctids stay current until the update.
var scoreSQL = `
WITH base AS (
    SELECT id, ctid AS tid, ` + mexOf("q") + ` AS mex, ` + mimOf("q") + ` AS mim
    FROM pairs q
    WHERE iteration_id = $1 AND (NOT $6 OR dpo_margin IS NOT NULL)
), pivot AS MATERIALIZED (
    -- An element of the pool, or 0 when it is too large to subtract from
    -- (the pool is then out of range anyway).
    SELECT CASE WHEN abs(mex) <= 2::float8 ^ 199 THEN mex ELSE 0 END AS p_ex,
           CASE WHEN mim <= 2::float8 ^ 199 THEN mim ELSE 0 END AS p_im
    FROM (SELECT ` + mexOf("q") + ` AS mex, ` + mimOf("q") + ` AS mim
          FROM pairs q
          WHERE iteration_id = $1 AND (NOT $6 OR dpo_margin IS NOT NULL)
          ORDER BY iteration_id, prompt_id LIMIT 1) p
), agg AS MATERIALIZED (
    SELECT count(*) AS n, min(d.mex) AS lo_ex, max(d.mex) AS hi_ex, min(d.mim) AS lo_im, max(d.mim) AS hi_im,
           avg(d.d_ex) AS mean_ex, var_pop(d.d_ex) AS var_ex, avg(d.d_im) AS mean_im, var_pop(d.d_im) AS var_im,
           min(d.p_ex) AS p_ex, min(d.p_im) AS p_im
    FROM (SELECT b.mex, b.mim, v.p_ex, v.p_im,
                 CASE WHEN abs(b.mex) <= 2::float8 ^ 199 THEN b.mex - v.p_ex END AS d_ex,
                 CASE WHEN b.mim <= 2::float8 ^ 199 THEN b.mim - v.p_im END AS d_im
          FROM base b CROSS JOIN pivot v) d
), stats AS MATERIALIZED (
    SELECT p_ex, p_im, mean_ex, mean_im,
           CASE WHEN hi_ex > lo_ex THEN sqrt(var_ex) ELSE 0 END AS sd_ex,
           CASE WHEN hi_im > lo_im THEN sqrt(var_im) ELSE 0 END AS sd_im,
           CASE WHEN $4::int > 0 THEN least($4::int, n) ELSE floor($7::float8 * n + 1e-9) END AS k,
           -- NaN is above every number in PostgreSQL: it fails the first test.
           greatest(hi_ex, -lo_ex, hi_im) <= 2::float8 ^ 199
               AND (hi_ex = lo_ex OR hi_ex - lo_ex >= 2::float8 ^ -300)
               AND (hi_im = lo_im OR hi_im - lo_im >= 2::float8 ^ -300) AS in_range
    FROM agg
), scored AS (
    SELECT b.id, b.tid,
           CASE $2
               WHEN 'alignment_potential' THEN ` + zOf("b.mex", "ex") + ` - $3::float8 * ` + zOf("b.mim", "im") + `
               WHEN 'explicit_margin' THEN ` + zOf("b.mex", "ex") + `
               WHEN 'implicit_margin' THEN -` + zOf("b.mim", "im") + `
               ELSE ('x' || substr(md5($5::bigint::text || ':' || b.id::text), 1, 13))::bit(52)::bigint
                    / 4503599627370496.0::float8
           END AS score
    FROM base b CROSS JOIN stats s
    WHERE s.in_range
), ranked AS (
    SELECT id, tid, score, row_number() OVER (ORDER BY score DESC, id ASC) AS rnk
    FROM scored
)`

// mexOf is the scaled explicit margin of the pairs row t: the residual
// margin when $10 (the length control applies), with slope $11.
func mexOf(t string) string { return "(" + exOf(t, "$10", "$11") + ") * $8::float8" }

// exOf is the explicit margin of the pairs row t: when the boolean
// parameter applied holds, with slope·(chosen − rejected tokens)
// subtracted, the same float64 operations as metric.ResidualMargin.
func exOf(t, applied, slope string) string {
	return "CASE WHEN " + applied + " THEN " + residualOf(t, slope) + " ELSE " + t + ".explicit_margin END"
}

// residualOf is the residual margin of the pairs row t with slope slope.
func residualOf(t, slope string) string {
	return t + ".explicit_margin - " + slope + "::float8 * (" + t + ".chosen_tokens - " + t + ".rejected_tokens)"
}

// mimOf is the scaled |implicit margin| (or |dpo margin|) of the pairs row t.
func mimOf(t string) string {
	return "abs(CASE WHEN $6 THEN " + t + ".dpo_margin ELSE " + t + ".implicit_margin END) * $9::float8"
}

// zOf is the z-score of the scaled quantity v against the stats row s; q
// is ex or im.
func zOf(v, q string) string {
	return "CASE WHEN s.sd_" + q + " > 0 THEN (" + v + " - s.p_" + q + " - s.mean_" + q + ") / s.sd_" + q + " ELSE 0 END"
}

// The updates that follow scoreSQL, one per Target.
var (
	trainUpdateSQL = `
UPDATE pairs p SET residual_margin = CASE WHEN $12 THEN ` + residualOf("p", "$11") + ` END,
       explicit_z = ` + zOf(mexOf("p"), "ex") + `,
       implicit_z = ` + zOf(mimOf("p"), "im") + `,
       alignment_potential = ` + zOf(mexOf("p"), "ex") + ` - $3::float8 * ` + zOf(mimOf("p"), "im") + `,
       metric_score = r.score, rank = r.rnk, selected = r.rnk <= s.k
FROM (SELECT * FROM ranked ORDER BY tid) r CROSS JOIN stats s WHERE p.ctid = r.tid`
	evolveUpdateSQL = `
UPDATE pairs p SET evolve_score = r.score, evolve_rank = r.rnk, evolve_selected = r.rnk <= s.k
FROM (SELECT * FROM ranked ORDER BY tid) r CROSS JOIN stats s WHERE p.ctid = r.tid`
)

// ScorePairs scores and selects an iteration's pairs in the database, never
// loading them into Go, and returns how many were selected.
//
// A training scoring also fits reward on reply length over the iteration's
// responses and stores the fit with the length statistics of its replies
// (length_fits, length_stats, pairs.residual_margin; see docs/length.md).
// With spec.LengthControl residual and a defined fit, the explicit margin
// scored is the residual margin, in both targets; an evolve scoring takes
// the fit its iteration's training scoring stored.
func ScorePairs(ctx context.Context, db DBTX, iterationID int64, spec ScoreSpec, target Target) (int64, error) {
	var update string
	switch target {
	case TrainSelection:
		update = trainUpdateSQL
	case EvolveSelection:
		update = evolveUpdateSQL
	default:
		return 0, fmt.Errorf("unknown scoring target %d", target)
	}
	if spec.Implicit == "" {
		spec.Implicit = "simpo"
	}
	col := "selected"
	if target == EvolveSelection {
		col = "evolve_selected"
	}
	var selected int64
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		// One scoring of an iteration at a time: the update addresses rows
		// by the ctids its own statement read.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(7323, hashtext($1::bigint::text))`, iterationID); err != nil {
			return err
		}
		// The window sort and the ctid sort over a whole iteration want more
		// memory than the default 4MB, or they spill to disk. The join is a
		// nested loop of ctid lookups in ctid order, never a hash or merge
		// join that scans the whole table a second time. The settings are
		// put back afterwards, for a caller's transaction that goes on.
		var workMem, hashJoin, mergeJoin string
		err := tx.QueryRow(ctx, `SELECT current_setting('work_mem'), current_setting('enable_hashjoin'),
			current_setting('enable_mergejoin')`).Scan(&workMem, &hashJoin, &mergeJoin)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `SET LOCAL work_mem = '256MB'; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off`)
		if err != nil {
			return err
		}
		dpo := spec.Implicit == "dpo"
		fit, all, err := scoringFit(ctx, tx, iterationID, target)
		if err != nil {
			return err
		}
		fit.Control = metric.LengthNone
		if spec.LengthControl == string(metric.LengthResidual) {
			fit.Control = metric.LengthResidual
		}
		fit.Applied = fit.Control == metric.LengthResidual && fit.Defined
		score := func(scaleEx, scaleIm float64) (int64, error) {
			args := []any{iterationID, spec.Metric, spec.ImplicitWeight, spec.Count,
				spec.Seed, dpo, spec.Ratio, scaleEx, scaleIm, fit.Applied, fit.Slope}
			if target == TrainSelection {
				args = append(args, fit.Defined)
			}
			tag, err := tx.Exec(ctx, scoreSQL+update, args...)
			return tag.RowsAffected(), err
		}
		written, err := score(1, 1)
		if err != nil {
			return err
		}
		if written == 0 {
			// Nothing in range unscaled: the pool is empty, has a margin that
			// is not finite, or needs scaling. One read of the pool tells
			// which, and gives the largest finite magnitudes to scale by, as
			// metric.Moments does. Ordinary margins never come here.
			var maxEx, maxIm *float64
			var bad struct {
				id       *int64
				mex, mim *float64
			}
			err := tx.QueryRow(ctx, `
				WITH p AS (
				    SELECT id, `+exOf("q", "$3", "$4")+` AS mex, CASE WHEN $2 THEN dpo_margin ELSE implicit_margin END AS mim
				    FROM pairs q WHERE iteration_id = $1 AND (NOT $2 OR dpo_margin IS NOT NULL)
				), a AS (
				    SELECT max(abs(mex)) FILTER (WHERE abs(mex) < 'Infinity') AS max_ex,
				           max(abs(mim)) FILTER (WHERE abs(mim) < 'Infinity') AS max_im,
				           min(id) FILTER (WHERE NOT (abs(mex) < 'Infinity' AND abs(mim) < 'Infinity')) AS bad
				    FROM p
				)
				SELECT a.max_ex, a.max_im, a.bad, p.mex, p.mim FROM a LEFT JOIN p ON p.id = a.bad`,
				iterationID, dpo, fit.Applied, fit.Slope).Scan(&maxEx, &maxIm, &bad.id, &bad.mex, &bad.mim)
			if err != nil {
				return err
			}
			if bad.id != nil {
				// As metric.NewScorer: a non-finite margin has no z-score (in
				// SQL it would make NaN, which sorts above every number).
				return fmt.Errorf("pair %d: margins must be finite, got explicit %g and implicit %g; rolled back",
					*bad.id, *bad.mex, *bad.mim)
			}
			if maxEx != nil || maxIm != nil {
				if written, err = score(metric.Scale(deref(maxEx)), metric.Scale(deref(maxIm))); err != nil {
					return err
				}
			}
		}
		_, err = tx.Exec(ctx, `SELECT set_config('work_mem', $1, true), set_config('enable_hashjoin', $2, true),
			set_config('enable_mergejoin', $3, true)`, workMem, hashJoin, mergeJoin)
		if err != nil {
			return err
		}
		// The first TopPairs ranks of the selection go to top_pairs, where
		// top-N queries find them by index. They are taken in the one
		// aggregate pass of the check below, which reads the iteration's
		// pairs anyway: each read of rows this transaction just rewrote is
		// slow (every row's writer is looked up, no hint bits yet), and a
		// read of its own made scoring a million pairs 9% slower; taking
		// them from the update's RETURNING rows, a third slower.
		if target == TrainSelection {
			if _, err := tx.Exec(ctx, `DELETE FROM top_pairs WHERE iteration_id = $1`, iterationID); err != nil {
				return err
			}
		}
		// The pass also takes the length statistics of the pairs' replies,
		// all and selected (columns 3 on; used after a training scoring).
		var scored int64
		groups := make([]LengthGroup, len(LengthGroups))
		for i, g := range LengthGroups {
			groups[i].Group = g
		}
		groups[0] = all
		lengthAggregates, lengthNames := pairLengthColumns()
		err = tx.QueryRow(ctx, `
			WITH a AS (
			    SELECT count(*) FILTER (WHERE NOT $2 OR dpo_margin IS NOT NULL) AS scored,
			           count(*) FILTER (WHERE `+col+`) AS selected,
			           array_agg(id ORDER BY rank) FILTER (WHERE $3 AND `+col+` AND rank <= $4) AS top_ids
			           `+lengthAggregates+`
			    FROM pairs WHERE iteration_id = $1
			), top AS (
			    -- The selected ranks are 1, 2, … k: the i-th id has rank i.
			    INSERT INTO top_pairs (iteration_id, rank, pair_id)
			    SELECT $1, t.rank, t.id FROM a CROSS JOIN unnest(a.top_ids) WITH ORDINALITY AS t(id, rank)
			)
			SELECT scored, selected`+lengthNames+` FROM a`,
			iterationID, dpo, target == TrainSelection, TopPairs).Scan(
			append([]any{&scored, &selected}, scanTargets(groups[1:])...)...)
		if err != nil {
			return err
		}
		if written != scored {
			return fmt.Errorf("wrote %d of the iteration's %d pairs; rolled back", written, scored)
		}
		if target == TrainSelection {
			fit.Note = lengthNote(fit.LengthFit, all)
			return writeLength(ctx, tx, iterationID, fit, groups)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("score pairs of iteration %d by %s: %w", iterationID, spec.Metric, err)
	}
	return selected, nil
}

// scoringFit is the length fit a scoring uses: fitted afresh for a
// training scoring, which stores it; an evolve scoring takes the stored one
// (the training scoring of the iteration came first), or fits it when there
// is none. all is the length statistics of every rewarded response (zero
// when the fit was read).
func scoringFit(ctx context.Context, tx pgx.Tx, iterationID int64, target Target) (LengthFit, LengthGroup, error) {
	if target == EvolveSelection {
		stored, _, err := IterationLength(ctx, tx, iterationID)
		if err == nil {
			return stored, LengthGroup{Group: "all"}, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return LengthFit{}, LengthGroup{}, err
		}
	}
	fit, all, err := fitLength(ctx, tx, iterationID)
	return LengthFit{LengthFit: fit}, all, err
}

func deref(f *float64) float64 {
	if f == nil {
		return 0
	}
	return *f
}

// TopPairs is how many of the best-ranked selected pairs of an iteration
// scoring also writes to top_pairs, where top-N queries find them by index.
const TopPairs = 10000

// inTx runs f in db when it is a transaction already, else in a new one.
func inTx(ctx context.Context, db DBTX, f func(pgx.Tx) error) error {
	if tx, ok := db.(pgx.Tx); ok {
		return f(tx)
	}
	begin, ok := db.(interface {
		Begin(context.Context) (pgx.Tx, error)
	})
	if !ok {
		return fmt.Errorf("need a pool, a connection or a transaction")
	}
	return pgx.BeginFunc(ctx, begin, f)
}
