package report

import (
	"fmt"
	"math"
)

// maxScatterPoints bounds the dots of the margin scatter; past it every
// k-th pair (by id) is drawn, which keeps the picture's proportions and the
// file small (a 100,000-pair iteration would otherwise weigh ~15 MB). Load
// reads only those pairs.
const maxScatterPoints = 2000

// Figure is one chart of the report with its title and a caption that
// states the numbers behind it.
type Figure struct {
	ID, Title, Caption string
	SVG                string
}

// Figures draws the report's charts from d, in the order they appear.
func Figures(d *Data) []Figure {
	figs := []Figure{
		rewardFigure(d), marginFigure(d), apFigure(d), outcomeFigure(d),
		evolutionFigure(d), trendRewardFigure(d),
	}
	figs = append(figs, learningFigures(d)...)
	figs = append(figs, trendMarginFigures(d)...)
	return append(figs, lengthFigure(d), trendLengthFigure(d))
}

func rewardFigure(d *Data) Figure {
	s := d.Summary
	return Figure{
		ID: "rewards", Title: "Reward of chosen and rejected responses",
		Caption: fmt.Sprintf("%d pairs. Mean reward: chosen %s, rejected %s (selected pairs: chosen %s, rejected %s).",
			s.Pairs, num(orNaN(s.All.ChosenReward)), num(orNaN(s.All.RejectedReward)), num(orNaN(s.Sel.ChosenReward)), num(orNaN(s.Sel.RejectedReward))),
		SVG: histogramChart("Histogram of the rewards of chosen and rejected responses", "reward", []histSeries{
			{label: "rejected", color: colRejected},
			{label: "chosen", color: colChosen},
		}, d.Rewards, false, nil, ""),
	}
}

func marginFigure(d *Data) Figure {
	var sel, rest []point
	for _, p := range d.Pairs {
		if math.IsNaN(p.ImplicitMargin) {
			continue
		}
		pt := point{x: p.ExplicitMargin, y: math.Abs(p.ImplicitMargin),
			title: fmt.Sprintf("pair %d: explicit %s, |implicit| %s, AP %s", p.ID, num(p.ExplicitMargin), num(math.Abs(p.ImplicitMargin)), num(p.AlignmentPotential))}
		if p.Selected {
			sel = append(sel, pt)
		} else {
			rest = append(rest, pt)
		}
	}
	form := "SimPO (length-normalised)"
	if d.Settings.Scoring.Implicit == "dpo" {
		form = "DPO (with the reference model)"
	}
	caption := fmt.Sprintf("Each dot is a pair; blue ones are selected for training by %s. Implicit margin: %s form.",
		d.Settings.Selection.Metric, form)
	if d.ScatterStride > 1 {
		caption += fmt.Sprintf(" Showing %d of %d pairs (one in %d, by id).", len(sel)+len(rest), d.Summary.Pairs, d.ScatterStride)
	}
	return Figure{
		ID: "margins", Title: "Explicit margin vs |implicit margin|", Caption: caption,
		SVG: scatterChart("Scatter of explicit margin against absolute implicit margin, selected pairs highlighted",
			"explicit margin  r(chosen) − r(rejected)", "|implicit margin|", selectedSeries(rest, sel)),
	}
}

// selectedSeries draws pairs not selected under the selected ones, which
// are highlighted.
func selectedSeries(rest, sel []point) []scatterSeries {
	return []scatterSeries{
		{label: "not selected", color: colNotSelected, radius: 2.5, points: rest},
		{label: "selected", color: colSelected, radius: 3, points: sel},
	}
}

func apFigure(d *Data) Figure {
	sc := d.Settings.Selection
	keep := fmt.Sprintf("the top %g of pairs", sc.Ratio)
	if sc.Count > 0 {
		keep = fmt.Sprintf("the top %d pairs", sc.Count)
	}
	caption := fmt.Sprintf("AP = z(explicit margin) − %g · z(|implicit margin|). Selection by %s keeps %s: %d of %d.",
		d.Settings.Scoring.ImplicitWeight, sc.Metric, keep, d.Summary.Selected, d.Summary.Pairs)
	label := ""
	if d.Cutoff != nil {
		caption += fmt.Sprintf(" Cut-off: AP ≥ %s.", num(*d.Cutoff))
		label = "cut-off " + num(*d.Cutoff)
	} else {
		caption += " The selection metric is not AP, so there is no single AP cut-off."
	}
	return Figure{
		ID: "ap", Title: "Alignment potential", Caption: caption,
		SVG: histogramChart("Histogram of alignment potential with the selection cut-off", "alignment potential (AP)", []histSeries{
			{label: "not selected", color: colNotSelected},
			{label: "selected", color: colSelected},
		}, d.AP, true, d.Cutoff, label),
	}
}

