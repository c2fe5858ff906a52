package store_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// reply is one sampled response of a lengthPrompt.
type reply struct {
	tokens int
	reward *float64 // nil: the reward call gave none
}

// lengthPrompt is a prompt with its replies and, when chosen >= 0, its pair
// (explicit margin from the two rewards, implicit margin mim).
type lengthPrompt struct {
	replies          []reply
	chosen, rejected int
	mim              float64
}

func r(tokens int, reward float64) reply { return reply{tokens: tokens, reward: &reward} }

// seedLength stores the prompts of an iteration with their responses and
// pairs, and returns the pair ids in prompt order (0 for no pair).
func seedLength(t *testing.T, pool *pgxpool.Pool, it int64, ps []lengthPrompt) []int64 {
	t.Helper()
	ctx := context.Background()
	ids := make([]int64, len(ps))
	for i, p := range ps {
		var promptID int64
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO prompts (hash, messages, source)
			VALUES ($1, '[{"role":"user","content":"q"}]', 'test') RETURNING id`,
			fmt.Sprintf("len-%d-%d", it, i)).Scan(&promptID))
		_, err := pool.Exec(ctx, `INSERT INTO iteration_prompts VALUES ($1, $2)`, it, promptID)
		require.NoError(t, err)
		respIDs := make([]int64, len(p.replies))
		for j, rep := range p.replies {
			require.NoError(t, pool.QueryRow(ctx, `INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward)
				VALUES ($1, $2, $3, 'reply', $4, -1, $5) RETURNING id`, it, promptID, j, rep.tokens, rep.reward).Scan(&respIDs[j]))
		}
		if p.chosen < 0 {
			continue
		}
		mex := *p.replies[p.chosen].reward - *p.replies[p.rejected].reward
		require.NoError(t, pool.QueryRow(ctx, `INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`, it, promptID, respIDs[p.chosen], respIDs[p.rejected], mex, p.mim).Scan(&ids[i]))
	}
	return ids
}

// pairRow is what a training scoring writes to a pair, as the tests read it.
type pairRow struct {
	residual *float64
	ez, ap   float64
	rank     int
	selected bool
}

func readPairRows(t *testing.T, pool *pgxpool.Pool, ids []int64) []pairRow {
	t.Helper()
	out := make([]pairRow, len(ids))
	for i, id := range ids {
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT residual_margin, explicit_z, alignment_potential, rank, selected
			FROM pairs WHERE id = $1`, id).Scan(&out[i].residual, &out[i].ez, &out[i].ap, &out[i].rank, &out[i].selected))
	}
	return out
}

// handPrompts is the pool worked by hand in TestLengthFitByHand.
//
// Rewarded replies (tokens, reward): (4, 6), (1, 1), (2, 3), (3, 2); a fifth
// of 100 tokens has no reward and is left out of the fit.
//
//	x̄ = 10/4 = 2.5, ȳ = 12/4 = 3
//	dx = −1.5, −0.5, 0.5, 1.5 (ordered by tokens 1..4); dy = −2, 0, −1, 3
//	Sxx = 2.25 + 0.25 + 0.25 + 2.25 = 5
//	Sxy = 3 + 0 − 0.5 + 4.5 = 7        → slope = 7/5 = 1.4
//	intercept = 3 − 1.4·2.5 = −0.5
//	Syy = 4 + 0 + 1 + 9 = 14            → R² = 49/(5·14) = 0.7
//
// Pair A: chosen (4, 6) vs rejected (1, 1): m_ex = 5, residual
// 5 − 1.4·(4 − 1) = 0.8. Pair B: chosen (2, 3) vs rejected (3, 2): m_ex = 1,
// residual 1 − 1.4·(2 − 3) = 2.4. By the raw margin A is the better pair,
// by the residual B. Implicit margins are equal (z = 0), so with two pairs
// z(m_ex) is ±1: AP of A is +1 raw, −1 residual.
func handPrompts() []lengthPrompt {
	return []lengthPrompt{
		{replies: []reply{r(4, 6), r(1, 1), {tokens: 100}}, chosen: 0, rejected: 1, mim: 0.5},
		{replies: []reply{r(2, 3), r(3, 2)}, chosen: 0, rejected: 1, mim: -0.5},
	}
}

var oneOfTwo = store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.5, Seed: 42}

