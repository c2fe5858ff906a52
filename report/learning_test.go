package report_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/report"
)

// The learning chart: one dot per checked pair at (AP, Δ), the selected
// ones blue, and a caption with the summary's numbers.
func TestLearningChart(t *testing.T) {
	t.Parallel()
	d := sample()
	var page bytes.Buffer
	require.NoError(t, report.Render(&page, d))
	require.NotContains(t, page.String(), "Δ implicit margin against alignment potential", "no check, no chart")

	rho, lo, hi := 0.5, -0.25, 0.75
	d.Learning = &report.Learning{
		Summary: metric.LearningSummary{Model: "tiny-1", Pairs: 4, Sampled: 3, Checked: 3,
			Selected:    metric.GroupStats{N: 2, MeanDelta: ptr(0.25), LearnedBefore: ptr(0.5), Learned: ptr(1)},
			NotSelected: metric.GroupStats{N: 1, MeanDelta: ptr(-0.125), LearnedBefore: ptr(0), Learned: ptr(0)},
			Spearman: map[metric.Metric]metric.Correlation{
				metric.AlignmentPotential: {Rho: &rho, Interval: &metric.Interval{Lo: lo, Hi: hi}},
			}},
		Points: []report.LearningPoint{
			{PairID: 1, AlignmentPotential: 1.5, Delta: 0.375, Selected: true},
			{PairID: 2, AlignmentPotential: 1, Delta: 0.125, Selected: true},
			{PairID: 3, AlignmentPotential: -1, Delta: -0.125},
		},
		Stride: 1,
	}
	page.Reset()
	require.NoError(t, report.Render(&page, d))
	out := page.String()
	contains(t, out, "Δ implicit margin against alignment potential")
	contains(t, out, "teacher-forced under tiny-1 after training (3 of 4 pairs checked)")
	contains(t, out, "Mean Δ: selected 0.25, not selected -0.125.")
	contains(t, out, "50% before, 100% after")
	contains(t, out, "alignment_potential 0.5 [-0.25, 0.75]; explicit_margin undefined")
	contains(t, out, "<title>pair 1: AP 1.5, Δ 0.375</title>")
	contains(t, out, "<title>pair 3: AP -1, Δ -0.125</title>")
}
