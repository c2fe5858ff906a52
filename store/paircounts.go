package store

import (
	"context"
	"fmt"
)

// PairCounts tallies an iteration's pairs.
type PairCounts struct {
	// Pairs is how many prompts formed a pair.
	Pairs int64
	// WithDPO is how many of them have a dpo_margin (a reference scored
	// both responses).
	WithDPO int64
	// Selected is how many are selected for training.
	Selected int64
}

// CountPairs tallies an iteration's pairs.
func CountPairs(ctx context.Context, db DBTX, iterationID int64) (PairCounts, error) {
	var c PairCounts
	err := db.QueryRow(ctx, `SELECT count(*), count(dpo_margin), count(*) FILTER (WHERE selected)
		FROM pairs WHERE iteration_id = $1`, iterationID).Scan(&c.Pairs, &c.WithDPO, &c.Selected)
	if err != nil {
		return c, fmt.Errorf("count pairs of iteration %d: %w", iterationID, err)
	}
	return c, nil
}
