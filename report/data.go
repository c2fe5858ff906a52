package report

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

// Data is everything a report shows, read from PostgreSQL by Load.
type Data struct {
	Run            string
	Iteration      string
	Ordinal        int
	Stage          string
	PolicyModel    string
	ReferenceModel string
	// Settings are the iteration's effective settings as stored.
	Settings config.Settings
	// Generated is when the data was read.
	Generated time.Time

	Summary Summary
	// Outcomes counts the generate tasks: paired, each no-pair reason,
	// failed, pending (in that order, reasons by count).
	Outcomes []Count
	// Failures are the most frequent failure reasons of generate tasks.
	Failures []Count
	// Pairs are the pairs the margin scatter draws, by id: all of them up
	// to maxScatterPoints, else every ScatterStride-th.
	Pairs         []Pair
	ScatterStride int
	// Rewards counts the rewards of the rejected (series 0) and chosen
	// (series 1) responses of every pair; AP the alignment potential of the
	// pairs not selected (series 0) and selected (series 1). Both are
	// counted in PostgreSQL.
	Rewards, AP Histogram
	// Cutoff is the lowest alignment potential selected when the
	// selection metric is alignment_potential; nil otherwise.
	Cutoff *float64
	// Evolution counts rewrites per strategy, empty when the iteration did
	// not evolve prompts; Dropped counts rewrites by the filter that
	// dropped them.
	Evolution []StrategyCount
	Dropped   []Count
	// Trend has one entry per iteration of the run that has pairs.
	Trend []IterationTrend
	// Top are the best selected pairs, by rank.
	Top []TopPair
	// Flags count the prompts this iteration found near-duplicate or
	// contaminated (loaded ones by file, evolved ones by strategy), and
	// NearExamples and ContaminatedExamples show the first few of each.
	Flags                              []store.FlagCount
	NearExamples, ContaminatedExamples []store.FlagExample
	// Learning is the learning check after the iteration's training; nil
	// without one.
	Learning *Learning
	// Length is the reply length section (report/length.go); Warnings are
	// shown at the top of the page.
	Length   Length
	Warnings []string

	ranges ranges // read by loadSummary for loadHistograms
	// tasks are the iteration's task counts, read first.
	tasks []store.TaskGroup
}

// Summary are the iteration's headline numbers.
type Summary struct {
	Prompts                            int64
	TasksDone, TasksFailed, TasksTotal int64
	Pairs, Selected                    int64
	// All and Selected are means over all pairs and over the selected ones.
	All, Sel Means
}

// Means are mean values over a set of pairs; nil over an empty set.
type Means struct {
	ChosenReward, RejectedReward, ExplicitMargin, AbsImplicitMargin, AlignmentPotential *float64
}

// Histogram counts the values of one or more series in shared bins of
// equal width: bin i holds Start + i·Step ≤ v < Start + (i+1)·Step, the
// largest value in the last bin. Counts[s][i] is series s's count in bin
// i. It has no bins when no series has a value.
type Histogram struct {
	Start, Step float64
	Counts      [][]int64
}

// Edges are the bins' edges, one more than there are bins.
func (h Histogram) Edges() []float64 {
	if len(h.Counts) == 0 || len(h.Counts[0]) == 0 {
		return nil
	}
	edges := make([]float64, len(h.Counts[0])+1)
	for i := range edges {
		edges[i] = h.Start + float64(i)*h.Step
	}
	return edges
}

