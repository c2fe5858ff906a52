package telemetry

import (
	"context"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/selfplay/selfplay/metric"
)

var (
	learningDeltaDesc = prometheus.NewDesc("selfplay_learning_mean_delta",
		"Learning check: mean change of the implicit margin after training (new − old) of the checked pairs, by whether they were selected for training.",
		[]string{"iteration", "selected"}, nil)
	learningLearnedDesc = prometheus.NewDesc("selfplay_learning_learned_share",
		"Learning check: share of the checked selected pairs whose implicit margin favours the chosen reply after training.",
		[]string{"iteration"}, nil)
	learningSpearmanDesc = prometheus.NewDesc("selfplay_learning_spearman",
		"Learning check: Spearman's rank correlation of the change of the implicit margin with a metric's score, over the checked pairs.",
		[]string{"iteration", "metric"}, nil)
)

// collectLearning reports the stored summaries of the run's finished
// learning checks: one row per checked iteration, read at each scrape.
func (c *runCollector) collectLearning(ctx context.Context, ch chan<- prometheus.Metric) error {
	rows, err := c.db.Query(ctx, `SELECT i.name, l.summary FROM learning_checks l
		JOIN iterations i ON i.id = l.iteration_id JOIN runs r ON r.id = i.run_id
		WHERE r.name = $1 AND l.summary IS NOT NULL ORDER BY i.ordinal`, c.run)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var s metric.LearningSummary
		if err := rows.Scan(&name, &s); err != nil {
			return err
		}
		for sel, g := range map[bool]metric.GroupStats{true: s.Selected, false: s.NotSelected} {
			if g.MeanDelta != nil {
				ch <- prometheus.MustNewConstMetric(learningDeltaDesc, prometheus.GaugeValue, *g.MeanDelta, name, strconv.FormatBool(sel))
			}
		}
		if s.Selected.Learned != nil {
			ch <- prometheus.MustNewConstMetric(learningLearnedDesc, prometheus.GaugeValue, *s.Selected.Learned, name)
		}
		for m, corr := range s.Spearman {
			if corr.Rho != nil {
				ch <- prometheus.MustNewConstMetric(learningSpearmanDesc, prometheus.GaugeValue, *corr.Rho, name, string(m))
			}
		}
	}
	return rows.Err()
}
