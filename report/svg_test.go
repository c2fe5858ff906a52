package report

import (
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNiceNum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		x     float64
		round bool
		want  float64
	}{
		{"round down to 1", 0.875, true, 1},
		{"round to 2", 25, true, 20},
		{"round up to 5", 3.2, true, 5},
		{"round to 10", 7.5, true, 10},
		{"ceil to 2", 1.2, false, 2},
		{"ceil to 10", 7, false, 10},
		{"ceil of an exact 5", 0.5, false, 0.5},
		{"small", 0.23, true, 0.2},
		{"zero gives 1", 0, true, 1},
		{"NaN gives 1", math.NaN(), false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.InDelta(t, tt.want, niceNum(tt.x, tt.round), 1e-12)
		})
	}
}

func TestNiceAxis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		lo, hi       float64
		ticks        int
		want         axis
		wantTicks    []float64
		labelAt      float64
		wantLabelAtV string
	}{
		// span 3.6 → nice 5, /4 = 1.25 → step 1.
		{"rewards", 0.1, 3.7, 5, axis{0, 4, 1}, []float64{0, 1, 2, 3, 4}, 2, "2"},
		// span 6.72 → nice 10, /7 ≈ 1.43 → step 1.
		{"z-scores", -3.34, 3.38, 8, axis{-4, 4, 1}, []float64{-4, -3, -2, -1, 0, 1, 2, 3, 4}, -3, "-3"},
		// span 0.045 → nice 0.05, /4 = 0.0125 → step 0.01.
		{"small margins", 0.002, 0.047, 5, axis{0, 0.05, 0.01}, []float64{0, 0.01, 0.02, 0.03, 0.04, 0.05}, 0.03, "0.03"},
		// A single value is widened by ±0.5: span 1, /4 → step 0.2.
		{"one value", 2, 2, 5, axis{1.4, 2.6, 0.2}, []float64{1.4, 1.6, 1.8, 2, 2.2, 2.4, 2.6}, 0, "0.0"},
		{"reversed", 4, 0, 5, axis{0, 4, 1}, []float64{0, 1, 2, 3, 4}, -1e-17, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := niceAxis(tt.lo, tt.hi, tt.ticks)
			require.InDelta(t, tt.want.lo, a.lo, 1e-9)
			require.InDelta(t, tt.want.hi, a.hi, 1e-9)
			require.InDelta(t, tt.want.step, a.step, 1e-12)
			got := a.ticks()
			require.Len(t, got, len(tt.wantTicks))
			for i := range got {
				require.InDelta(t, tt.wantTicks[i], got[i], 1e-9)
			}
			require.Equal(t, tt.wantLabelAtV, a.label(tt.labelAt))
		})
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	// Range [-0.3, 0.9] over 4 bins: 0.3 per bin rounds to a step of 0.5,
	// starting at -0.5: [-0.5, 0), [0, 0.5), [0.5, 1).
	edges, counts := histogram([][]float64{{0.1, 0.2, 0.9, math.NaN()}, {-0.3}}, 4)
	require.InDeltaSlice(t, []float64{-0.5, 0, 0.5, 1}, edges, 1e-12)
	require.Equal(t, [][]int{{0, 2, 1}, {1, 0, 0}}, counts)

	// A value on an edge goes to the bin it opens; the maximum to the last.
	edges, counts = histogram([][]float64{{0, 0.5, 1}}, 2)
	require.InDeltaSlice(t, []float64{0, 0.5, 1, 1.5}, edges, 1e-12)
	require.Equal(t, [][]int{{1, 1, 1}}, counts)

	// All equal: one bin of width 0.1·|v| rounded (0.2) holding them all.
	edges, counts = histogram([][]float64{{2, 2, 2}}, 10)
	require.Len(t, edges, 2)
	require.InDelta(t, 0.2, edges[1]-edges[0], 1e-12)
	require.LessOrEqual(t, edges[0], 2.0)
	require.Equal(t, [][]int{{3}}, counts)

	edges, counts = histogram([][]float64{{}, {math.NaN()}}, 10)
	require.Empty(t, edges)
	require.Len(t, counts, 2)
}

func TestBinTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		n    int
		want int
	}{
		{"few pairs get 8 bins", 10, 8},
		{"square root in between", 400, 20},
		{"many pairs get 40", 100000, 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, binTarget(tt.n))
		})
	}
}

func TestChartsMarkEveryDatum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		svg   string
		marks int
	}{
		// The chosen values fall in three bins, the rejected one in one.
		{"histogram draws one bar per non-empty bin and series", histogramChart("h", "x", []histSeries{
			{label: "chosen", color: colChosen},
			{label: "rejected", color: colRejected},
		}, NewHistogram([]float64{0.5, 1.5, 2.5}, []float64{0.5}), false, nil, ""), 4},
		{"scatter draws one dot per point", scatterChart("s", "x", "y", []scatterSeries{
			{label: "a", color: colSelected, radius: 3, points: []point{{1, 2, "p1"}, {2, 3, "p2"}}},
			{label: "b", color: colNotSelected, radius: 2, points: []point{{0, 0, "p3"}}},
		}), 3},
		{"bars draw one bar per category and series", barChart("b", "n", []string{"breadth", "deepen"}, []barSeries{
			{label: "made", color: colMade, values: []float64{5, 5}},
			{label: "kept", color: colSelected, values: []float64{3, 0}},
		}), 4},
		{"lines skip missing values", lineChart("l", "y", []string{"iter0", "iter1", "iter2"}, 1, []lineSeries{
			{label: "all", color: colChosen, values: []float64{1, math.NaN(), 3}},
		}), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.marks, strings.Count(tt.svg, `class="mark"`))
			require.True(t, strings.HasPrefix(tt.svg, `<svg class="chart"`))
			require.True(t, strings.HasSuffix(tt.svg, `</svg>`))
			require.NotContains(t, tt.svg, "NaN")
		})
	}
}

func TestEmptyChartsSayWhy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, svg, why string
	}{
		{"histogram", histogramChart("h", "x", []histSeries{{label: "a", color: colChosen}}, NewHistogram(nil), true, nil, ""), "no pairs in this iteration"},
		{"scatter", scatterChart("s", "x", "y", nil), "no pairs in this iteration"},
		{"bars", barChart("b", "n", nil, nil), "nothing to count"},
		{"lines", lineChart("l", "y", []string{"iter0"}, 0, []lineSeries{{label: "a", values: []float64{math.NaN()}}}), "no iteration has pairs yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Contains(t, tt.svg, tt.why)
			require.NotContains(t, tt.svg, `class="mark"`)
		})
	}
}

func TestChartTextIsEscaped(t *testing.T) {
	t.Parallel()
	svg := barChart(`<b>"x"</b>`, "n", []string{`<script>alert(1)</script>`}, []barSeries{{label: "a&b", color: colMade, values: []float64{1}}})
	require.NotContains(t, svg, "<script>")
	require.NotContains(t, svg, "<b>")
	require.Contains(t, svg, "&lt;script&gt;")
	require.Contains(t, svg, "a&amp;b")
}

func TestCutoffLine(t *testing.T) {
	t.Parallel()
	cut := 0.25
	svg := histogramChart("ap", "AP", []histSeries{{label: "selected", color: colSelected}}, NewHistogram([]float64{-1, 0, 1, 2}), true, &cut, "cut-off 0.25")
	require.Equal(t, 1, strings.Count(svg, `class="cutoff"`))
	require.Contains(t, svg, "cut-off 0.25")
}
