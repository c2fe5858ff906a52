package report

import (
	"fmt"
	"html"
	"math"
	"strconv"
	"strings"
)

// The report's charts are SVG written here: a handful of shapes on linear
// axes, small enough that a plotting library would add more than it saves,
// and fully under control for a self-contained file. Every data mark has
// class "mark" (the browser test counts them) and a <title> tooltip.

// Colours of the report, shared with its CSS.
const (
	colChosen      = "#2f9e44"
	colRejected    = "#e03131"
	colSelected    = "#1971c2"
	colNotSelected = "#adb5bd"
	colCutoff      = "#f08c00"
	colNoPair      = "#fab005"
	colPending     = "#ced4da"
	colMade        = "#a5d8ff"
	colMargin2     = "#9c36b5"
)

// Chart geometry, in SVG user units (the charts scale to their box).
const (
	chartW = 560.0
	chartH = 300.0
)

// axis is a linear axis over [lo, hi] with ticks at multiples of step.
type axis struct {
	lo, hi, step float64
}

// niceNum rounds x to 1, 2 or 5 times a power of ten: the nearest such
// number when round, else the smallest one ≥ x (Heckbert's "nice numbers").
func niceNum(x float64, round bool) float64 {
	if x <= 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 1
	}
	exp := math.Floor(math.Log10(x))
	// Rounded so that 0.3 computed as 0.29999999999999993 counts as 3.
	f := math.Round(x/math.Pow(10, exp)*1e9) / 1e9
	var nf float64
	switch {
	case round && f < 1.5, !round && f <= 1:
		nf = 1
	case round && f < 3, !round && f <= 2:
		nf = 2
	case round && f < 7, !round && f <= 5:
		nf = 5
	default:
		nf = 10
	}
	return nf * math.Pow(10, exp)
}

// niceAxis covers [lo, hi] with about ticks ticks at nice multiples. An
// empty range is widened so the axis still has a span.
func niceAxis(lo, hi float64, ticks int) axis {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 0, 1
	}
	if hi < lo {
		lo, hi = hi, lo
	}
	if hi == lo {
		pad := math.Max(math.Abs(lo)*0.1, 0.5)
		lo, hi = lo-pad, hi+pad
	}
	step := niceNum(niceNum(hi-lo, false)/float64(max(ticks-1, 1)), true)
	return axis{lo: math.Floor(lo/step+1e-9) * step, hi: math.Ceil(hi/step-1e-9) * step, step: step}
}

// ticks are the tick values, computed from integer multiples so they do
// not drift.
func (a axis) ticks() []float64 {
	var out []float64
	first := math.Round(a.lo / a.step)
	for i := 0; ; i++ {
		v := (first + float64(i)) * a.step
		if v > a.hi+a.step*1e-9 {
			break
		}
		out = append(out, v)
	}
	return out
}

