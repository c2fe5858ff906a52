package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
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
// The z-scores take the same float64 operations as metric.Moments: the
// deviations from the pool's minimum (exact for near-equal values), their
// mean, then the root mean square of the deviations from that mean (not
// stddev_pop, whose rounding makes ten copies of 0.1 spread by 1.1e-17); a
// quantity whose minimum equals its maximum has std 0 and z-term 0.
// The random metric reads 13 hex digits of md5('<seed>:<id>') as a fraction
// of 16^13, exactly as metric.RandomScore does.
//
// The rows are written back by their ctid, in ctid order: each heap page
// is fetched once and updated in place, instead of a second scan of the
// table and updates in rank order, which dirty pages at random and, for a
// table larger than shared_buffers, write each page out many times over
// (a million pairs: about 6 s instead of 10). Reading ctids and updating by
// them is safe because nothing else updates pairs and ScorePairs holds the
// iteration's scoring lock, so the ctids stay current until the update.
const scoreSQL = `
WITH base AS (
    SELECT id, ctid AS tid, explicit_margin AS mex,
           abs(CASE WHEN $6 = 'dpo' THEN dpo_margin ELSE implicit_margin END) AS mim
    FROM pairs
    WHERE iteration_id = $1 AND ($6 <> 'dpo' OR dpo_margin IS NOT NULL)
), magnitude AS (
    SELECT max(abs(mex)) AS ma_ex, max(mim) AS ma_im FROM base
), scale AS MATERIALIZED (
    -- MATERIALIZED: computed once. Inlined, the planner put these
    -- expressions (a numeric logarithm each) in the projection of every
    -- pair, which made a million-pair scoring 2.5 times as long.
    -- As metric.momentsOf: a power of two that brings the largest
    -- magnitude to about 1, so sums of huge finite margins cannot overflow
    -- (PostgreSQL would raise "value out of range"). Exact: it only shifts
    -- exponents. A non-finite magnitude (rejected after the update) or 0
    -- keeps 1.
    SELECT CASE WHEN ma_ex > 0 AND ma_ex < 'Infinity'
                THEN power(2::float8, least(-(floor(log(2, ma_ex::numeric)) + 1), 1023)) ELSE 1 END AS s_ex,
           CASE WHEN ma_im > 0 AND ma_im < 'Infinity'
                THEN power(2::float8, least(-(floor(log(2, ma_im::numeric)) + 1), 1023)) ELSE 1 END AS s_im
    FROM magnitude
), scaled AS (
    SELECT b.id, b.tid, b.mex * c.s_ex AS mex, b.mim * c.s_im AS mim FROM base b CROSS JOIN scale c
), lims AS (
    SELECT min(mex) AS lo_ex, max(mex) AS hi_ex, min(mim) AS lo_im, max(mim) AS hi_im, count(*) AS n
    FROM scaled
), means AS (
    SELECT avg(b.mex - l.lo_ex) AS mean_ex, avg(b.mim - l.lo_im) AS mean_im
    FROM scaled b CROSS JOIN lims l
), sq AS (
    SELECT sum((b.mex - l.lo_ex - m.mean_ex) * (b.mex - l.lo_ex - m.mean_ex)) AS ss_ex,
           sum((b.mim - l.lo_im - m.mean_im) * (b.mim - l.lo_im - m.mean_im)) AS ss_im
    FROM scaled b CROSS JOIN lims l CROSS JOIN means m
), stats AS (
    SELECT l.lo_ex, l.lo_im, l.n, m.mean_ex, m.mean_im,
           CASE WHEN l.hi_ex > l.lo_ex THEN sqrt(q.ss_ex / l.n) ELSE 0 END AS sd_ex,
           CASE WHEN l.hi_im > l.lo_im THEN sqrt(q.ss_im / l.n) ELSE 0 END AS sd_im
    FROM lims l CROSS JOIN means m CROSS JOIN sq q
), z AS (
    SELECT b.id, b.tid,
           CASE WHEN s.sd_ex > 0 THEN (b.mex - s.lo_ex - s.mean_ex) / s.sd_ex ELSE 0 END AS zex,
           CASE WHEN s.sd_im > 0 THEN (b.mim - s.lo_im - s.mean_im) / s.sd_im ELSE 0 END AS zim,
           s.n
    FROM scaled b CROSS JOIN stats s
), scored AS (
    SELECT id, tid, zex, zim, zex - $3::float8 * zim AS ap, n,
           CASE $2
               WHEN 'alignment_potential' THEN zex - $3::float8 * zim
               WHEN 'explicit_margin' THEN zex
               WHEN 'implicit_margin' THEN -zim
               ELSE ('x' || substr(md5($5::bigint::text || ':' || id::text), 1, 13))::bit(52)::bigint
                    / 4503599627370496.0::float8
           END AS score
    FROM z
), ranked AS (
    SELECT id, tid, zex, zim, ap, score,
           row_number() OVER (ORDER BY score DESC, id ASC) AS rnk,
           CASE WHEN $4::int > 0 THEN least($4::int, n) ELSE floor($7::float8 * n + 1e-9) END AS k
    FROM scored
)`