func TestLengthFitByHand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	ids := seedLength(t, pool, it, handPrompts())

	for _, tc := range []struct {
		control        string
		apA, apB       float64
		selectA, apply bool
	}{
		{control: "none", apA: 1, apB: -1, selectA: true},
		{control: "residual", apA: -1, apB: 1, selectA: false, apply: true},
	} {
		spec := oneOfTwo
		spec.LengthControl = tc.control
		n, err := store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
		require.NoError(t, err)
		require.EqualValues(t, 1, n)

		fit, groups, err := store.IterationLength(ctx, pool, it)
		require.NoError(t, err)
		require.True(t, fit.Defined)
		require.Equal(t, 4, fit.N)
		require.InDelta(t, 1.4, fit.Slope, 1e-12)
		require.InDelta(t, -0.5, fit.Intercept, 1e-12)
		require.InDelta(t, 0.7, fit.R2, 1e-12)
		require.Equal(t, metric.LengthControl(tc.control), fit.Control)
		require.Equal(t, tc.apply, fit.Applied)
		require.Empty(t, fit.Note)

		rows := readPairRows(t, pool, ids)
		require.InDelta(t, 0.8, *rows[0].residual, 1e-12, "stored whatever the control")
		require.InDelta(t, 2.4, *rows[1].residual, 1e-12)
		require.InDelta(t, tc.apA, rows[0].ap, 1e-12)
		require.InDelta(t, tc.apB, rows[1].ap, 1e-12)
		require.Equal(t, tc.selectA, rows[0].selected, tc.control)
		require.Equal(t, !tc.selectA, rows[1].selected, tc.control)

		// Lengths: all rewarded replies 1, 2, 3, 4 (mean 2.5, population
		// sd √1.25); chosen 4, 2; rejected 1, 3; selected: A's or B's.
		all := store.FindLengthGroup(groups, "all")
		require.EqualValues(t, 4, all.Replies)
		require.InDelta(t, 2.5, *all.Mean, 1e-12)
		require.InDelta(t, math.Sqrt(1.25), *all.SD, 1e-12)
		require.EqualValues(t, 1, *all.Min)
		require.EqualValues(t, 4, *all.Max)
		chosen := store.FindLengthGroup(groups, "chosen")
		require.InDelta(t, 3, *chosen.Mean, 1e-12)
		require.InDelta(t, 1, *chosen.SD, 1e-12)
		require.InDelta(t, 2, *store.FindLengthGroup(groups, "rejected").Mean, 1e-12)
		selChosen, selRejected := store.FindLengthGroup(groups, "selected_chosen"), store.FindLengthGroup(groups, "selected_rejected")
		require.EqualValues(t, 1, selChosen.Replies)
		wantChosen, wantRejected := 2.0, 3.0 // B
		if tc.selectA {
			wantChosen, wantRejected = 4, 1
		}
		require.Equal(t, wantChosen, *selChosen.Mean, tc.control)
		require.Equal(t, wantRejected, *selRejected.Mean, tc.control)
		require.Equal(t, 0.0, *selChosen.SD)
	}

	// The view has one row per group with the fit beside it.
	var groups int
	var slope float64
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*), min(slope) FROM length_details WHERE iteration_id = $1`, it).Scan(&groups, &slope))
	require.Equal(t, 5, groups)
	require.InDelta(t, 1.4, slope, 1e-12)
}

// TestLengthFitSameLength: every reply of the iteration has 7 tokens, so
// the slope is undefined. residual falls back to the raw margin — the
// selection is the one none makes — and the stored fit says why.
func TestLengthFitSameLength(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	ids := seedLength(t, pool, it, []lengthPrompt{
		{replies: []reply{r(7, 6), r(7, 1)}, chosen: 0, rejected: 1},
		{replies: []reply{r(7, 3), r(7, 2), r(7, 2.5)}, chosen: 0, rejected: 1},
		{replies: []reply{r(7, 0.1), r(7, 0.1)}, chosen: -1}, // no pair: tied rewards
	})
	var before []pairRow
	for _, control := range []string{"none", "residual"} {
		spec := oneOfTwo
		spec.LengthControl = control
		_, err := store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
		require.NoError(t, err)
		fit, groups, err := store.IterationLength(ctx, pool, it)
		require.NoError(t, err)
		require.False(t, fit.Defined)
		require.False(t, fit.Applied, "nothing to remove")
		require.Equal(t, 7, fit.N)
		require.Equal(t, "every reply has the same length (7 tokens): slope undefined, raw margin scored", fit.Note)
		require.Equal(t, 0.0, *store.FindLengthGroup(groups, "all").SD)
		var slope, r2 *float64
		require.NoError(t, pool.QueryRow(ctx, `SELECT slope, r2 FROM length_fits WHERE iteration_id = $1`, it).Scan(&slope, &r2))
		require.Nil(t, slope)
		require.Nil(t, r2)
		rows := readPairRows(t, pool, ids[:2])
		for _, row := range rows {
			require.Nil(t, row.residual)
		}
		require.True(t, rows[0].selected)
		if before != nil {
			require.Equal(t, before, rows, "residual without a slope scores the raw margin")
		}
		before = rows
	}
}

// TestLengthControlRescoring: scoring the same iteration again stores the
// same rows (idempotent), and a schedule whose length_control changed
// between runs rescores it the new way; changed back, it gives the first
// selection again.
func TestLengthControlRescoring(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	ids := seedLength(t, pool, it, handPrompts())
	snapshot := func() ([]pairRow, store.LengthFit, []store.LengthGroup) {
		fit, groups, err := store.IterationLength(ctx, pool, it)
		require.NoError(t, err)
		return readPairRows(t, pool, ids), fit, groups
	}
	score := func(control string) {
		spec := oneOfTwo
		spec.LengthControl = control
		_, err := store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
		require.NoError(t, err)
	}
	score("none")
	rows1, fit1, groups1 := snapshot()
	score("none")
	rows2, fit2, groups2 := snapshot()
	require.Equal(t, rows1, rows2)
	require.Equal(t, fit1, fit2)
	require.Equal(t, groups1, groups2)

	score("residual")
	rows3, fit3, _ := snapshot()
	require.True(t, fit3.Applied)
	require.NotEqual(t, rows1[0].selected, rows3[0].selected)
	require.Equal(t, rows1[0].residual, rows3[0].residual)

	// The evolve scoring of the iteration takes the stored fit.
	_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "explicit_margin", Ratio: 0.5, LengthControl: "residual"}, store.EvolveSelection)
	require.NoError(t, err)
	var evolveB bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT evolve_selected FROM pairs WHERE id = $1`, ids[1]).Scan(&evolveB))
	require.True(t, evolveB, "B has the larger residual margin")

	score("none")
	rows4, fit4, _ := snapshot()
	require.Equal(t, rows1, rows4)
	require.Equal(t, metric.LengthNone, fit4.Control)
	require.False(t, fit4.Applied)
}

