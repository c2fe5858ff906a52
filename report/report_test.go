package report_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/report"
)

func ptr(v float64) *float64 { return &v }

// sample is a small iteration written out by hand: four pairs, the best
// two (by AP) selected, one prompt without a pair, one failure.
func sample() *report.Data {
	var s config.Settings
	s.Name, s.PolicyModel = "iter0", "tiny-0"
	s.Generation.Samples, s.Generation.Temperature, s.Generation.TopP = 4, 0.8, 0.95
	s.Scoring.Implicit, s.Scoring.ImplicitWeight = "simpo", 1
	s.Selection.Metric, s.Selection.Ratio = "alignment_potential", 0.5
	s.Evolve.Strategies, s.Evolve.LengthRatio, s.Evolve.MaxPromptChars = []string{"breadth", "deepen"}, 5, 8000
	return &report.Data{
		Run: "demo", Iteration: "iter0", Stage: "done", PolicyModel: "tiny-0", Settings: s,
		Generated: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Summary: report.Summary{Prompts: 6, TasksDone: 5, TasksFailed: 1, TasksTotal: 6, Pairs: 4, Selected: 2,
			All: report.Means{ChosenReward: ptr(2), RejectedReward: ptr(0.5), ExplicitMargin: ptr(1.5), AbsImplicitMargin: ptr(0.2)},
			Sel: report.Means{ChosenReward: ptr(3), RejectedReward: ptr(0.25), ExplicitMargin: ptr(2.75), AbsImplicitMargin: ptr(0.1)}},
		Outcomes: []report.Count{{Label: "paired", N: 4}, {Label: "all rewards equal", N: 1}, {Label: "failed", N: 1}},
		Failures: []report.Count{{Label: "sample: llm: policy endpoint: status 400: too long", N: 1}},
		Pairs: []report.Pair{
			{ID: 1, ChosenReward: 3, RejectedReward: 0, ExplicitMargin: 3, ImplicitMargin: 0.1, AlignmentPotential: 1.5, Selected: true},
			{ID: 2, ChosenReward: 3, RejectedReward: 0.5, ExplicitMargin: 2.5, ImplicitMargin: -0.1, AlignmentPotential: 1.0, Selected: true},
			{ID: 3, ChosenReward: 1, RejectedReward: 0.5, ExplicitMargin: 0.5, ImplicitMargin: 0.3, AlignmentPotential: -1.0},
			{ID: 4, ChosenReward: 1, RejectedReward: 1, ExplicitMargin: 0, ImplicitMargin: 0.3, AlignmentPotential: -1.5},
		},
		// The pairs' rewards (rejected, chosen) and AP (not selected, selected).
		Rewards:   report.NewHistogram([]float64{0, 0.5, 0.5, 1}, []float64{3, 3, 1, 1}),
		AP:        report.NewHistogram([]float64{-1.0, -1.5}, []float64{1.5, 1.0}),
		Cutoff:    ptr(1.0),
		Evolution: []report.StrategyCount{{Strategy: "breadth", Made: 1, Kept: 1}, {Strategy: "deepen", Made: 1, Kept: 0}},
		Dropped:   []report.Count{{Label: "too long for length_ratio", N: 1}},
		Trend: []report.IterationTrend{{Name: "iter0", Pairs: 4, Selected: 2, MeanChosenAll: 2, MeanChosenSel: 3,
			MeanExplicitAll: 1.5, MeanExplicitSel: 2.75, MeanAbsImplicitAll: 0.2, MeanAbsImplicitSel: 0.1}},
		Top: []report.TopPair{{Rank: 1, Prompt: `how do I escape <img src=x onerror=alert(1)> in HTML?`, Chosen: "Use &lt;.", Rejected: "no",
			ChosenReward: 3, ExplicitMargin: 3, ImplicitMargin: 0.1, AlignmentPotential: 1.5}},
	}
}

// contains is require.Contains without printing the whole page.
func contains(t *testing.T, page, want string) {
	t.Helper()
	require.True(t, strings.Contains(page, want), "the page lacks %q", want)
}

func TestRenderIsSelfContained(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	require.NoError(t, report.Render(&buf, sample()))
	page := buf.String()

	require.Equal(t, 10, strings.Count(page, `<svg class="chart"`))
	require.False(t, strings.Contains(page, "<script"), "no scripts")
	require.False(t, strings.Contains(page, "<link"), "no linked resources")
	require.False(t, strings.Contains(page, "<img"), "prompt text is escaped")
	contains(t, page, "&lt;img src=x onerror=alert(1)&gt;")
	contains(t, page, "Use &amp;lt;.") // response text is escaped once more

	for _, want := range []string{
		"Run demo · iteration iter0",
		"Selection by alignment_potential keeps the top 0.5 of pairs: 2 of 4. Cut-off: AP ≥ 1.",
		"6 prompts in the pool, 6 generate tasks: 5 done (4 paired, 1 without a pair), 1 failed.",
		"1 of 2 rewrites kept after filtering",
		"too long for length_ratio",
		"sample: llm: policy endpoint: status 400: too long",
		`class="cutoff"`,
	} {
		contains(t, page, want)
	}
}

func TestRenderWithoutEvolutionOrSelection(t *testing.T) {
	t.Parallel()
	d := sample()
	d.Evolution, d.Dropped, d.Top, d.Cutoff = nil, nil, nil, nil
	d.Settings.Selection.Metric = "explicit_margin"
	var buf bytes.Buffer
	require.NoError(t, report.Render(&buf, d))
	page := buf.String()
	contains(t, page, "This iteration evolved no prompts")
	contains(t, page, "nothing to count")
	contains(t, page, "The selection metric is not AP, so there is no single AP cut-off.")
	contains(t, page, "No pair is selected in this iteration.")
	require.False(t, strings.Contains(page, `class="cutoff"`), "no cut-off line")
}

func TestFiguresScatterSamplesLargeIterations(t *testing.T) {
	t.Parallel()
	d := sample()
	// Load reads every third of 5000 pairs: ⌈5000/3⌉ = 1667.
	d.Pairs, d.ScatterStride, d.Summary.Pairs = nil, 3, 5000
	for i := 0; i < 5000; i += 3 {
		d.Pairs = append(d.Pairs, report.Pair{ID: int64(i + 1), ExplicitMargin: float64(i % 7), ImplicitMargin: float64(i%5) / 10})
	}
	for _, f := range report.Figures(d) {
		if f.ID != "margins" {
			continue
		}
		// One in 3 of 5000 pairs: ⌈5000/3⌉ = 1667 dots.
		require.Equal(t, 1667, strings.Count(f.SVG, `class="mark"`))
		require.Contains(t, f.Caption, "Showing 1667 of 5000 pairs (one in 3, by id).")
	}
}

// The report's figures, in the order they appear.
func ExampleFigures() {
	for _, f := range report.Figures(sample()) {
		fmt.Printf("%-15s %s\n", f.ID, f.Title)
	}
	// Output:
	// rewards         Reward of chosen and rejected responses
	// margins         Explicit margin vs |implicit margin|
	// ap              Alignment potential
	// outcomes        Outcomes of the prompts
	// evolution       Prompt evolution by strategy
	// trend-reward    Mean reward of chosen responses, by iteration
	// trend-explicit  Mean explicit margin, by iteration
	// trend-implicit  Mean |implicit margin|, by iteration
	// length          Reward against reply length
	// trend-length    Chosen reply length, by iteration
}