// ScorePairs scores and selects an iteration's pairs in the database, never
// loading them into Go, and returns how many were selected.
func ScorePairs(ctx context.Context, db DBTX, iterationID int64, spec ScoreSpec, target Target) (int64, error) {
	var update string
	switch target {
	case TrainSelection:
		update = `
UPDATE pairs p SET explicit_z = r.zex, implicit_z = r.zim, alignment_potential = r.ap,
       metric_score = r.score, rank = r.rnk, selected = r.rnk <= r.k
FROM (SELECT * FROM ranked ORDER BY tid) r WHERE p.ctid = r.tid`
	case EvolveSelection:
		update = `
UPDATE pairs p SET evolve_score = r.score, evolve_rank = r.rnk, evolve_selected = r.rnk <= r.k
FROM (SELECT * FROM ranked ORDER BY tid) r WHERE p.ctid = r.tid`
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
		tag, err := tx.Exec(ctx, scoreSQL+update, iterationID, spec.Metric, spec.ImplicitWeight, spec.Count, spec.Seed, spec.Implicit, spec.Ratio)
		if err != nil {
			return err
		}
		written := tag.RowsAffected()
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
		// them from the update's RETURNING rows, a third slower. The check
		// is one aggregate over the pairs, not a CTE read three times: 0.3–0.4 s
		// for a million pairs instead of 0.7–1.0 s.
		if target == TrainSelection {
			if _, err := tx.Exec(ctx, `DELETE FROM top_pairs WHERE iteration_id = $1`, iterationID); err != nil {
				return err
			}
		}
		var scored int64
		var bad struct {
			id       *int64
			mex, mim *float64
		}
		err = tx.QueryRow(ctx, `
			WITH a AS (
			    SELECT count(*) FILTER (WHERE pooled) AS scored, count(*) FILTER (WHERE sel) AS selected,
			           min(id) FILTER (WHERE pooled AND (abs(mex) = 'Infinity' OR mex = 'NaN'
			                                             OR abs(mim) = 'Infinity' OR mim = 'NaN')) AS bad,
			           array_agg(id ORDER BY rank) FILTER (WHERE $3 AND sel AND rank <= $4) AS top_ids,
			           array_agg(rank ORDER BY rank) FILTER (WHERE $3 AND sel AND rank <= $4) AS top_ranks
			    FROM (SELECT id, rank, `+col+` AS sel, ($2 <> 'dpo' OR dpo_margin IS NOT NULL) AS pooled,
			                 explicit_margin AS mex, CASE WHEN $2 = 'dpo' THEN dpo_margin ELSE implicit_margin END AS mim
			          FROM pairs WHERE iteration_id = $1) p
			), top AS (
			    INSERT INTO top_pairs (iteration_id, rank, pair_id)
			    SELECT $1, t.rank, t.id FROM a CROSS JOIN unnest(a.top_ids, a.top_ranks) AS t(id, rank)
			)
			SELECT a.scored, a.selected, a.bad, b.explicit_margin, CASE WHEN $2 = 'dpo' THEN b.dpo_margin ELSE b.implicit_margin END
			FROM a LEFT JOIN pairs b ON b.id = a.bad`,
			iterationID, spec.Implicit, target == TrainSelection, TopPairs).Scan(&scored, &selected, &bad.id, &bad.mex, &bad.mim)
		if err != nil {
			return err
		}
		if bad.id != nil {
			// As metric.NewScorer: a non-finite margin has no z-score (in SQL
			// it would make NaN, which sorts above every number).
			return fmt.Errorf("pair %d: margins must be finite, got explicit %g and implicit %g; rolled back", *bad.id, *bad.mex, *bad.mim)
		}
		if written != scored {
			return fmt.Errorf("wrote %d of the iteration's %d pairs; rolled back", written, scored)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("score pairs of iteration %d by %s: %w", iterationID, spec.Metric, err)
	}
	return selected, nil
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
