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
	d.Pairs = make([]report.Pair, 100_000)
	for i := range d.Pairs {
		d.Pairs[i] = report.Pair{ID: int64(i + 1), ChosenReward: float64(i%97) / 10, RejectedReward: -float64(i%89) / 10,
			ExplicitMargin: float64(i%97+i%89) / 10, ImplicitMargin: float64(i%31)/30 - 0.5, AlignmentPotential: float64(i%61)/10 - 3,
			Selected: i%61 >= 36}
	}
	var w countingWriter
	for b.Loop() {
		w.n = 0
		if err := report.Render(&w, d); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(w.n)/1024, "KiB/page")
}
