package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/metric"
)

// LearningCheck is an iteration's learning check: the new policy its pairs
// are teacher-forced under, and how they are sampled and scored.
type LearningCheck struct {
	IterationID int64  `db:"iteration_id"`
	Model       string `db:"model"`
	// Implicit is the run's margin form, simpo or dpo; Beta scales dpo.
	Implicit string  `db:"implicit"`
	Beta     float64 `db:"beta"`
	// Sample is learning_check.sample, Seed learning_check.seed.
	Sample int   `db:"sample"`
	Seed   int64 `db:"seed"`
	// Pairs is the iteration's scored pool; Sampled the learn tasks made.
	Pairs   int `db:"pairs"`
	Sampled int `db:"sampled"`
	// Summary is set once every task settled; nil before.
	Summary    *metric.LearningSummary `db:"summary"`
	FinishedAt *time.Time              `db:"finished_at"`
}

// learnSampleSQL makes the learn tasks of a check: of the iteration's
// scored pool (pairs with a dpo_margin for the dpo form), m = min(sample,
// N) pairs, round(m·S/N) of the S selected and the rest of the others
// (half rounds up), each side taken in the order of md5('learn:<seed>:<pair
// id>') — a salt of its own, so the sample is not the random metric's top
// when the seeds agree.
const learnSampleSQL = `
WITH pool AS (
    SELECT prompt_id, selected,
           row_number() OVER (PARTITION BY selected ORDER BY md5('learn:' || $2::bigint::text || ':' || id::text), id) AS k,
           count(*) OVER () AS n,
           count(*) FILTER (WHERE selected) OVER () AS s
    FROM pairs
    WHERE iteration_id = $1 AND ($4 <> 'dpo' OR dpo_margin IS NOT NULL)
), quota AS (
    SELECT least($3::bigint, n) AS m, n, s FROM pool LIMIT 1
), take AS (
    SELECT floor(m::float8 * s / n + 0.5)::bigint AS q_sel, m - floor(m::float8 * s / n + 0.5)::bigint AS q_not FROM quota
)
INSERT INTO tasks (iteration_id, prompt_id, kind)
SELECT $1, p.prompt_id, 'learn'
FROM pool p CROSS JOIN take t
WHERE p.k <= CASE WHEN p.selected THEN t.q_sel ELSE t.q_not END
ON CONFLICT DO NOTHING`

// StartLearningCheck records an iteration's check and makes its learn
// tasks, in one transaction, and returns the check as stored. A check
// already started is returned as it is (its model and sample fixed), with
// no task added: a resumed stage redoes nothing.
func StartLearningCheck(ctx context.Context, db DBTX, c LearningCheck) (LearningCheck, error) {
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO learning_checks (iteration_id, model, implicit, beta, sample, seed, pairs, sampled)
			VALUES ($1, $2, $3, $4, $5, $6, 0, 0) ON CONFLICT DO NOTHING`,
			c.IterationID, c.Model, c.Implicit, c.Beta, c.Sample, c.Seed)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		made, err := tx.Exec(ctx, learnSampleSQL, c.IterationID, c.Seed, c.Sample, c.Implicit)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE learning_checks SET sampled = $2,
			pairs = (SELECT count(*) FROM pairs WHERE iteration_id = $1 AND ($3 <> 'dpo' OR dpo_margin IS NOT NULL))
			WHERE iteration_id = $1`, c.IterationID, made.RowsAffected(), c.Implicit)
		return err
	})
	if err != nil {
		return LearningCheck{}, fmt.Errorf("start the learning check of iteration %d: %w", c.IterationID, translate(err))
	}
	if err := analyzeTasks(ctx, db); err != nil {
		return LearningCheck{}, err
	}
	return GetLearningCheck(ctx, db, c.IterationID)
}

// GetLearningCheck reads an iteration's check; ErrNotFound when it has none.
func GetLearningCheck(ctx context.Context, db DBTX, iterationID int64) (LearningCheck, error) {
	rows, err := db.Query(ctx, `SELECT iteration_id, model, implicit, beta, sample, seed, pairs, sampled, summary, finished_at
		FROM learning_checks WHERE iteration_id = $1`, iterationID)
	if err != nil {
		return LearningCheck{}, fmt.Errorf("read the learning check of iteration %d: %w", iterationID, err)
	}
	c, err := pgx.CollectExactlyOneRow(rows, pgx.RowToStructByName[LearningCheck])
	if err != nil {
		return LearningCheck{}, fmt.Errorf("read the learning check of iteration %d: %w", iterationID, translate(err))
	}
	return c, nil
}

