package metric

import "math"

// Moments are the population mean and standard deviation of one quantity
// over a selection pool (the std divides by N, not N−1). The zero value is
// the moments of an empty pool. Internally they are kept as the pool's
// minimum and the moments of the deviations from it, in a power-of-two
// scaled form (see momentsOf); Mean and Std undo the scale.
type Moments struct {
	lo        float64 // the minimum, scaled
	mean, std float64 // of the scaled deviations from lo
	scale     float64 // a power of two; 0 for the zero value
}

// Mean is the arithmetic mean; 0 for an empty pool.
func (m Moments) Mean() float64 {
	if m.scale == 0 {
		return 0
	}
	return (m.lo + m.mean) / m.scale
}

// Std is the population standard deviation; exactly 0 when every value is
// equal (which includes N = 0 and N = 1).
func (m Moments) Std() float64 {
	if m.scale == 0 {
		return 0
	}
	return m.std / m.scale
}

// Z returns the z-score (v − mean)/std, computed as ((v − min) − mean of
// the deviations from min)/std, or 0 when std is 0: a quantity that does not
// vary over the pool carries no signal, and must never turn into NaN.
func (m Moments) Z(v float64) float64 {
	if m.std == 0 {
		return 0
	}
	return (v*m.scale - m.lo - m.mean) / m.std
}

// momentsOf computes the moments of value(i) for i in [0, n) with a two-pass
// algorithm over the deviations d = v − min: their mean first, then the sum
// of squared deviations from it, both with Neumaier-compensated sums in
// float64. store's scoring SQL computes the same moments in one pass
// (PostgreSQL's Youngs–Cramer avg and var_pop, over deviations from one
// element of the pool instead of the minimum), which agree with these to
// within rounding.
//
// The values are first scaled by a power of two that brings the largest
// magnitude into [0.5, 1). That is exact (it only shifts exponents), so the
// z-scores are bit-identical to an unscaled computation on ordinary data, and
// it keeps sums of huge margins from overflowing to Inf.
//
// Deviations from an element of the pool (here the minimum; in SQL the
// pair of the smallest prompt id), not from the mean, are what make
// near-equal values agree between Go and SQL: two values within a factor
// of two of each other subtract exactly (Sterbenz), so the deviations of a
// pool of near-equal margins are exact and the same in any implementation,
// whereas a mean rounded to a float64 is off by as much as their spread. A
// spread that is zero (min == max) is detected directly and gives std 0, so
// rounding cannot invent a tiny non-zero std (PostgreSQL's stddev_pop of
// ten copies of 0.1 is 1.1e-17).
func momentsOf(n int, value func(i int) float64) Moments {
	if n == 0 {
		return Moments{}
	}
	lo, hi, maxAbs := math.Inf(1), math.Inf(-1), 0.0
	for i := range n {
		v := value(i)
		lo, hi = min(lo, v), max(hi, v)
		maxAbs = max(maxAbs, math.Abs(v))
	}
	scale := Scale(maxAbs)
	lo *= scale
	if lo == hi*scale {
		return Moments{lo: lo, scale: scale}
	}

	var sum compensated
	for i := range n {
		sum.add(value(i)*scale - lo)
	}
	mean := sum.value() / float64(n)
	var squares compensated
	for i := range n {
		d := value(i)*scale - lo - mean
		squares.add(d * d)
	}
	std := math.Sqrt(squares.value() / float64(n))
	return Moments{lo: lo, mean: mean, std: std, scale: scale}
}

// Scale is the power of two that brings a largest magnitude maxAbs into
// [0.5, 1), capped at 2^1023 (2^1024 would be +Inf); 1 for 0, ±Inf and NaN.
// Multiplying by it is exact: it only shifts exponents.
func Scale(maxAbs float64) float64 {
	_, exp := math.Frexp(maxAbs) // exp is 0 for 0, ±Inf and NaN
	return math.Ldexp(1, min(-exp, 1023))
}

// compensated is a Neumaier (improved Kahan) running sum.
type compensated struct{ sum, c float64 }

func (k *compensated) add(v float64) {
	t := k.sum + v
	if math.Abs(k.sum) >= math.Abs(v) {
		k.c += (k.sum - t) + v
	} else {
		k.c += (v - t) + k.sum
	}
	k.sum = t
}

func (k *compensated) value() float64 { return k.sum + k.c }