// label formats a tick with as many decimals as the step needs.
func (a axis) label(v float64) string {
	dec := max(0, int(-math.Floor(math.Log10(a.step)+1e-9)))
	if math.Abs(v) < a.step*1e-9 {
		v = 0 // no "-0"
	}
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// plot is one chart being drawn: the plot area inside margins, two axes,
// and the SVG body.
type plot struct {
	left, right, top, bottom float64 // plot area in SVG units
	x, y                     axis
	b                        strings.Builder
}

func newPlot(x, y axis, leftMargin float64) *plot {
	return &plot{left: leftMargin, right: chartW - 16, top: 28, bottom: chartH - 42, x: x, y: y}
}

func (p *plot) px(v float64) float64 {
	return p.left + (v-p.x.lo)/(p.x.hi-p.x.lo)*(p.right-p.left)
}

func (p *plot) py(v float64) float64 {
	return p.bottom - (v-p.y.lo)/(p.y.hi-p.y.lo)*(p.bottom-p.top)
}

func (p *plot) printf(format string, args ...any) { fmt.Fprintf(&p.b, format, args...) }

// grid draws the y grid lines with labels, the x ticks with labels (or the
// given category labels at integer positions) and the axis titles.
func (p *plot) grid(xTitle, yTitle string, xCategories []string, bold int) {
	for _, v := range p.y.ticks() {
		y := p.py(v)
		p.printf(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, p.left, y, p.right, y)
		p.printf(`<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`, p.left-6, y, p.y.label(v))
	}
	if xCategories != nil {
		for i, c := range xCategories {
			weight := ""
			if i == bold {
				weight = ` font-weight="bold"`
			}
			p.printf(`<text x="%.1f" y="%.1f" text-anchor="middle"%s>%s</text>`, p.px(float64(i)), p.bottom+16, weight, esc(c))
		}
	} else {
		for _, v := range p.x.ticks() {
			x := p.px(v)
			p.printf(`<line class="tick" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, x, p.bottom, x, p.bottom+4)
			p.printf(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, p.bottom+16, p.x.label(v))
		}
	}
	p.printf(`<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, p.left, p.bottom, p.right, p.bottom)
	p.printf(`<text class="title" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, (p.left+p.right)/2, chartH-8, esc(xTitle))
	p.printf(`<text class="title" x="12" y="%.1f" text-anchor="middle" transform="rotate(-90 12 %.1f)">%s</text>`,
		(p.top+p.bottom)/2, (p.top+p.bottom)/2, esc(yTitle))
}

// legendItem is a swatch and its label.
type legendItem struct{ color, label string }

// legend draws the items in a row above the plot area, right-aligned.
func (p *plot) legend(items []legendItem) {
	x := p.right
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		w := 7*float64(len([]rune(it.label))) + 18
		x -= w
		p.printf(`<rect x="%.1f" y="8" width="10" height="10" rx="2" fill="%s"/>`, x, it.color)
		p.printf(`<text x="%.1f" y="13" dominant-baseline="middle">%s</text>`, x+14, esc(it.label))
		x -= 8
	}
}

// svg wraps the body in the root element.
func (p *plot) svg(label string) string {
	return svgRoot(label, p.b.String())
}

func svgRoot(label, body string) string {
	return fmt.Sprintf(`<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">%s</svg>`,
		chartW, chartH, esc(label), body)
}

// emptyChart is the chart shown when there is nothing to draw.
func emptyChart(label, why string) string {
	return svgRoot(label, fmt.Sprintf(`<text class="empty" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, chartW/2, chartH/2, esc(why)))
}

func esc(s string) string { return html.EscapeString(s) }

// num formats a value for tooltips and tables: 4 significant digits.
func num(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'g', 4, 64)
}

// histogram counts values into bins of a nice width covering all series:
// edges[i] ≤ v < edges[i+1], the maximum in the last bin. NaNs are skipped.
// With no values it returns no bins.
func histogram(series [][]float64, target int) (edges []float64, counts [][]int) {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, vs := range series {
		for _, v := range vs {
			if !math.IsNaN(v) {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	if math.IsInf(lo, 1) {
		return nil, make([][]int, len(series))
	}
	start, step, n := bins(lo, hi, target)
	edges = make([]float64, n+1)
	for i := range edges {
		edges[i] = start + float64(i)*step
	}
	counts = make([][]int, len(series))
	for s, vs := range series {
		counts[s] = make([]int, n)
		for _, v := range vs {
			if math.IsNaN(v) {
				continue
			}
			counts[s][bin(v, start, step, n)]++
		}
	}
	return edges, counts
}

// bins chooses about target bins of a nice width covering [lo, hi]: n
// bins from start, step wide.
func bins(lo, hi float64, target int) (start, step float64, n int) {
	if hi == lo {
		step = niceNum(math.Max(math.Abs(lo)*0.1, 0.1), true)
	} else {
		step = niceNum((hi-lo)/float64(max(target, 1)), true)
	}
	start = math.Floor(lo/step) * step
	return start, step, int(math.Floor((hi-start)/step)) + 1
}

// bin is the bin of v among n bins from start, step wide. binSQL is the
// same in SQL, over the same float8 arithmetic, for $start, $step and $n.
func bin(v, start, step float64, n int) int {
	return min(max(int(math.Floor((v-start)/step)), 0), n-1)
}

// binSQL returns bin's SQL for the value expression v and the parameters
// numbered first, first+1 and first+2 (start, step, n).
func binSQL(v string, first int) string {
	return fmt.Sprintf("least(greatest(floor((%s - $%d::float8) / $%d::float8), 0), $%d::int - 1)::int", v, first, first+1, first+2)
}

// binTarget is the number of histogram bins for n values: √n within
// [8, 40].
func binTarget(n int) int {
	return min(max(int(math.Sqrt(float64(n))), 8), 40)
}

// histSeries is one coloured series of a histogram chart.
type histSeries struct {
	label, color string
}

// histogramChart draws h's series on its shared bins: overlaid with some
// transparency, or stacked in order (first at the bottom). A non-nil
// cutoff draws a dashed vertical line labelled cutoffLabel.
func histogramChart(label, xTitle string, series []histSeries, h Histogram, stacked bool, cutoff *float64, cutoffLabel string) string {
	edges, counts := h.Edges(), h.Counts
	if len(edges) == 0 {
		return emptyChart(label, "no pairs in this iteration")
	}
	top := int64(0)
	for b := range len(edges) - 1 {
		sum := int64(0)
		for s := range series {
			if stacked {
				sum += counts[s][b]
			} else {
				sum = max(sum, counts[s][b])
			}
		}
		top = max(top, sum)
	}
	xlo, xhi := edges[0], edges[len(edges)-1]
	if cutoff != nil {
		xlo, xhi = math.Min(xlo, *cutoff), math.Max(xhi, *cutoff)
	}
	p := newPlot(niceAxis(xlo, xhi, 8), niceAxis(0, float64(top), 5), 52)
	p.grid(xTitle, "pairs", nil, -1)
	base := make([]int64, len(edges)-1)
	for s, ser := range series {
		opacity := 0.55
		if stacked {
			opacity = 0.9
		}
		for b := range len(edges) - 1 {
			c := counts[s][b]
			if c == 0 {
				continue
			}
			y0, y1 := int64(0), c
			if stacked {
				y0, y1 = base[b], base[b]+c
				base[b] += c
			}
			x0, x1 := p.px(edges[b])+0.5, p.px(edges[b+1])-0.5
			p.printf(`<rect class="mark" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" fill-opacity="%.2f"><title>%s: %d in [%s, %s)</title></rect>`,
				x0, p.py(float64(y1)), math.Max(x1-x0, 0.5), p.py(float64(y0))-p.py(float64(y1)), ser.color, opacity,
				esc(ser.label), c, num(edges[b]), num(edges[b+1]))
		}
	}
	if cutoff != nil {
		x := p.px(*cutoff)
		p.printf(`<line class="cutoff" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2" stroke-dasharray="5 3"/>`,
			x, p.top, x, p.bottom, colCutoff)
		p.printf(`<text x="%.1f" y="%.1f" fill="%s">%s</text>`, x+4, p.top+10, colCutoff, esc(cutoffLabel))
	}
	var items []legendItem
	for _, s := range series {
		items = append(items, legendItem{s.color, s.label})
	}
	p.legend(items)
	return p.svg(label)
}

// point is one scatter point.
type point struct {
	x, y  float64
	title string
}

// scatterSeries is one coloured series of a scatter chart, drawn in order.
type scatterSeries struct {
	label, color string
	radius       float64
	points       []point
}

// fitLine is a straight line y = intercept + slope·x drawn over the x
// range of a scatter's points.
type fitLine struct {
	label, color     string
	slope, intercept float64
}

// scatterChart draws the series as dots, and the lines over them.
func scatterChart(label, xTitle, yTitle string, series []scatterSeries, lines ...fitLine) string {
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, pt := range s.points {
			xlo, xhi = math.Min(xlo, pt.x), math.Max(xhi, pt.x)
			ylo, yhi = math.Min(ylo, pt.y), math.Max(yhi, pt.y)
		}
	}
	if math.IsInf(xlo, 1) {
		return emptyChart(label, "no pairs in this iteration")
	}
	for _, l := range lines { // the axes hold the lines' ends
		for _, x := range []float64{xlo, xhi} {
			ylo, yhi = math.Min(ylo, l.intercept+l.slope*x), math.Max(yhi, l.intercept+l.slope*x)
		}
	}
	p := newPlot(niceAxis(math.Min(xlo, 0), xhi, 8), niceAxis(math.Min(ylo, 0), yhi, 6), 52)
	p.grid(xTitle, yTitle, nil, -1)
	var items []legendItem
	for _, s := range series {
		for _, pt := range s.points {
			p.printf(`<circle class="mark" cx="%.1f" cy="%.1f" r="%.1f" fill="%s" fill-opacity="0.75"><title>%s</title></circle>`,
				p.px(pt.x), p.py(pt.y), s.radius, s.color, esc(pt.title))
		}
		items = append(items, legendItem{s.color, s.label})
	}
	for _, l := range lines {
		p.printf(`<line class="line" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"><title>%s</title></line>`,
			p.px(xlo), p.py(l.intercept+l.slope*xlo), p.px(xhi), p.py(l.intercept+l.slope*xhi), l.color, esc(l.label))
		items = append(items, legendItem{l.color, l.label})
	}
	p.legend(items)
	return p.svg(label)
}

// barSeries is one coloured series of a bar chart; values align with the
// chart's categories, and colors, when set, colour each bar on its own.
type barSeries struct {
	label, color string
	colors       []string
	values       []float64
}

// barChart draws horizontal bars, one group per category (top to bottom),
// one bar per series in a group, with the value at the bar's end.
func barChart(label, xTitle string, categories []string, series []barSeries) string {
	if len(categories) == 0 {
		return emptyChart(label, "nothing to count")
	}
	top := 0.0
	longest := 0
	for _, s := range series {
		for _, v := range s.values {
			top = math.Max(top, v)
		}
	}
	for _, c := range categories {
		longest = max(longest, len([]rune(c)))
	}
	left := math.Min(16+6.2*float64(longest), chartW*0.45)
	x := niceAxis(0, math.Max(top*1.08, 1), 6)
	p := newPlot(x, axis{lo: 0, hi: 1, step: 1}, left)
	for _, v := range x.ticks() {
		px := p.px(v)
		p.printf(`<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, px, p.top, px, p.bottom)
		p.printf(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, px, p.bottom+16, x.label(v))
	}
	p.printf(`<text class="title" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, (p.left+p.right)/2, chartH-8, esc(xTitle))
	band := (p.bottom - p.top) / float64(len(categories))
	barH := math.Min(band*0.8/float64(len(series)), 22)
	for ci, c := range categories {
		y0 := p.top + band*float64(ci) + (band-barH*float64(len(series)))/2
		p.printf(`<text x="%.1f" y="%.1f" text-anchor="end" dominant-baseline="middle">%s</text>`,
			p.left-6, p.top+band*(float64(ci)+0.5), esc(truncate(c, int((left-16)/6.2))))
		for si, s := range series {
			v := s.values[ci]
			color := s.color
			if s.colors != nil {
				color = s.colors[ci]
			}
			y := y0 + barH*float64(si)
			w := p.px(v) - p.px(0)
			p.printf(`<rect class="mark" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s — %s: %s</title></rect>`,
				p.px(0), y+1, math.Max(w, 1), barH-2, color, esc(c), esc(s.label), num(v))
			p.printf(`<text x="%.1f" y="%.1f" dominant-baseline="middle">%s</text>`, p.px(0)+math.Max(w, 1)+4, y+barH/2, num(v))
		}
	}
	p.printf(`<line class="axis" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, p.left, p.top, p.left, p.bottom)
	if len(series) > 1 {
		var items []legendItem
		for _, s := range series {
			items = append(items, legendItem{s.color, s.label})
		}
		p.legend(items)
	}
	return p.svg(label)
}

// lineSeries is one coloured line over the chart's categories; NaN values
// are gaps.
type lineSeries struct {
	label, color string
	values       []float64
}

// lineChart draws the series over categorical x positions (iterations),
// with a dot per value; the category at index bold is emphasised.
func lineChart(label, yTitle string, categories []string, bold int, series []lineSeries) string {
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, s := range series {
		for _, v := range s.values {
			if !math.IsNaN(v) {
				ylo, yhi = math.Min(ylo, v), math.Max(yhi, v)
			}
		}
	}
	if len(categories) == 0 || math.IsInf(ylo, 1) {
		return emptyChart(label, "no iteration has pairs yet")
	}
	pad := (yhi - ylo) * 0.1
	lo := ylo - pad
	if ylo >= 0 && lo < 0 {
		lo = 0 // a non-negative quantity keeps its axis non-negative
	}
	p := newPlot(axis{lo: -0.5, hi: float64(len(categories)) - 0.5, step: 1}, niceAxis(lo, yhi+pad, 5), 52)
	p.grid("iteration", yTitle, categories, bold)
	var items []legendItem
	for _, s := range series {
		var path []string
		for i, v := range s.values {
			if math.IsNaN(v) {
				continue
			}
			path = append(path, fmt.Sprintf("%.1f,%.1f", p.px(float64(i)), p.py(v)))
		}
		if len(path) > 1 {
			p.printf(`<polyline class="line" fill="none" stroke="%s" stroke-width="2" points="%s"/>`, s.color, strings.Join(path, " "))
		}
		for i, v := range s.values {
			if math.IsNaN(v) {
				continue
			}
			p.printf(`<circle class="mark" cx="%.1f" cy="%.1f" r="4" fill="%s"><title>%s, %s: %s</title></circle>`,
				p.px(float64(i)), p.py(v), s.color, esc(categories[i]), esc(s.label), num(v))
		}
		items = append(items, legendItem{s.color, s.label})
	}
	p.legend(items)
	return p.svg(label)
}

// truncate cuts s to n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if n <= 1 || len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
