package telemetry

import (
	"cmp"
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfplay/selfplay/store"
)

// stageNames are the values of the stage label, one series per stage so a
// dashboard can show the current one (value 1) without label joins.
var stageNames = []string{
	store.StagePending, store.StageLoading, store.StageGenerating, store.StageScoring, store.StageSelecting,
	store.StageEvolving, store.StageExporting, store.StageTraining, store.StageChecking, store.StageDone, store.StageFailed,
}

// scrapeTimeout bounds the queries of one scrape.
const scrapeTimeout = 5 * time.Second

var (
	currentIterationDesc = prometheus.NewDesc("selfplay_current_iteration",
		"Ordinal of the run's current iteration: the first one not done (the last one when all are).", nil, nil)
	stageDesc = prometheus.NewDesc("selfplay_iteration_stage",
		"1 for an iteration's stored stage, 0 for the other stages.", []string{"iteration", "stage"}, nil)
	tasksDesc = prometheus.NewDesc("selfplay_run_tasks",
		"Tasks of an iteration by kind and status (pending, done, failed).", []string{"iteration", "kind", "status"}, nil)
	outcomesDesc = prometheus.NewDesc("selfplay_pair_outcomes",
		"Generate tasks of an iteration by outcome: paired, a no-pair reason, failed or pending.", []string{"iteration", "outcome"}, nil)
	selectedDesc = prometheus.NewDesc("selfplay_pairs_selected",
		"Pairs of an iteration selected for training.", []string{"iteration"}, nil)
)

// runCollector reads a run's state from PostgreSQL at scrape time.
type runCollector struct {
	db  store.DBTX
	run string
	log *slog.Logger

	mu       sync.Mutex
	selected map[int64]selectedCount // by iteration id
}

// selectedCount is an iteration's number of selected pairs as read in one
// stage; selection writes it only in the selecting stage.
type selectedCount struct {
	stage string
	n     int64
}

// NewRunCollector returns a collector of the named run's metrics, read
// from the database at every scrape at a cost that does not grow with the
// run: the iterations' rows, the task counts the tasks table's triggers
// keep (store.RunTaskCounts: a few rows per iteration), and an iteration's
// selected pairs counted once per stage it is seen in (selection sets them
// only while the iteration is selecting, where they are counted at every
// scrape):
//
//   - selfplay_current_iteration: ordinal of the first iteration not done;
//   - selfplay_iteration_stage{iteration, stage}: 1 for the stored stage;
//   - selfplay_run_tasks{iteration, kind, status}: tasks by status;
//   - selfplay_pair_outcomes{iteration, outcome}: generate tasks by outcome
//     (paired, the no-pair reasons, failed, pending);
//   - selfplay_pairs_selected{iteration}: pairs selected for training.
//   - selfplay_learning_mean_delta{iteration, selected},
//     selfplay_learning_learned_share{iteration} and
//     selfplay_learning_spearman{iteration, metric}: the learning check's
//     summary (learning_checks.summary), once the check finished.
//
// A run not yet created yields no series. A failing query is logged and its
// metrics are left out of that scrape. Register it with the orchestrator's
// registry.
func NewRunCollector(db store.DBTX, run string, log *slog.Logger) prometheus.Collector {
	return &runCollector{db: db, run: run, log: log, selected: map[int64]selectedCount{}}
}

// Describe implements prometheus.Collector.
func (c *runCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{currentIterationDesc, stageDesc, tasksDesc, outcomesDesc, selectedDesc,
		learningDeltaDesc, learningLearnedDesc, learningSpearmanDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *runCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if err := c.collectIterations(ctx, ch); err != nil {
		c.log.Warn("metrics: read iterations", "run", c.run, "err", err)
		ch <- prometheus.NewInvalidMetric(stageDesc, err)
	}
	if err := c.collectTasks(ctx, ch); err != nil {
		c.log.Warn("metrics: read tasks", "run", c.run, "err", err)
		ch <- prometheus.NewInvalidMetric(tasksDesc, err)
	}
	if err := c.collectLearning(ctx, ch); err != nil {
		c.log.Warn("metrics: read learning checks", "run", c.run, "err", err)
		ch <- prometheus.NewInvalidMetric(learningDeltaDesc, err)
	}
}

func (c *runCollector) collectIterations(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `
		SELECT i.id, i.ordinal, i.name, i.stage
		FROM iterations i JOIN runs r ON r.id = i.run_id
		WHERE r.name = $1 ORDER BY i.ordinal`, c.run)
	if err != nil {
		return err
	}
	type iteration struct {
		id      int64
		ordinal int
		name    string
		stage   string
	}
	its, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (iteration, error) {
		var it iteration
		return it, row.Scan(&it.id, &it.ordinal, &it.name, &it.stage)
	})
	if err != nil {
		return err
	}
	current := -1
	for _, it := range its {
		selected, err := c.selectedPairs(ctx, it.id, it.stage)
		if err != nil {
			return err
		}
		for _, s := range stageNames {
			v := 0.0
			if s == it.stage {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stageDesc, prometheus.GaugeValue, v, it.name, s)
		}
		ch <- prometheus.MustNewConstMetric(selectedDesc, prometheus.GaugeValue, float64(selected), it.name)
		if current < 0 && it.stage != store.StageDone {
			current = it.ordinal
		}
	}
	if current < 0 && len(its) > 0 {
		current = its[len(its)-1].ordinal // every iteration is done: the last one
	}
	if current >= 0 {
		ch <- prometheus.MustNewConstMetric(currentIterationDesc, prometheus.GaugeValue, float64(current))
	}
	return nil
}

// selectedPairs counts an iteration's selected pairs, or returns the count
// read earlier in the same stage.
func (c *runCollector) selectedPairs(ctx context.Context, id int64, stage string) (int64, error) {
	c.mu.Lock()
	cached, ok := c.selected[id]
	c.mu.Unlock()
	if ok && cached.stage == stage && stage != store.StageSelecting {
		return cached.n, nil
	}
	var n int64
	if err := c.db.QueryRow(ctx, `SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, id).Scan(&n); err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.selected[id] = selectedCount{stage: stage, n: n}
	c.mu.Unlock()
	return n, nil
}

func (c *runCollector) collectTasks(ctx context.Context, ch chan<- prometheus.Metric) error {
	groups, err := store.RunTaskCounts(ctx, c.db, c.run)
	if err != nil {
		return err
	}
	type key struct{ iteration, kind, status string }
	tasks := map[key]int64{}
	type okey struct{ iteration, outcome string }
	outcomes := map[okey]int64{}
	for _, g := range groups {
		tasks[key{g.Iteration, g.Kind, g.Status}] += g.N
		if g.Kind == "generate" {
			outcome := g.Status
			if g.Status == "done" {
				outcome = cmp.Or(g.Outcome, "done")
			}
			outcomes[okey{g.Iteration, outcome}] += g.N
		}
	}
	for k, n := range outcomes {
		ch <- prometheus.MustNewConstMetric(outcomesDesc, prometheus.GaugeValue, float64(n), k.iteration, k.outcome)
	}
	for k, n := range tasks {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), k.iteration, k.kind, k.status)
	}
	return nil
}