// SetLearningSummary stores a check's summary (again, when a resumed stage
// computes it anew: the same rows give the same summary).
func SetLearningSummary(ctx context.Context, db DBTX, iterationID int64, s metric.LearningSummary) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	_, err = db.Exec(ctx, `UPDATE learning_checks SET summary = $2, finished_at = coalesce(finished_at, now()) WHERE iteration_id = $1`, iterationID, b)
	if err != nil {
		return fmt.Errorf("store the learning summary of iteration %d: %w", iterationID, err)
	}
	return nil
}

// LearnReply is one reply of a pair as the learning check scores it again.
type LearnReply struct {
	Content      string
	Tokens       int
	FinishReason string
	// RefLogProb is the stored reference log-prob, nil without a reference.
	RefLogProb *float64
}

// LearnPair is what a learn task needs of its pair.
type LearnPair struct {
	PairID           int64
	Chosen, Rejected LearnReply
	ImplicitMargin   float64
	DPOMargin        *float64
	ExplicitMargin   float64
	Selected         bool
}

// ReadLearnPair reads the pair of an iteration's prompt with its replies.
func ReadLearnPair(ctx context.Context, db DBTX, iterationID, promptID int64) (LearnPair, error) {
	var p LearnPair
	err := db.QueryRow(ctx, `
		SELECT p.id, c.content, c.token_count, c.finish_reason, c.ref_logprob_sum,
		       x.content, x.token_count, x.finish_reason, x.ref_logprob_sum,
		       p.implicit_margin, p.dpo_margin, p.explicit_margin, p.selected
		FROM pairs p JOIN responses c ON c.id = p.chosen_id JOIN responses x ON x.id = p.rejected_id
		WHERE p.iteration_id = $1 AND p.prompt_id = $2`, iterationID, promptID).Scan(
		&p.PairID, &p.Chosen.Content, &p.Chosen.Tokens, &p.Chosen.FinishReason, &p.Chosen.RefLogProb,
		&p.Rejected.Content, &p.Rejected.Tokens, &p.Rejected.FinishReason, &p.Rejected.RefLogProb,
		&p.ImplicitMargin, &p.DPOMargin, &p.ExplicitMargin, &p.Selected)
	if err != nil {
		return p, fmt.Errorf("read the pair of prompt %d in iteration %d: %w", promptID, iterationID, translate(err))
	}
	return p, nil
}

// PairLearning is one pair's result of a learning check.
type PairLearning struct {
	PairID        int64
	Model         string
	ChosenLogProb float64
	// RejectedLogProb is log π_new(y_l|x).
	RejectedLogProb float64
	// ImplicitMargin is the new margin; OldImplicitMargin the stored one.
	ImplicitMargin, OldImplicitMargin float64
}

// CompleteLearn stores a pair's result and settles its learn task in one
// transaction; a result already stored (a redelivery, two workers racing)
// is kept as it is, so a pair is never stored twice.
func CompleteLearn(ctx context.Context, db DBTX, k TaskKey, attempts int, r PairLearning) error {
	err := inTx(ctx, db, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO pair_learning (iteration_id, pair_id, model, chosen_logps, rejected_logps,
				implicit_margin, old_implicit_margin, delta)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $6::float8 - $7::float8) ON CONFLICT DO NOTHING`,
			k.IterationID, r.PairID, r.Model, r.ChosenLogProb, r.RejectedLogProb, r.ImplicitMargin, r.OldImplicitMargin)
		if err != nil {
			return err
		}
		return FinishTask(ctx, tx, k, "checked", attempts)
	})
	if err != nil {
		return fmt.Errorf("complete %s: %w", k, translate(err))
	}
	return nil
}

// LearningRows reads a check's results with what the summary needs of
// their pairs, by pair id; randomSeed is the selection seed of the random
// metric's score.
func LearningRows(ctx context.Context, db DBTX, iterationID, randomSeed int64) ([]metric.LearningRow, error) {
	rows, err := db.Query(ctx, `SELECT p.id, p.selected, p.explicit_margin, l.old_implicit_margin, l.implicit_margin,
			l.delta, coalesce(p.alignment_potential, 'NaN')
		FROM pair_learning l JOIN pairs p ON p.id = l.pair_id
		WHERE l.iteration_id = $1 ORDER BY p.id`, iterationID)
	if err != nil {
		return nil, fmt.Errorf("read the learning check of iteration %d: %w", iterationID, err)
	}
	var out []metric.LearningRow
	var r metric.LearningRow
	_, err = pgx.ForEachRow(rows, []any{&r.PairID, &r.Selected, &r.ExplicitMargin, &r.OldImplicit, &r.NewImplicit, &r.Delta, &r.AlignmentPotential}, func() error {
		r.Random = metric.RandomScore(randomSeed, r.PairID)
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the learning check of iteration %d: %w", iterationID, err)
	}
	return out, nil
}
