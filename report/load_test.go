package report_test

import (
	"context"
	"encoding/json"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestLoadCountsInSQLWhatGoWouldCount: on an iteration of 2,940 pairs
// (more than the scatter draws), with rewards on bin edges, values not
// exact in binary, a missing reward and a missing alignment potential,
// Load's histograms are the ones NewHistogram counts from every pair read
// into Go, its scatter is every second pair by id, and its cut-off is the
// lowest alignment potential selected.
func TestLoadCountsInSQLWhatGoWouldCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	d := config.Defaults()
	s := config.Settings{Name: "iter0", PolicyModel: "policy-0", Generation: d.Generation, Scoring: d.Scoring, Selection: d.Selection, Evolve: d.Evolve}
	settings, err := json.Marshal(s)
	require.NoError(t, err)
	its := storetest.SeedRun(t, pool, storetest.RunSpec{Name: "demo", Iterations: [][]byte{settings}, Prompts: 3000, Samples: 3, ResponseChars: 8})
	_, err = pool.Exec(ctx, `
		WITH c AS (SELECT chosen_id AS id, row_number() OVER (ORDER BY id) AS n FROM pairs WHERE iteration_id = $1)
		UPDATE responses r SET reward = CASE c.n WHEN 1 THEN NULL WHEN 2 THEN 0.1 WHEN 3 THEN 0.2 WHEN 4 THEN 0.1 + 0.2
		                                         WHEN 5 THEN 0.3 WHEN 6 THEN 0.5 WHEN 7 THEN 4.5 ELSE r.reward END
		FROM c WHERE r.id = c.id AND c.n <= 7`, its[0])
	require.NoError(t, err)
	// Rewards are written once, with the pair; this test rewrites them, so
	// it writes the pairs' copies too.
	_, err = pool.Exec(ctx, `UPDATE pairs p SET chosen_reward = c.reward FROM responses c WHERE c.id = p.chosen_id`)
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `UPDATE pairs SET alignment_potential = NULL
		WHERE id = (SELECT max(id) FROM pairs WHERE iteration_id = $1 AND NOT selected)`, its[0])
	require.NoError(t, err)

	got, err := report.Load(ctx, pool, "demo", "iter0")
	require.NoError(t, err)

	rows, err := pool.Query(ctx, `
		SELECT p.id, coalesce(c.reward, 'NaN'), coalesce(x.reward, 'NaN'), coalesce(p.alignment_potential, 'NaN'), p.selected
		FROM pairs p JOIN responses c ON c.id = p.chosen_id JOIN responses x ON x.id = p.rejected_id
		WHERE p.iteration_id = $1 ORDER BY p.id`, its[0])
	require.NoError(t, err)
	var ids []int64
	var chosen, rejected, apSel, apRest []float64
	cutoff := math.Inf(1)
	for rows.Next() {
		var id int64
		var c, x, ap float64
		var sel bool
		require.NoError(t, rows.Scan(&id, &c, &x, &ap, &sel))
		ids, chosen, rejected = append(ids, id), append(chosen, c), append(rejected, x)
		if sel {
			apSel = append(apSel, ap)
			cutoff = math.Min(cutoff, ap)
		} else {
			apRest = append(apRest, ap)
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 2940, len(ids)) // 3000 prompts, 1 in 100 failed and 1 in 100 without a pair

	require.Equal(t, report.NewHistogram(rejected, chosen), got.Rewards)
	require.Equal(t, report.NewHistogram(apRest, apSel), got.AP)
	require.EqualValues(t, 2940, got.Summary.Pairs)
	require.EqualValues(t, len(apSel), got.Summary.Selected)
	require.NotNil(t, got.Cutoff)
	require.Equal(t, cutoff, *got.Cutoff)

	// ⌈2940/2000⌉ = 2: pairs 1, 3, 5, … by id, 1470 of them.
	require.Equal(t, 2, got.ScatterStride)
	require.Equal(t, 1470, len(got.Pairs))
	for i, p := range got.Pairs {
		require.Equal(t, ids[2*i], p.ID)
		if i > 0 { // pair 1's chosen reward is missing: NaN, checked below
			require.Equal(t, chosen[2*i], p.ChosenReward)
		}
	}
	require.True(t, math.IsNaN(got.Pairs[0].ChosenReward), "the missing reward reads as NaN")
	require.Len(t, got.Top, 5)
	for i, p := range got.Top {
		require.Equal(t, i+1, p.Rank)
	}
}
