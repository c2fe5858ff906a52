package llm

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// parseDecimal is the scanner's reading of num without strconv: ok is
// false when it would fall back to strconv.
func parseDecimal(num []byte) (float64, bool) {
	d := &replyScanner{b: num}
	n := d.decimal()
	if d.err != nil || n.long {
		return 0, false
	}
	return decimalToFloat(num[0] == '-', n.m, n.exp)
}

// requireAsStrconv checks the scanner's reading of num without strconv
// against strconv.ParseFloat, bit for bit, where it answers; and checks
// that the scanner's float, which falls back to strconv, always agrees.
func requireAsStrconv(t *testing.T, num string) (answered bool) {
	t.Helper()
	d := &replyScanner{b: []byte(num)}
	got := d.float("x")
	want, err := strconv.ParseFloat(num, 64)
	if err == nil {
		require.NoError(t, d.err, num)
		require.Equal(t, math.Float64bits(want), math.Float64bits(got), "%s: float gives %v, strconv %v", num, got, want)
	}
	v, ok := parseDecimal([]byte(num))
	if !ok {
		return false
	}
	require.NoError(t, err, num)
	require.Equal(t, math.Float64bits(want), math.Float64bits(v), "%s: got %v, strconv %v", num, v, want)
	return true
}

func TestDecimalCases(t *testing.T) {
	// Each with why it is here; all must be answered.
	for _, num := range []string{
		"0", "-0", "0.0", "-0.0", "0e5", // zeros, the negative one signed
		"1", "-2.5", "0.25", "1e3", "1E-3", "2.5e+2",
		"-0.31326165795326233",      // 17 digits: the division path
		"-1.4901161193847656e-08",   // 17 digits, scale 10^-24: strconv's
		"9007199254740993",          // 2^53 + 1, a tie: to even, 2^53
		"9007199254740993.0",        // the same tie through the division
		"9007199254740995.0",        // 2^53 + 3, a tie: to even, 2^53 + 4
		"9007199254740994.5",        // 2^53 + 2.5: a quarter of the way, to 2^53 + 2
		"0.1", "0.2", "0.3", "-0.7", // not exact in binary
		"1.0000000000000002", // 1 + 1 ulp
		"1.0000000000000001", // under half an ulp above 1: 1
		"0.9999999999999999", // 1 - 1 ulp, nearly
		"-9999.0", "-9999",   // vLLM's stand-in for -inf
		"1234567890123456789", // 19 digits, exact integer path
		"0.0001234567890123456789",
		"-3.0517578125e-05", // a power of two
		"18446744073709551615",
	} {
		answered := requireAsStrconv(t, num)
		switch num {
		case "-1.4901161193847656e-08", "0.0001234567890123456789", "18446744073709551615":
			require.False(t, answered, "%s should go to strconv", num)
		default:
			require.True(t, answered, "%s should be answered", num)
		}
	}
	v, ok := parseDecimal([]byte("-0"))
	require.True(t, ok)
	require.True(t, math.Signbit(v), "-0 keeps its sign")
}

// TestParseDecimalAsStrconv compares the two on numbers of the forms
// servers write: shortest forms of float32 and float64 values, and
// decimals cut to every length up to 19 digits, on every scale the exact
// paths cover.
func TestDecimalAsStrconv(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	answered := 0
	const n = 300000
	for i := range n {
		var x float64
		switch i % 4 {
		case 0:
			x = -rng.ExpFloat64()
		case 1:
			x = float64(float32(-rng.ExpFloat64() * math.Pow(10, float64(rng.IntN(12)-8))))
		case 2:
			x = rng.NormFloat64() * math.Pow(10, float64(rng.IntN(40)-20))
		case 3:
			x = math.Float64frombits(rng.Uint64())
			if math.IsNaN(x) || math.IsInf(x, 0) {
				continue
			}
		}
		for _, num := range []string{
			strconv.FormatFloat(x, 'g', -1, 64),
			strconv.FormatFloat(x, 'g', -1, 32),
			strconv.FormatFloat(x, 'f', rng.IntN(20), 64),
			strconv.FormatFloat(x, 'e', rng.IntN(19), 64),
		} {
			if !isJSONNumber(num) { // Inf, once narrowed to float32
				continue
			}
			if requireAsStrconv(t, num) {
				answered++
			}
		}
	}
	// Most of them go the exact paths (the test fails if they stop to).
	require.Greater(t, answered, n*4/2)
}

// FuzzDecimal checks the scanner's numbers against strconv.ParseFloat on any
// JSON number.
func FuzzDecimal(f *testing.F) {
	for _, s := range []string{"0", "-0.31326165795326233", "9007199254740993.0", "1e-19", "123456789012345678e-19", "5e22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, num string) {
		if !isJSONNumber(num) {
			return
		}
		if _, err := strconv.ParseFloat(num, 64); err != nil {
			if _, ok := parseDecimal([]byte(num)); ok {
				t.Fatalf("%s: strconv refuses it (%v), parseDecimal answered", num, err)
			}
			return
		}
		requireAsStrconv(t, num)
	})
}

// isJSONNumber reports whether s is one JSON number, as the reply scanner
// reads them.
func isJSONNumber(s string) bool {
	d := &replyScanner{b: []byte(s)}
	got := d.number()
	return d.err == nil && string(got) == s
}

// TestIntAsStrconv checks the scanner's integers against strconv.Atoi,
// refusals included.
func TestIntAsStrconv(t *testing.T) {
	for _, num := range []string{"0", "-0", "7", "151643", "-12", "9223372036854775807", "-9223372036854775808",
		"9223372036854775808", "99999999999999999999", "1.0", "1e3", "12.5"} {
		d := &replyScanner{b: []byte(num)}
		got := d.int("x")
		want, err := strconv.Atoi(num)
		if err != nil {
			require.Error(t, d.err, num)
			require.Contains(t, d.err.Error(), "x "+num+" is not an integer")
			continue
		}
		require.NoError(t, d.err, num)
		require.Equal(t, want, got, num)
	}
}
