package report_test

import (
	"testing"

	"github.com/selfplay/selfplay/report"
)

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkRender100kPairs draws the report of a 100,000-pair iteration
// (the scatter is sampled to 2,000 dots) and reports the page's size.
func BenchmarkRender100kPairs(b *testing.B) {
	d := sample()
	const n, stride = 100_000, 50 // Load reads every 50th pair for the scatter
	chosen, rejected, sel, rest := make([]float64, n), make([]float64, n), []float64{}, []float64{}
	d.Pairs, d.ScatterStride, d.Summary.Pairs = nil, stride, n
	for i := range n {
		p := report.Pair{ID: int64(i + 1), ChosenReward: float64(i%97) / 10, RejectedReward: -float64(i%89) / 10,
			ExplicitMargin: float64(i%97+i%89) / 10, ImplicitMargin: float64(i%31)/30 - 0.5, AlignmentPotential: float64(i%61)/10 - 3,
			Selected: i%61 >= 36}
		chosen[i], rejected[i] = p.ChosenReward, p.RejectedReward
		if p.Selected {
			sel = append(sel, p.AlignmentPotential)
		} else {
			rest = append(rest, p.AlignmentPotential)
		}
		if i%stride == 0 {
			d.Pairs = append(d.Pairs, p)
		}
	}
	d.Rewards, d.AP = report.NewHistogram(rejected, chosen), report.NewHistogram(rest, sel)
	var w countingWriter
	for b.Loop() {
		w.n = 0
		if err := report.Render(&w, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(w.n)/1024, "KiB/page")
}