// NewHistogram counts series as the report does: about √n bins (8 to 40)
// of a nice width for n values in all, NaNs skipped.
func NewHistogram(series ...[]float64) Histogram {
	n := 0
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, vs := range series {
		n += len(vs)
		for _, v := range vs {
			if !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	h := Histogram{Counts: make([][]int64, len(series))}
	if math.IsInf(lo, 1) {
		return h
	}
	start, step, nbins := bins(lo, hi, binTarget(n))
	h.Start, h.Step = start, step
	for s, vs := range series {
		h.Counts[s] = make([]int64, nbins)
		for _, v := range vs {
			if !math.IsNaN(v) {
				h.Counts[s][bin(v, start, step, nbins)]++
			}
		}
	}
	return h
}

// Count is a label and how many.
type Count struct {
	Label string
	N     int64
}

// Pair is one pair's numbers (one dot of the scatter). ImplicitMargin is the form the iteration
// scored with (simpo, or dpo with a reference). NaN marks a missing value.
type Pair struct {
	ID                           int64
	ChosenReward, RejectedReward float64
	ExplicitMargin               float64
	ImplicitMargin               float64
	AlignmentPotential           float64
	Selected                     bool
}

// StrategyCount is one evolution strategy: rewrites made (one per evolved
// prompt) and kept after filtering (in the next iteration's pool).
type StrategyCount struct {
	Strategy   string
	Made, Kept int64
}

// IterationTrend summarises one iteration of the run. NaN marks a mean
// over an empty set.
type IterationTrend struct {
	Name                                   string
	Ordinal                                int
	Pairs, Selected                        int64
	MeanChosenAll, MeanChosenSel           float64
	MeanExplicitAll, MeanExplicitSel       float64
	MeanAbsImplicitAll, MeanAbsImplicitSel float64
}

// TopPair is a selected pair shown in full.
type TopPair struct {
	Rank                         int
	Prompt, Chosen, Rejected     string
	ChosenReward, RejectedReward float64
	ExplicitMargin               float64
	ImplicitMargin               float64
	AlignmentPotential           float64
}

// topPairs is how many selected pairs the report shows in full.
const topPairs = 5

// The report reads its top pairs from top_pairs, which holds the first
// store.TopPairs ranks: this does not compile if it shows more.
var _ [store.TopPairs - topPairs]struct{}

// Load reads the report of one iteration of a run through db (a pool, a
// connection or a transaction; a dozen read-only queries). It reads what
// the report draws, never every pair: counts and means, histograms
// counted in PostgreSQL, at most maxScatterPoints pairs and the top
// selected ones; its memory does not grow with the iteration. An unknown
// run or iteration is an error naming what exists.
func Load(ctx context.Context, db store.DBTX, run, iteration string) (*Data, error) {
	r, err := store.GetRun(ctx, db, run)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no run %q in this database: %s", run, runNames(ctx, db))
	}
	if err != nil {
		return nil, err
	}
	its, err := store.ListIterations(ctx, db, r.ID)
	if err != nil {
		return nil, err
	}
	var it *store.Iteration
	var names []string
	for i := range its {
		names = append(names, its[i].Name)
		if its[i].Name == iteration {
			it = &its[i]
		}
	}
	if it == nil {
		return nil, fmt.Errorf("run %q has no iteration %q; it has %s", run, iteration, strings.Join(names, ", "))
	}
	d := &Data{Run: r.Name, Iteration: it.Name, Ordinal: it.Ordinal, Stage: it.Stage, PolicyModel: it.PolicyModel,
		ReferenceModel: it.ReferenceModel, Generated: time.Now().UTC()}
	if err := json.Unmarshal(it.Config, &d.Settings); err != nil {
		return nil, fmt.Errorf("settings of iteration %s: %w", it.Name, err)
	}
	for _, step := range []struct {
		what string
		load func(context.Context, store.DBTX, int64) error
	}{
		{"task counts", d.loadTaskCounts},
		{"summary", d.loadSummary},
		{"outcomes", d.loadOutcomes},
		{"histograms", d.loadHistograms},
		{"pairs", d.loadPairs},
		{"evolution", d.loadEvolution},
		{"trend", d.loadTrend},
		{"top pairs", d.loadTop},
		{"data quality", d.loadFlags},
		{"learning check", d.loadLearning},
		{"reply length", d.loadLength},
	} {
		if err := step.load(ctx, db, it.ID); err != nil {
			return nil, fmt.Errorf("report of %s/%s: %s: %w", run, iteration, step.what, err)
		}
	}
	if d.Summary.TasksFailed == 0 {
		return d, nil
	}
	reasons, err := store.FailureReasons(ctx, db, it.ID, "generate", 5)
	if err != nil {
		return nil, err
	}
	for _, rc := range reasons {
		d.Failures = append(d.Failures, Count{rc.Label(), rc.Count})
	}
	return d, nil
}

func runNames(ctx context.Context, db store.DBTX) string {
	rows, err := db.Query(ctx, `SELECT name FROM runs ORDER BY id`)
	if err != nil {
		return "the runs could not be listed"
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		return "it has no runs yet"
	}
	return "it has " + strings.Join(names, ", ")
}

// ranges are the extents of the values the histograms count, read with
// the summary; NaN and NULL values are left out, as the histograms leave
// them out.
type ranges struct {
	rewardLo, rewardHi, apLo, apHi *float64
	cutoff                         *float64
}

// loadTaskCounts reads the iteration's tasks by kind, status and outcome
// from the counts the database keeps, not from the tasks themselves.
func (d *Data) loadTaskCounts(ctx context.Context, db store.DBTX, id int64) error {
	var err error
	d.tasks, err = store.IterationTaskCounts(ctx, db, id)
	return err
}

// taskCount sums the iteration's tasks of kind whose status is status,
// or of any status when status is "".
func (d *Data) taskCount(kind, status string) int64 {
	var n int64
	for _, g := range d.tasks {
		if g.Kind == kind && (status == "" || g.Status == status) {
			n += g.N
		}
	}
	return n
}

func (d *Data) loadSummary(ctx context.Context, db store.DBTX, id int64) error {
	s := &d.Summary
	s.TasksDone = d.taskCount("generate", store.TaskDone)
	s.TasksFailed = d.taskCount("generate", store.TaskFailed)
	s.TasksTotal = d.taskCount("generate", "")
	return db.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM iteration_prompts WHERE iteration_id = $1),
		       count(*), count(*) FILTER (WHERE p.selected),
		       avg(p.chosen_reward), avg(p.rejected_reward), avg(p.explicit_margin), avg(abs(p.implicit_margin)), avg(p.alignment_potential),
		       avg(p.chosen_reward) FILTER (WHERE p.selected), avg(p.rejected_reward) FILTER (WHERE p.selected),
		       avg(p.explicit_margin) FILTER (WHERE p.selected), avg(abs(p.implicit_margin)) FILTER (WHERE p.selected),
		       avg(p.alignment_potential) FILTER (WHERE p.selected),
		       least(min(p.chosen_reward) FILTER (WHERE p.chosen_reward <> 'NaN'), min(p.rejected_reward) FILTER (WHERE p.rejected_reward <> 'NaN')),
		       greatest(max(p.chosen_reward) FILTER (WHERE p.chosen_reward <> 'NaN'), max(p.rejected_reward) FILTER (WHERE p.rejected_reward <> 'NaN')),
		       min(p.alignment_potential) FILTER (WHERE p.alignment_potential <> 'NaN'),
		       max(p.alignment_potential) FILTER (WHERE p.alignment_potential <> 'NaN'),
		       min(p.alignment_potential) FILTER (WHERE p.selected)
		FROM pairs p
		WHERE p.iteration_id = $1`, id).Scan(
		&s.Prompts, &s.Pairs, &s.Selected,
		&s.All.ChosenReward, &s.All.RejectedReward, &s.All.ExplicitMargin, &s.All.AbsImplicitMargin, &s.All.AlignmentPotential,
		&s.Sel.ChosenReward, &s.Sel.RejectedReward, &s.Sel.ExplicitMargin, &s.Sel.AbsImplicitMargin, &s.Sel.AlignmentPotential,
		&d.ranges.rewardLo, &d.ranges.rewardHi, &d.ranges.apLo, &d.ranges.apHi, &d.ranges.cutoff)
}

func (d *Data) loadOutcomes(context.Context, store.DBTX, int64) error {
	byLabel := map[string]int64{}
	for _, g := range d.tasks {
		if g.Kind != "generate" {
			continue
		}
		label := g.Status
		if g.Status == store.TaskDone {
			label = cmp.Or(g.Outcome, "done")
		}
		byLabel[label] += g.N
	}
	cs := make([]Count, 0, len(byLabel))
	for label, n := range byLabel {
		cs = append(cs, Count{label, n})
	}
	// paired first, then the no-pair reasons by count, then failed, pending.
	order := func(c Count) int {
		switch c.Label {
		case "paired":
			return 0
		case store.TaskFailed:
			return 2
		case store.TaskPending:
			return 3
		}
		return 1
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if oi, oj := order(cs[i]), order(cs[j]); oi != oj {
			return oi < oj
		}
		if cs[i].N != cs[j].N {
			return cs[i].N > cs[j].N
		}
		return cs[i].Label < cs[j].Label
	})
	d.Outcomes = cs
	return nil
}

// loadHistograms counts the histograms' bins in PostgreSQL, on the bins
// the report chooses for the ranges loadSummary read.
func (d *Data) loadHistograms(ctx context.Context, db store.DBTX, id int64) error {
	count := func(h *Histogram, lo, hi *float64, n int, sql string) error {
		*h = Histogram{Counts: make([][]int64, 2)}
		if lo == nil || hi == nil {
			return nil
		}
		var nbins int
		h.Start, h.Step, nbins = bins(*lo, *hi, binTarget(n))
		for s := range h.Counts {
			h.Counts[s] = make([]int64, nbins)
		}
		rows, err := db.Query(ctx, sql, id, h.Start, h.Step, nbins)
		if err != nil {
			return err
		}
		var series, b int
		var c int64
		_, err = pgx.ForEachRow(rows, []any{&series, &b, &c}, func() error {
			h.Counts[series][b] = c
			return nil
		})
		return err
	}
	// As many values as the old in-memory histograms counted: two rewards
	// per pair, one AP per pair.
	n := int(d.Summary.Pairs)
	err := count(&d.Rewards, d.ranges.rewardLo, d.ranges.rewardHi, 2*n, `
		SELECT v.series, `+binSQL("v.reward", 2)+`, count(*)
		FROM pairs p CROSS JOIN LATERAL (VALUES (0, p.rejected_reward), (1, p.chosen_reward)) AS v(series, reward)
		WHERE p.iteration_id = $1 AND v.reward <> 'NaN'
		GROUP BY 1, 2`)
	if err != nil {
		return err
	}
	return count(&d.AP, d.ranges.apLo, d.ranges.apHi, n, `
		SELECT selected::int, `+binSQL("alignment_potential", 2)+`, count(*)
		FROM pairs
		WHERE iteration_id = $1 AND alignment_potential <> 'NaN'
		GROUP BY 1, 2`)
}

// loadPairs reads the pairs of the scatter: every ScatterStride-th by id.
func (d *Data) loadPairs(ctx context.Context, db store.DBTX, id int64) error {
	implicit := "implicit_margin"
	if d.Settings.Scoring.Implicit == "dpo" {
		implicit = "dpo_margin"
	}
	d.ScatterStride = max(1, int((d.Summary.Pairs+maxScatterPoints-1)/maxScatterPoints))
	rows, err := db.Query(ctx, `
		SELECT p.id, coalesce(p.chosen_reward, 'NaN'), coalesce(p.rejected_reward, 'NaN'), p.explicit_margin,
		       coalesce(p.implicit, 'NaN'), coalesce(p.alignment_potential, 'NaN'), p.selected
		FROM (SELECT id, chosen_reward, rejected_reward, explicit_margin, `+implicit+` AS implicit, alignment_potential, selected,
		             row_number() OVER (ORDER BY id) - 1 AS i
		      FROM pairs WHERE iteration_id = $1) p
		WHERE p.i % $2 = 0
		ORDER BY p.id`, id, d.ScatterStride)
	if err != nil {
		return err
	}
	var p Pair
	_, err = pgx.ForEachRow(rows, []any{&p.ID, &p.ChosenReward, &p.RejectedReward, &p.ExplicitMargin, &p.ImplicitMargin,
		&p.AlignmentPotential, &p.Selected}, func() error {
		d.Pairs = append(d.Pairs, p)
		return nil
	})
	if err != nil || d.Settings.Selection.Metric != "alignment_potential" {
		return err
	}
	d.Cutoff = d.ranges.cutoff
	return nil
}

// droppedPart reads one "N reason" of an evolve outcome's dropped list,
// leaving out a list of strategies in parentheses ("2 near_duplicate
// (breadth, deepen)").
var droppedPart = regexp.MustCompile(`(\d+) ([^,(]+)(?:\([^)]*\))?`)

func (d *Data) loadEvolution(ctx context.Context, db store.DBTX, id int64) error {
	// Made: every done evolve task tried each configured strategy once.
	// Kept: the rewrites of this iteration's evolve tasks that reached the
	// next iteration's pool.
	made := d.taskCount("evolve", store.TaskDone)
	if made == 0 {
		return nil
	}
	rows, err := db.Query(ctx, `
		SELECT c.strategy, count(*)
		FROM tasks t
		JOIN prompts c ON c.parent_prompt_id = t.prompt_id -- from the index: parent, id, strategy
		JOIN iteration_prompts ip ON ip.prompt_id = c.id
		     AND ip.iteration_id = (SELECT n.id FROM iterations i JOIN iterations n ON n.run_id = i.run_id AND n.ordinal = i.ordinal + 1
		                            WHERE i.id = $1)
		WHERE t.iteration_id = $1 AND t.kind = 'evolve' AND t.status = 'done'
		GROUP BY c.strategy`, id)
	if err != nil {
		return err
	}
	kept := map[string]int64{}
	var strategy string
	var n int64
	if _, err := pgx.ForEachRow(rows, []any{&strategy, &n}, func() error { kept[strategy] = n; return nil }); err != nil {
		return err
	}
	for _, s := range d.Settings.Evolve.Strategies {
		d.Evolution = append(d.Evolution, StrategyCount{Strategy: s, Made: made, Kept: kept[s]})
	}

	// Outcomes read "kept 3 of 5; dropped: 1 too long for length_ratio, 1 empty".
	rows, err = db.Query(ctx, `SELECT split_part(outcome, 'dropped: ', 2) FROM tasks
		WHERE iteration_id = $1 AND kind = 'evolve' AND status = 'done' AND outcome LIKE '%dropped: %'`, id)
	if err != nil {
		return err
	}
	dropped := map[string]int64{}
	var list string
	if _, err := pgx.ForEachRow(rows, []any{&list}, func() error {
		for _, m := range droppedPart.FindAllStringSubmatch(list, -1) {
			k, _ := strconv.ParseInt(m[1], 10, 64)
			dropped[strings.TrimSpace(m[2])] += k
		}
		return nil
	}); err != nil {
		return err
	}
	for why, k := range dropped {
		d.Dropped = append(d.Dropped, Count{why, k})
	}
	sort.Slice(d.Dropped, func(i, j int) bool {
		if d.Dropped[i].N != d.Dropped[j].N {
			return d.Dropped[i].N > d.Dropped[j].N
		}
		return d.Dropped[i].Label < d.Dropped[j].Label
	})
	return nil
}

// flagExamples is how many flags of each reason the report shows in full.
const flagExamples = 5

func (d *Data) loadFlags(ctx context.Context, db store.DBTX, id int64) error {
	var err error
	if d.Flags, err = store.FlagCounts(ctx, db, id); err != nil {
		return err
	}
	if d.NearExamples, err = store.FlagExamples(ctx, db, id, store.ReasonNearDuplicate, flagExamples); err != nil {
		return err
	}
	d.ContaminatedExamples, err = store.FlagExamples(ctx, db, id, store.ReasonContaminated, flagExamples)
	return err
}

func (d *Data) loadTrend(ctx context.Context, db store.DBTX, id int64) error {
	rows, err := db.Query(ctx, `
		SELECT i.name, i.ordinal, count(*), count(*) FILTER (WHERE p.selected),
		       coalesce(avg(p.chosen_reward), 'NaN'), coalesce(avg(p.chosen_reward) FILTER (WHERE p.selected), 'NaN'),
		       coalesce(avg(p.explicit_margin), 'NaN'), coalesce(avg(p.explicit_margin) FILTER (WHERE p.selected), 'NaN'),
		       coalesce(avg(abs(p.implicit_margin)), 'NaN'), coalesce(avg(abs(p.implicit_margin)) FILTER (WHERE p.selected), 'NaN')
		FROM iterations i
		JOIN pairs p ON p.iteration_id = i.id
		WHERE i.run_id = (SELECT run_id FROM iterations WHERE id = $1)
		GROUP BY i.id ORDER BY i.ordinal`, id)
	if err != nil {
		return err
	}
	d.Trend, err = pgx.CollectRows(rows, pgx.RowToStructByPos[IterationTrend])
	return err
}

func (d *Data) loadTop(ctx context.Context, db store.DBTX, id int64) error {
	rows, err := db.Query(ctx, `
		SELECT rank, coalesce(prompt_text, ''), chosen, rejected, coalesce(chosen_reward, 'NaN'), coalesce(rejected_reward, 'NaN'),
		       explicit_margin, implicit_margin, coalesce(alignment_potential, 'NaN')
		FROM pair_details
		-- The top pairs first, by index in top_pairs, then their texts.
		WHERE pair_id IN (SELECT pair_id FROM top_pairs WHERE iteration_id = $1 AND rank <= $2)
		ORDER BY rank`, id, topPairs)
	if err != nil {
		return err
	}
	d.Top, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TopPair])
	return err
}

// orNaN reads a nullable mean for display: NaN shows as "–".
func orNaN(v *float64) float64 {
	if v == nil {
		return math.NaN()
	}
	return *v
}