// TestLengthSQLAgreesWithGo scores random iterations with ties everywhere
// (few distinct lengths and rewards, so equal residual margins are common,
// and with explicit_margin, tied scores)
// in SQL and with the Go mirror: metric.FitLength over the responses,
// metric.ResidualMargin, metric.Score and Select. The fit agrees to a
// relative 1e-9 (PostgreSQL's one-pass regression aggregates against the
// two-pass deviations from the mean); when Go's slope is the SQL one, the
// residual margins, z-scores and ranks agree exactly.
func TestLengthSQLAgreesWithGo(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	rng := rand.New(rand.NewPCG(23, 1))
	for trial := range 6 {
		it := newIterationNamed(t, pool, trial)
		offset := []float64{0, 1e6, -3.5, 0.1}[trial%4] // far from 0: the sums must not lose the spread
		var ps []lengthPrompt
		var tokens []int
		var rewards []float64
		for range 40 + rng.IntN(40) {
			p := lengthPrompt{chosen: -1}
			for range 2 + rng.IntN(3) {
				rep := r(5*(1+rng.IntN(4)), offset+float64(rng.IntN(6))/4)
				p.replies = append(p.replies, rep)
				tokens, rewards = append(tokens, rep.tokens), append(rewards, *rep.reward)
			}
			best, worst := 0, 0
			for j, rep := range p.replies {
				if *rep.reward > *p.replies[best].reward {
					best = j
				}
				if *rep.reward < *p.replies[worst].reward {
					worst = j
				}
			}
			if best != worst {
				p.chosen, p.rejected, p.mim = best, worst, rng.NormFloat64()
			}
			ps = append(ps, p)
		}
		ids := seedLength(t, pool, it, ps)
		// explicit_margin ranks equal residual margins as exact ties (by
		// pair id); alignment_potential adds continuous implicit margins.
		ms := metric.Spec{Metric: []metric.Metric{metric.ExplicitMargin, metric.AlignmentPotential}[trial%2],
			ImplicitWeight: 1, Ratio: 0.4, Seed: 42}
		spec := store.ScoreSpec{Metric: string(ms.Metric), ImplicitWeight: 1, Ratio: 0.4, Seed: 42, LengthControl: "residual"}
		_, err := store.ScorePairs(ctx, pool, it, spec, store.TrainSelection)
		require.NoError(t, err)
		stored, _, err := store.IterationLength(ctx, pool, it)
		require.NoError(t, err)

		requireGoFit(t, tokens, rewards, stored, "trial %d (offset %g)", trial, offset)

		var items []metric.Item
		var pairIDs []int64
		for i, p := range ps {
			if p.chosen < 0 {
				continue
			}
			mex := *p.replies[p.chosen].reward - *p.replies[p.rejected].reward
			items = append(items, metric.Item{ID: ids[i], ImplicitMargin: p.mim,
				ExplicitMargin: metric.ResidualMargin(mex, stored.Slope, p.replies[p.chosen].tokens, p.replies[p.rejected].tokens)})
			pairIDs = append(pairIDs, ids[i])
		}
		ties := map[float64]int{}
		for _, it := range items {
			ties[it.ExplicitMargin]++
		}
		require.Less(t, len(ties), len(items), "trial %d has no tied residual margins", trial)
		scored, err := metric.Score(items, ms)
		require.NoError(t, err)
		require.NoError(t, metric.Select(scored, ms))
		rows := readPairRows(t, pool, pairIDs)
		for i, s := range scored {
			require.Equal(t, items[i].ExplicitMargin, *rows[i].residual, "pair %d", s.ID)
			require.InDelta(t, s.ExplicitZ, rows[i].ez, 1e-12, "pair %d", s.ID)
			require.Equal(t, s.Rank, rows[i].rank, "pair %d", s.ID)
			require.Equal(t, s.Selected, rows[i].selected, "pair %d", s.ID)
		}
	}
}

