package llm

import (
	"math"
	"math/bits"
)

// Converting the log-probs of a reply is most of what reading it costs:
// 2,560 numbers for 5 × 512 tokens, most written with 16 or 17
// significant digits (the shortest form that reads back as the float32
// the server computed, widened to float64). The reply scanner collects a
// number's digits as it checks its syntax, and decimalToFloat converts
// the common forms exactly, without strconv's general reader; strconv.
// ParseFloat converts the rest. Either way the result
// is the float64 nearest the decimal, ties to even, as strconv gives.

// pow10f are the powers of ten a float64 holds exactly.
var pow10f = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// pow10u are the powers of ten a uint64 holds.
var pow10u = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// decimalToFloat returns the float64 nearest ±m × 10^exp, and ok false
// for a scale its exact paths do not cover (the caller then uses
// strconv.ParseFloat on the text). m has at most 19 digits.
func decimalToFloat(neg bool, m uint64, exp int) (v float64, ok bool) {
	switch {
	case m == 0:
		v = 0
	case exp == 0:
		// Go converts an integer to the nearest float64, ties to even.
		v = float64(m)
	case m <= 1<<53 && exp > 0 && exp < len(pow10f):
		// Both exact, so the product is rounded once.
		v = float64(m) * pow10f[exp]
	case m <= 1<<53 && exp < 0 && -exp < len(pow10f):
		v = float64(m) / pow10f[-exp]
	case exp < 0 && -exp < len(pow10u):
		v = quotient(m, pow10u[-exp])
	default:
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// quotient returns the float64 nearest m/d, ties to even, for m, d > 0 and
// a quotient a float64 holds as a normal number (any m/d with d ≤ 10^19).
func quotient(m, d uint64) float64 {
	lm, ld := bits.LeadingZeros64(m), bits.LeadingZeros64(d)
	m, d = m<<lm, d<<ld
	// m/d (as given) = (m/d, both shifted to their top bit) × 2^(ld-lm),
	// and the shifted quotient is in [1/2, 2). q is its first 64 bits,
	// the top one set; r is what is left of the division.
	var q, r uint64
	e := ld - lm
	if m < d {
		q, r = bits.Div64(m, 0, d)
		e -= 64
	} else {
		q, r = bits.Div64(m>>1, m<<63, d)
		e -= 63
	}
	// m/d = (q + r/d) × 2^e. Keep 53 bits, rounding on the 11 dropped
	// and on whether anything is left (r).
	mant, dropped := q>>11, q&(1<<11-1)
	const half = 1 << 10
	if dropped > half || (dropped == half && (r != 0 || mant&1 == 1)) {
		mant++
		if mant == 1<<53 {
			mant >>= 1
			e++
		}
	}
	// mant × 2^(e+11), mant in [2^52, 2^53): a biased exponent of
	// e+11+52+1023 and mant's lower 52 bits.
	return math.Float64frombits(uint64(e+11+52+1023)<<52 | mant&(1<<52-1))
}