func outcomeFigure(d *Data) Figure {
	var cats []string
	var vals []float64
	var colors []string
	for _, c := range d.Outcomes {
		cats = append(cats, c.Label)
		vals = append(vals, float64(c.N))
		switch c.Label {
		case "paired":
			colors = append(colors, colChosen)
		case "failed":
			colors = append(colors, colRejected)
		case "pending":
			colors = append(colors, colPending)
		default:
			colors = append(colors, colNoPair)
		}
	}
	s := d.Summary
	return Figure{
		ID: "outcomes", Title: "Outcomes of the prompts",
		Caption: fmt.Sprintf("%d prompts in the pool, %d generate tasks: %d done (%d paired, %d without a pair), %d failed.",
			s.Prompts, s.TasksTotal, s.TasksDone, s.Pairs, s.TasksDone-s.Pairs, s.TasksFailed),
		SVG: barChart("Bar chart of generate task outcomes", "prompts", cats, []barSeries{{label: "prompts", colors: colors, values: vals}}),
	}
}

func evolutionFigure(d *Data) Figure {
	var cats []string
	var made, kept []float64
	var totalMade, totalKept int64
	for _, s := range d.Evolution {
		cats = append(cats, s.Strategy)
		made = append(made, float64(s.Made))
		kept = append(kept, float64(s.Kept))
		totalMade += s.Made
		totalKept += s.Kept
	}
	caption := "This iteration evolved no prompts (evolution is off, or no later iteration takes evolved prompts)."
	if len(cats) > 0 {
		caption = fmt.Sprintf("%d of %d rewrites kept after filtering (non-empty, within %g× the original's length, under %d characters, not a known prompt); they form the next iteration's pool.",
			totalKept, totalMade, d.Settings.Evolve.LengthRatio, d.Settings.Evolve.MaxPromptChars)
	}
	return Figure{
		ID: "evolution", Title: "Prompt evolution by strategy", Caption: caption,
		SVG: barChart("Bar chart of evolved prompts per strategy, made and kept", "rewrites", cats, []barSeries{
			{label: "made", color: colMade, values: made},
			{label: "kept", color: colSelected, values: kept},
		}),
	}
}

// trend returns the categories (iteration names), the index of this
// iteration among them, and one value per iteration from pick.
func trend(d *Data, pick func(IterationTrend) float64) (cats []string, bold int, vals []float64) {
	bold = -1
	for i, t := range d.Trend {
		cats = append(cats, t.Name)
		vals = append(vals, pick(t))
		if t.Name == d.Iteration {
			bold = i
		}
	}
	return cats, bold, vals
}

func trendRewardFigure(d *Data) Figure {
	cats, bold, all := trend(d, func(t IterationTrend) float64 { return t.MeanChosenAll })
	_, _, sel := trend(d, func(t IterationTrend) float64 { return t.MeanChosenSel })
	return Figure{
		ID: "trend-reward", Title: "Mean reward of chosen responses, by iteration",
		Caption: fmt.Sprintf("Over all pairs and over the selected ones, for every iteration of run %s that has pairs; this iteration in bold.", d.Run),
		SVG: lineChart("Line chart of the mean chosen reward per iteration", "mean reward", cats, bold, []lineSeries{
			{label: "all pairs", color: colNotSelected, values: all},
			{label: "selected", color: colChosen, values: sel},
		}),
	}
}

func trendMarginFigures(d *Data) []Figure {
	cats, bold, exAll := trend(d, func(t IterationTrend) float64 { return t.MeanExplicitAll })
	_, _, exSel := trend(d, func(t IterationTrend) float64 { return t.MeanExplicitSel })
	_, _, imAll := trend(d, func(t IterationTrend) float64 { return t.MeanAbsImplicitAll })
	_, _, imSel := trend(d, func(t IterationTrend) float64 { return t.MeanAbsImplicitSel })
	return []Figure{{
		ID: "trend-explicit", Title: "Mean explicit margin, by iteration",
		Caption: "Of the pairs selected for training and of all pairs: how far apart the rewards of chosen and rejected are.",
		SVG: lineChart("Line chart of the mean explicit margin per iteration", "mean explicit margin", cats, bold, []lineSeries{
			{label: "all pairs", color: colNotSelected, values: exAll},
			{label: "selected", color: colSelected, values: exSel},
		}),
	}, {
		ID: "trend-implicit", Title: "Mean |implicit margin|, by iteration",
		Caption: "Of the pairs selected for training and of all pairs: how far apart the policy already holds chosen and rejected.",
		SVG: lineChart("Line chart of the mean absolute implicit margin per iteration", "mean |implicit margin|", cats, bold, []lineSeries{
			{label: "all pairs", color: colNotSelected, values: imAll},
			{label: "selected", color: colMargin2, values: imSel},
		}),
	}}
}
