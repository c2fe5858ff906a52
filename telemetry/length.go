package telemetry

import (
	"context"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfplay/selfplay/store"
)

var (
	lengthSlopeDesc = prometheus.NewDesc("selfplay_length_reward_slope",
		"Least-squares slope of reward on reply length (reward per token) over an iteration's responses; absent while undefined.",
		[]string{"iteration"}, nil)
	lengthR2Desc = prometheus.NewDesc("selfplay_length_reward_r2",
		"Share of the variance of an iteration's rewards explained by reply length (R² of the fit).", []string{"iteration"}, nil)
	lengthResidualDesc = prometheus.NewDesc("selfplay_length_residual_applied",
		"1 when the iteration's selection scored explicit margins with the length effect removed (scoring.length_control residual).",
		[]string{"iteration"}, nil)
	lengthTokensDesc = prometheus.NewDesc("selfplay_reply_tokens_mean",
		"Mean reply length in tokens of an iteration, by group: all, chosen, rejected, selected_chosen, selected_rejected.",
		[]string{"iteration", "group"}, nil)
)

// lengthCollector reads a run's length fits and statistics at scrape time.
type lengthCollector struct {
	db  store.DBTX
	run string
	log *slog.Logger
}

// NewLengthCollector returns a collector of the named run's reply length
// metrics, read from length_fits and length_stats (a few rows per
// iteration, written by each training scoring) at every scrape:
//
//   - selfplay_length_reward_slope{iteration}: reward per token;
//   - selfplay_length_reward_r2{iteration}: R² of the fit;
//   - selfplay_length_residual_applied{iteration}: 1 when the residual
//     margin scored the selection;
//   - selfplay_reply_tokens_mean{iteration, group}: mean reply length.
//
// An iteration not yet scored yields no series; a failing query is logged
// and the metrics are left out of that scrape.
func NewLengthCollector(db store.DBTX, run string, log *slog.Logger) prometheus.Collector {
	return &lengthCollector{db: db, run: run, log: log}
}

// Describe implements prometheus.Collector.
func (c *lengthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{lengthSlopeDesc, lengthR2Desc, lengthResidualDesc, lengthTokensDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *lengthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	if err := c.collect(ctx, ch); err != nil {
		c.log.Warn("metrics: read reply lengths", "run", c.run, "err", err)
		ch <- prometheus.NewInvalidMetric(lengthTokensDesc, err)
	}
}

func (c *lengthCollector) collect(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `
		SELECT i.name, f.slope, f.r2, f.applied, s.reply_group, s.mean_tokens
		FROM iterations i JOIN runs r ON r.id = i.run_id
		JOIN length_fits f ON f.iteration_id = i.id
		LEFT JOIN length_stats s ON s.iteration_id = i.id
		WHERE r.name = $1 ORDER BY i.ordinal, s.reply_group`, c.run)
	if err != nil {
		return err
	}
	var name, last string
	var slope, r2, mean *float64
	var applied bool
	var group *string
	_, err = pgx.ForEachRow(rows, []any{&name, &slope, &r2, &applied, &group, &mean}, func() error {
		if name != last {
			last = name
			if slope != nil {
				ch <- prometheus.MustNewConstMetric(lengthSlopeDesc, prometheus.GaugeValue, *slope, name)
				ch <- prometheus.MustNewConstMetric(lengthR2Desc, prometheus.GaugeValue, *r2, name)
			}
			v := 0.0
			if applied {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(lengthResidualDesc, prometheus.GaugeValue, v, name)
		}
		if group != nil && mean != nil {
			ch <- prometheus.MustNewConstMetric(lengthTokensDesc, prometheus.GaugeValue, *mean, name, *group)
		}
		return nil
	})
	return err
}