// TestLengthFitHugeAndNonFiniteRewards: rewards near the float64 limit,
// whose sums overflow PostgreSQL's regression aggregates unscaled, are
// fitted scaled by a power of two and agree with Go; a response whose
// reward is infinite or NaN is left out of the fit.
func TestLengthFitHugeAndNonFiniteRewards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it := newIterationNamed(t, pool, 0)
	tokens := []int{1, 2, 3, 4, 6}
	rewards := []float64{1.7e308, -1.2e308, 9e307, 1e308, -1.6e308}
	var replies []reply
	for i := range tokens {
		replies = append(replies, r(tokens[i], rewards[i]))
	}
	replies = append(replies, r(50, math.Inf(1)), r(60, math.NaN()))
	seedLength(t, pool, it, []lengthPrompt{{replies: replies, chosen: -1}})
	_, err := store.ScorePairs(ctx, pool, it, oneOfTwo, store.TrainSelection)
	require.NoError(t, err)
	got, groups, err := store.IterationLength(ctx, pool, it)
	require.NoError(t, err)
	require.EqualValues(t, 6, *store.FindLengthGroup(groups, "all").Max, "the infinite and NaN rewards are not fitted")
	requireGoFit(t, tokens, rewards, got, "near the float64 limit")
}

// requireGoFit requires the stored fit to be metric.FitLength's of the
// replies, to a relative 1e-9.
func requireGoFit(t *testing.T, tokens []int, rewards []float64, stored store.LengthFit, msg string, args ...any) {
	t.Helper()
	want, err := metric.FitLength(tokens, rewards)
	require.NoError(t, err)
	require.True(t, want.Defined && stored.Defined)
	require.Equal(t, want.N, stored.N)
	for _, q := range [][2]float64{{want.Slope, stored.Slope}, {want.Intercept, stored.Intercept}, {want.R2, stored.R2}} {
		require.InEpsilon(t, q[0], q[1], 1e-9, append([]any{msg}, args...)...)
	}
}

// BenchmarkScorePairsSQL1MResidual is BenchmarkScorePairsSQL1M with replies
// of 1–50 tokens and scoring.length_control residual: the length fit over
// the 2,000,000 responses, the residual margins and the length statistics
// on top of the scoring.
func BenchmarkScorePairsSQL1MResidual(b *testing.B) {
	ctx := context.Background()
	pool, it := seedMillionPairs(b)
	_, err := pool.Exec(ctx, `UPDATE responses SET token_count = 1 + id % 50 WHERE iteration_id = $1`, it)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, `UPDATE pairs p SET chosen_tokens = c.token_count, rejected_tokens = x.token_count
		FROM responses c, responses x WHERE c.id = p.chosen_id AND x.id = p.rejected_id`)
	require.NoError(b, err)
	_, err = pool.Exec(ctx, `VACUUM ANALYZE`)
	require.NoError(b, err)
	b.ResetTimer()
	for range b.N {
		_, err := store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4,
			LengthControl: "residual"}, store.TrainSelection)
		require.NoError(b, err)
	}
}
