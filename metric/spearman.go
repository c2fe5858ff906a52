package metric

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Ranks returns the 1-based ranks of v in ascending order, tied values
// sharing the average of the ranks they span (the "fractional" ranking
// Spearman's coefficient uses with ties): ranks of {10, 20, 20, 30} are
// {1, 2.5, 2.5, 4}. NaN is not a value to rank: the caller leaves it out.
func Ranks(v []float64) []float64 {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case v[a] < v[b]:
			return -1
		case v[a] > v[b]:
			return 1
		}
		return 0
	})
	r := make([]float64, len(v))
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && v[idx[j]] == v[idx[i]] {
			j++
		}
		// Positions i..j-1 hold equal values: ranks i+1..j, mean (i+1+j)/2.
		avg := float64(i+1+j) / 2
		for k := i; k < j; k++ {
			r[idx[k]] = avg
		}
		i = j
	}
	return r
}

// Spearman is Spearman's rank correlation of x and y (equal lengths):
// Pearson's correlation of their average ranks (Ranks), which is right with
// ties, where the 1 − 6Σd²/(n(n²−1)) shortcut is not. ok is false when it is
// undefined: fewer than two values, or either side constant.
func Spearman(x, y []float64) (rho float64, ok bool) {
	if len(x) != len(y) || len(x) < 2 {
		return 0, false
	}
	return pearson(Ranks(x), Ranks(y))
}

// pearson is Pearson's correlation, ok false when either side has no
// spread. Ranks are small exact numbers, so two passes are plenty.
func pearson(a, b []float64) (float64, bool) {
	n := float64(len(a))
	var ma, mb float64
	for i := range a {
		ma += a[i]
		mb += b[i]
	}
	ma, mb = ma/n, mb/n
	var sab, saa, sbb float64
	for i := range a {
		da, db := a[i]-ma, b[i]-mb
		sab += da * db
		saa += da * da
		sbb += db * db
	}
	if saa == 0 || sbb == 0 {
		return 0, false
	}
	r := sab / math.Sqrt(saa*sbb)
	return max(-1, min(1, r)), true
}

// Interval is a two-sided confidence interval.
type Interval struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// BootstrapResamples is how many resamples SpearmanBootstrap draws.
const BootstrapResamples = 1000

// SpearmanBootstrap is the 95% percentile-bootstrap interval of Spearman's
// coefficient of x and y: resamples times, n pairs (x[i], y[i]) are drawn
// with replacement (a PCG seeded with seed, so the interval is the same on
// every run), Spearman is computed on each, and the interval is the 2.5th and
// 97.5th percentiles of those values (linear interpolation between order
// statistics, as numpy's default percentile). Resamples on which it is
// undefined (a constant side) are left out; ok is false when none is left.
func SpearmanBootstrap(x, y []float64, resamples int, seed uint64) (Interval, bool) {
	n := len(x)
	if n < 2 || len(y) != n || resamples <= 0 {
		return Interval{}, false
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	bx, by := make([]float64, n), make([]float64, n)
	rhos := make([]float64, 0, resamples)
	for range resamples {
		for i := range n {
			j := rng.IntN(n)
			bx[i], by[i] = x[j], y[j]
		}
		if r, ok := Spearman(bx, by); ok {
			rhos = append(rhos, r)
		}
	}
	if len(rhos) == 0 {
		return Interval{}, false
	}
	slices.Sort(rhos)
	return Interval{Lo: Percentile(rhos, 2.5), Hi: Percentile(rhos, 97.5)}, true
}

// Percentile is the p-th percentile (0 ≤ p ≤ 100) of sorted values, by
// linear interpolation between the order statistics at (n−1)·p/100 (numpy's
// default "linear" method). sorted must be non-empty and ascending.
func Percentile(sorted []float64, p float64) float64 {
	h := float64(len(sorted)-1) * p / 100
	lo := math.Floor(h)
	i := int(lo)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-lo)*(sorted[i+1]-sorted[i])
}
