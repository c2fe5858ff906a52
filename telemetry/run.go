package telemetry

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfplay/selfplay/store"
)

// Querier is what the run collector needs of a database; *pgxpool.Pool
// satisfies it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// stageNames are the values of the stage label, one series per stage so a
// dashboard can show the current one (value 1) without label joins.
var stageNames = []string{
	store.StagePending, store.StageLoading, store.StageGenerating, store.StageScoring, store.StageSelecting,
	store.StageEvolving, store.StageExporting, store.StageTraining, store.StageDone, store.StageFailed,
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
	db  Querier
	run string
	log *slog.Logger
}

// NewRunCollector returns a collector of the named run's metrics, read
// from the database at every scrape (three small grouped queries):
//
//   - selfplay_current_iteration: ordinal of the first iteration not done;
//   - selfplay_iteration_stage{iteration, stage}: 1 for the stored stage;
//   - selfplay_run_tasks{iteration, kind, status}: tasks by status;
//   - selfplay_pair_outcomes{iteration, outcome}: generate tasks by outcome
//     (paired, the no-pair reasons, failed, pending);
//   - selfplay_pairs_selected{iteration}: pairs selected for training.
//
// A run not yet created yields no series. A failing query is logged and its
// metrics are left out of that scrape. Register it with the orchestrator's
// registry.
func NewRunCollector(db Querier, run string, log *slog.Logger) prometheus.Collector {
	return &runCollector{db: db, run: run, log: log}
}

// Describe implements prometheus.Collector.
func (c *runCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{currentIterationDesc, stageDesc, tasksDesc, outcomesDesc, selectedDesc} {
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
}

func (c *runCollector) collectIterations(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `
		SELECT i.ordinal, i.name, i.stage,
		       (SELECT count(*) FROM pairs p WHERE p.iteration_id = i.id AND p.selected)
		FROM iterations i JOIN runs r ON r.id = i.run_id
		WHERE r.name = $1 ORDER BY i.ordinal`, c.run)
	if err != nil {
		return err
	}
	var (
		ordinal  int
		name     string
		stage    string
		selected int64
	)
	current := -1
	_, err = pgx.ForEachRow(rows, []any{&ordinal, &name, &stage, &selected}, func() error {
		for _, s := range stageNames {
			v := 0.0
			if s == stage {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(stageDesc, prometheus.GaugeValue, v, name, s)
		}
		ch <- prometheus.MustNewConstMetric(selectedDesc, prometheus.GaugeValue, float64(selected), name)
		if current < 0 && stage != store.StageDone {
			current = ordinal
		}
		return nil
	})
	if err != nil {
		return err
	}
	if current < 0 && name != "" {
		current = ordinal // every iteration is done: the last one
	}
	if current >= 0 {
		ch <- prometheus.MustNewConstMetric(currentIterationDesc, prometheus.GaugeValue, float64(current))
	}
	return nil
}

func (c *runCollector) collectTasks(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `
		SELECT i.name, t.kind, t.status,
		       CASE WHEN t.status = 'done' THEN coalesce(t.outcome, 'done') ELSE t.status END,
		       count(*)
		FROM tasks t JOIN iterations i ON i.id = t.iteration_id JOIN runs r ON r.id = i.run_id
		WHERE r.name = $1
		GROUP BY 1, 2, 3, 4`, c.run)
	if err != nil {
		return err
	}
	type key struct{ iteration, kind, status string }
	tasks := map[key]int64{}
	var (
		iteration, kind, status, outcome string
		n                                int64
	)
	_, err = pgx.ForEachRow(rows, []any{&iteration, &kind, &status, &outcome, &n}, func() error {
		tasks[key{iteration, kind, status}] += n
		if kind == "generate" {
			ch <- prometheus.MustNewConstMetric(outcomesDesc, prometheus.GaugeValue, float64(n), iteration, outcome)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, n := range tasks {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(n), k.iteration, k.kind, k.status)
	}
	return nil
}
