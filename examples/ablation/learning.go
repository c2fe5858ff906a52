package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/metric"
)

// The learning check in the ablation (docs/learning.md): every pair of
// every iteration is teacher-forced under the policy trained on it, so each
// run says which metric's score predicted the change of the implicit
// margin, and how far training moved the pairs it left out.

// learningYAML is the schedule's learning_check section: every pair (a
// sample larger than any pool), seeded with the run's seed.
func learningYAML(seed uint64) string {
	return fmt.Sprintf("learning_check: {enabled: true, sample: 1000000, seed: %d}\n", seed)
}

// iterLearning is one iteration's learning-check summary, and Spearman's
// ρ of Δ with each metric's score within the selected pairs and within the
// held-out ones: over all pairs, whatever score chose the training set
// predicts Δ because those pairs were trained on; within each group that
// confound is gone.
type iterLearning struct {
	Name        string                     `json:"name"`
	Summary     metric.LearningSummary     `json:"summary"`
	RhoSelected map[metric.Metric]*float64 `json:"rho_selected"`
	RhoHeldOut  map[metric.Metric]*float64 `json:"rho_held_out"`
}

// learningStats reads the run's learning-check summaries, by iteration.
func learningStats(ctx context.Context, dbURL string) ([]iterLearning, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT i.name, l.summary FROM learning_checks l JOIN iterations i ON i.id = l.iteration_id
		WHERE l.summary IS NOT NULL ORDER BY i.ordinal`)
	if err != nil {
		return nil, err
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (iterLearning, error) {
		var l iterLearning
		return l, row.Scan(&l.Name, &l.Summary)
	})
	if err == nil && len(out) == 0 {
		err = fmt.Errorf("no learning check has a summary")
	}
	if err != nil {
		return nil, err
	}
	for i := range out {
		if err := withinGroups(ctx, conn, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withinGroups computes an iteration's ρ within the selected and within
// the held-out pairs from its pair_learning rows.
func withinGroups(ctx context.Context, conn *pgx.Conn, l *iterLearning) error {
	var seed int64
	err := conn.QueryRow(ctx, `SELECT (config->'selection'->>'seed')::bigint FROM iterations WHERE name = $1`, l.Name).Scan(&seed)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, `SELECT p.id, p.selected, p.explicit_margin, pl.old_implicit_margin, pl.implicit_margin, pl.delta,
			coalesce(p.alignment_potential, 'NaN')
		FROM pair_learning pl JOIN pairs p ON p.id = pl.pair_id JOIN iterations i ON i.id = pl.iteration_id
		WHERE i.name = $1 ORDER BY p.id`, l.Name)
	if err != nil {
		return err
	}
	var sel, held []metric.LearningRow
	var r metric.LearningRow
	_, err = pgx.ForEachRow(rows, []any{&r.PairID, &r.Selected, &r.ExplicitMargin, &r.OldImplicit, &r.NewImplicit, &r.Delta, &r.AlignmentPotential}, func() error {
		r.Random = metric.RandomScore(seed, r.PairID)
		if r.Selected {
			sel = append(sel, r)
		} else {
			held = append(held, r)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// No bootstrap here: the ablation's intervals are over seeds.
	l.RhoSelected, l.RhoHeldOut = rhos(sel), rhos(held)
	return nil
}

func rhos(rows []metric.LearningRow) map[metric.Metric]*float64 {
	s := metric.SummarizeLearning(rows, 0, 0)
	out := map[metric.Metric]*float64{}
	for m, c := range s.Spearman {
		out[m] = c.Rho
	}
	return out
}

// runMeans are one run's learning figures, each the mean over its
// checked iterations (an undefined value is left out of the mean).
type runMeans struct {
	rho, rhoSel, rhoHeld        map[metric.Metric]float64
	deltaSel, deltaNot          float64
	learnedBefore, learnedAfter float64
	reward                      float64
}

func meansOf(r runResult) runMeans {
	m := runMeans{rho: map[metric.Metric]float64{}, rhoSel: map[metric.Metric]float64{}, rhoHeld: map[metric.Metric]float64{}, reward: r.Final.MeanReward}
	avgOf := func(pick func(iterLearning) *float64) float64 {
		var xs []float64
		for _, l := range r.Learning {
			if v := pick(l); v != nil {
				xs = append(xs, *v)
			}
		}
		if len(xs) == 0 {
			return math.NaN()
		}
		mean, _ := meanSD(xs)
		return mean
	}
	avg := func(pick func(metric.LearningSummary) *float64) float64 {
		return avgOf(func(l iterLearning) *float64 { return pick(l.Summary) })
	}
	for _, mt := range metric.LearningMetrics {
		m.rho[mt] = avg(func(s metric.LearningSummary) *float64 { return s.Spearman[mt].Rho })
		m.rhoSel[mt] = avgOf(func(l iterLearning) *float64 { return l.RhoSelected[mt] })
		m.rhoHeld[mt] = avgOf(func(l iterLearning) *float64 { return l.RhoHeldOut[mt] })
	}
	m.deltaSel = avg(func(s metric.LearningSummary) *float64 { return s.Selected.MeanDelta })
	m.deltaNot = avg(func(s metric.LearningSummary) *float64 { return s.NotSelected.MeanDelta })
	m.learnedBefore = avg(func(s metric.LearningSummary) *float64 { return s.Selected.LearnedBefore })
	m.learnedAfter = avg(func(s metric.LearningSummary) *float64 { return s.Selected.Learned })
	return m
}

// printLearning writes the learning tables: Spearman's ρ of Δ with each
// metric's score per arm (mean ± sd over seeds), the mean Δ of trained and
// held-out pairs per arm, and the per-seed paired differences of the AP arm
// against the explicit-margin and random arms with 95% intervals.
func printLearning(w io.Writer, o options, all []runResult) {
	bw := bufio.NewWriter(w)
	defer bw.Flush()
	runs := map[string]map[uint64]runMeans{} // loss/metric → seed
	key := func(loss, arm string) string { return loss + "/" + arm }
	for _, r := range all {
		if len(r.Learning) == 0 {
			continue
		}
		k := key(r.Loss, r.Metric)
		if runs[k] == nil {
			runs[k] = map[uint64]runMeans{}
		}
		runs[k][r.Seed] = meansOf(r)
	}
	if len(runs) == 0 {
		return
	}
	fmt.Fprintf(bw, "\nLearning check, every pair of every iteration teacher-forced under the policy trained on it (Δ = new − old implicit margin, SimPO form). "+
		"Spearman's ρ of Δ with each metric's score: each seed's ρ averaged over its iterations, then mean ± sample sd over %d seeds.\n\n", len(o.seeds))
	fmt.Fprintln(bw, "| training | selection metric | pairs | ρ(Δ, AP) | ρ(Δ, explicit margin) | ρ(Δ, −\\|implicit margin\\|) | ρ(Δ, random) |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|---|")
	for _, group := range []struct {
		name string
		pick func(runMeans) map[metric.Metric]float64
	}{
		{"all", func(m runMeans) map[metric.Metric]float64 { return m.rho }},
		{"selected", func(m runMeans) map[metric.Metric]float64 { return m.rhoSel }},
		{"held out", func(m runMeans) map[metric.Metric]float64 { return m.rhoHeld }},
	} {
		for _, loss := range o.losses {
			for _, arm := range o.metrics {
				seeds := runs[key(loss, arm)]
				if len(seeds) == 0 {
					continue
				}
				var cells []string
				for _, mt := range metric.LearningMetrics {
					cells = append(cells, meanSDText(collect(seeds, func(m runMeans) float64 { return group.pick(m)[mt] }), 3))
				}
				fmt.Fprintf(bw, "| %s | %s | %s | %s |\n", loss, arm, group.name, strings.Join(cells, " | "))
			}
		}
	}
	fmt.Fprintln(bw, "\nMean Δ of the pairs each arm trained on (selected) and of those it left out (held out), and the share of selected pairs whose implicit margin favours the chosen reply before → after training; mean ± sd over seeds.")
	fmt.Fprintln(bw, "\n| training | selection metric | mean Δ, selected | mean Δ, held out | selected pairs learned |")
	fmt.Fprintln(bw, "|---|---|---|---|---|")
	for _, loss := range o.losses {
		for _, arm := range o.metrics {
			seeds := runs[key(loss, arm)]
			if len(seeds) == 0 {
				continue
			}
			b, _ := meanSD(collect(seeds, func(m runMeans) float64 { return m.learnedBefore }))
			a, _ := meanSD(collect(seeds, func(m runMeans) float64 { return m.learnedAfter }))
			fmt.Fprintf(bw, "| %s | %s | %s | %s | %.0f%% → %.0f%% |\n", loss, arm,
				meanSDText(collect(seeds, func(m runMeans) float64 { return m.deltaSel }), 4),
				meanSDText(collect(seeds, func(m runMeans) float64 { return m.deltaNot }), 4), 100*b, 100*a)
		}
	}
	fmt.Fprintf(bw, "\nPaired per-seed differences, AP arm minus another arm with the same seed: mean [95%% bootstrap interval over seeds, %d resamples].\n\n", pairedResamples)
	fmt.Fprintln(bw, "| training | difference | seeds | held-out reward | mean Δ, selected | mean Δ, held out | ρ(Δ, AP) within selected |")
	fmt.Fprintln(bw, "|---|---|---|---|---|---|---|")
	for _, loss := range o.losses {
		ap := runs[key(loss, string(metric.AlignmentPotential))]
		for _, other := range []metric.Metric{metric.ExplicitMargin, metric.Random} {
			ot := runs[key(loss, string(other))]
			if len(ap) == 0 || len(ot) == 0 {
				continue
			}
			diff := func(pick func(runMeans) float64) string {
				var ds []float64
				for seed, a := range ap {
					if b, ok := ot[seed]; ok {
						if d := pick(a) - pick(b); !math.IsNaN(d) {
							ds = append(ds, d)
						}
					}
				}
				return pairedText(ds)
			}
			n := 0
			for seed := range ap {
				if _, ok := ot[seed]; ok {
					n++
				}
			}
			fmt.Fprintf(bw, "| %s | AP − %s | %d | %s | %s | %s | %s |\n", loss, other, n,
				diff(func(m runMeans) float64 { return m.reward }),
				diff(func(m runMeans) float64 { return m.deltaSel }),
				diff(func(m runMeans) float64 { return m.deltaNot }),
				diff(func(m runMeans) float64 { return m.rhoSel[metric.AlignmentPotential] }))
		}
	}
}

// collect is pick of each seed's figures, in seed order, NaN left out.
func collect(seeds map[uint64]runMeans, pick func(runMeans) float64) []float64 {
	keys := make([]uint64, 0, len(seeds))
	for s := range seeds {
		keys = append(keys, s)
	}
	slices.Sort(keys)
	var xs []float64
	for _, s := range keys {
		if v := pick(seeds[s]); !math.IsNaN(v) {
			xs = append(xs, v)
		}
	}
	return xs
}

func meanSDText(xs []float64, digits int) string {
	if len(xs) == 0 {
		return "–"
	}
	m, sd := meanSD(xs)
	return fmt.Sprintf("%.*f ± %.*f", digits, m, digits, sd)
}

// pairedResamples is how many bootstrap resamples a paired interval takes.
const pairedResamples = 10000

// pairedText is the mean of the paired differences and its 95% percentile
// bootstrap interval (resampling seeds with replacement, seeded, so the
// table is the same on every run over the same results).
func pairedText(ds []float64) string {
	if len(ds) == 0 {
		return "–"
	}
	slices.Sort(ds) // a fixed order, whatever order the map gave
	m, _ := meanSD(ds)
	if len(ds) < 2 {
		return fmt.Sprintf("%+.4f", m)
	}
	lo, hi := bootstrapMean(ds, pairedResamples, 1)
	return fmt.Sprintf("%+.4f [%+.4f, %+.4f]", m, lo, hi)
}

// bootstrapMean is the 95% percentile-bootstrap interval of the mean of xs.
func bootstrapMean(xs []float64, resamples int, seed uint64) (float64, float64) {
	rng := rand.New(rand.NewPCG(seed, 0xab1a))
	means := make([]float64, resamples)
	for i := range means {
		var s float64
		for range xs {
			s += xs[rng.IntN(len(xs))]
		}
		means[i] = s / float64(len(xs))
	}
	slices.Sort(means)
	return metric.Percentile(means, 2.5), metric.Percentile(means, 97.5)
}

// tableFrom, when set, tabulates the learning check of the runs in a
// results file (-results of an earlier ablation, whole or cut short)
// instead of running anything: seeds, losses and metrics are the ones the
// file holds.
var tableFrom = flag.String("learning-table-from", "", "print the learning-check tables of the runs in this results file and exit")

func learningTableFrom(w io.Writer, o options, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var all []runResult
	seen := map[uint64]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var r runResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		all = append(all, r)
		if !seen[r.Seed] {
			seen[r.Seed] = true
			o.seeds = append(o.seeds, r.Seed)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	printLearning(w, o, all)
	return nil
}
