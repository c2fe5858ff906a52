package metric

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkScoreSelect1M scores and selects a pool of 1,000,000 pairs with
// each metric (target: under 1 s per operation).
func BenchmarkScoreSelect1M(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	items := make([]Item, 1_000_000)
	for i := range items {
		items[i] = Item{ID: int64(i + 1), ExplicitMargin: rng.ExpFloat64() * 3, ImplicitMargin: rng.NormFloat64()}
	}
	for _, m := range []Metric{AlignmentPotential, Random} {
		b.Run(string(m), func(b *testing.B) {
			spec := Spec{Metric: m, ImplicitWeight: DefaultImplicitWeight, Ratio: DefaultRatio, Seed: 42}
			b.ReportAllocs()
			for b.Loop() {
				scored, err := Score(items, spec)
				if err != nil {
					b.Fatal(err)
				}
				if err := Select(scored, spec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
