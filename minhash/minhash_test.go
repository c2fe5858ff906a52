package minhash

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// p20x6 are the default parameters (config.Defaults().Dedup).
var p20x6 = Params{Shingle: 3, Bands: 20, Rows: 6}

func TestModularArithmetic(t *testing.T) {
	t.Parallel()
	// 2^60·4 = 2^62 = 2·2^61 ≡ 2·1 (mod 2^61 − 1).
	require.Equal(t, uint64(2), mulMod(1<<60, 4))
	// 2^64 − 1 = 8·2^61 − 1 ≡ 8 − 1 = 7.
	require.Equal(t, uint64(7), reduce(math.MaxUint64))
	require.Equal(t, uint64(0), reduce(mersenne))
	require.Equal(t, uint64(0), addMod(mersenne-1, 1))
	// Against math/big on random operands.
	p := new(big.Int).SetUint64(mersenne)
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		a, x := r.Uint64N(mersenne), r.Uint64N(mersenne)
		want := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(x))
		want.Mod(want, p)
		require.Equal(t, want.Uint64(), mulMod(a, x), "%d·%d", a, x)
	}
}

func TestSCurve(t *testing.T) {
	t.Parallel()
	// (1/20)^(1/6) = exp(−ln 20 / 6) = exp(−0.49929) = 0.60696.
	require.InDelta(t, 0.60696, p20x6.Threshold(), 1e-4)
	// 1 − (1 − 0.8^6)^20 = 1 − 0.737856^20 = 1 − 0.002288.
	require.InDelta(t, 0.997712, p20x6.CandidateChance(0.8), 1e-5)
	// 1 − (1 − 0.3^6)^20 = 1 − 0.999271^20 = 0.01448.
	require.InDelta(t, 0.01448, p20x6.CandidateChance(0.3), 1e-4)
	// The brief's 16 × 8 turns at 0.707 but finds a pair at 0.8 only 94.7%
	// of the time: 1 − (1 − 0.8^8)^16 = 1 − 0.832228^16.
	require.InDelta(t, 0.9471, Params{Bands: 16, Rows: 8}.CandidateChance(0.8), 1e-3)
}

func TestAtLeastKeepsTheBoundary(t *testing.T) {
	t.Parallel()
	require.True(t, AtLeast(7, 100, 0.07)) // 0.07·100 is 7.000000000000001 in float64
	require.True(t, AtLeast(7, 10, 0.7))
	require.False(t, AtLeast(6, 10, 0.7))
	require.True(t, AtLeast(96, 120, 0.8))
	require.False(t, AtLeast(95, 120, 0.8))
	require.True(t, AtLeast(120, 120, 1))
	require.False(t, AtLeast(0, 0, 0.5))
}

func TestShinglesAndExactJaccard(t *testing.T) {
	t.Parallel()
	// {a b, b c, c d} and {a b, b c, c e}: 2 shared of 4.
	require.Equal(t, 0.5, Jaccard([]string{"a", "b", "c", "d"}, []string{"a", "b", "c", "e"}, 2))
	// Fewer words than a shingle: the words are one shingle.
	require.Equal(t, map[string]struct{}{"a b": {}}, Shingles([]string{"a", "b"}, 3))
	require.Empty(t, Shingles(nil, 3))
	require.Equal(t, 0.0, Jaccard(nil, nil, 3))
	require.Nil(t, p20x6.Sign(nil))
	// A repeated shingle counts once: {a a} vs {a a, a b} = 1/2.
	require.Equal(t, 0.5, Jaccard([]string{"a", "a", "a"}, []string{"a", "a", "b"}, 2))
}

// TestSignatureIsTheMinimumOfEachHash recomputes a signature with math/big.
func TestSignatureIsTheMinimumOfEachHash(t *testing.T) {
	t.Parallel()
	words := []string{"how", "do", "i", "cook", "rice", "on", "a", "stove"}
	p := Params{Shingle: 2, Bands: 4, Rows: 3}
	sig := p.Sign(words)
	require.Len(t, sig, 12)
	mod := new(big.Int).SetUint64(mersenne)
	for i := range sig {
		var best *big.Int
		for j := 0; j+2 <= len(words); j++ {
			x := new(big.Int).SetUint64(fnv1a(words[j] + " " + words[j+1]))
			x.Mod(x, mod)
			h := new(big.Int).Mul(new(big.Int).SetUint64(coefA[i]), x)
			h.Add(h, new(big.Int).SetUint64(coefB[i]))
			h.Mod(h, mod)
			if best == nil || h.Cmp(best) < 0 {
				best = h
			}
		}
		require.Equal(t, best.Uint64(), sig[i], "position %d", i)
	}
	// A signature's first values do not depend on its length.
	require.Equal(t, sig[:6], Params{Shingle: 2, Bands: 2, Rows: 3}.Sign(words))
}

// fnv1a is FNV-1a written out from its definition (offset basis
// 14695981039346656037, prime 1099511628211).
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range []byte(s) {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// planted returns two word lists of 1-word shingles whose Jaccard
// similarity is shared/400: each has (400+shared)/2 distinct words, shared
// of them in common.
func planted(trial, shared int) ([]string, []string) {
	n := (400 + shared) / 2
	var a, b []string
	for i := range n {
		a = append(a, fmt.Sprintf("t%dw%d", trial, i))
		b = append(b, fmt.Sprintf("t%dw%d", trial, n-shared+i))
	}
	return a, b
}

// TestEstimateTracksExactJaccard plants pairs at Jaccard 0.9, 0.8, 0.7,
// 0.5 and 0.3 (hand-made: shared/400 words) and checks the signatures'
// estimate against it: each within 4.5 standard deviations
// sqrt(J(1−J)/120), the mean of 40 trials within 4 standard errors, and
// LSH candidates as the S-curve says.
func TestEstimateTracksExactJaccard(t *testing.T) {
	t.Parallel()
	p := Params{Shingle: 1, Bands: 20, Rows: 6}
	const trials = 40
	for _, level := range []struct {
		shared int
		j      float64
	}{{360, 0.9}, {320, 0.8}, {280, 0.7}, {200, 0.5}, {120, 0.3}} {
		t.Run(fmt.Sprint(level.j), func(t *testing.T) {
			sd := math.Sqrt(level.j * (1 - level.j) / float64(p.Size()))
			sum, candidates := 0.0, 0
			for trial := range trials {
				a, b := planted(trial, level.shared)
				require.Equal(t, level.j, Jaccard(a, b, 1))
				sa, sb := p.Sign(a), p.Sign(b)
				est := Estimate(sa, sb)
				require.InDelta(t, level.j, est, 4.5*sd, "trial %d", trial)
				sum += est
				ba, bb := p.BandHashes(sa), p.BandHashes(sb)
				for i := range ba {
					if ba[i] == bb[i] {
						candidates++
						break
					}
				}
			}
			require.InDelta(t, level.j, sum/trials, 4*sd/math.Sqrt(trials))
			switch {
			case level.j >= 0.8: // chance ≥ 0.9977 each
				require.Equal(t, trials, candidates)
			case level.j <= 0.3: // chance 0.0145 each: 0.58 expected
				require.LessOrEqual(t, candidates, 4)
			}
		})
	}
}

// TestNearDuplicatesWithThreeWordShingles: a 60-word prompt with 1, 3 and
// 6 words replaced, against the default parameters.
func TestNearDuplicatesWithThreeWordShingles(t *testing.T) {
	t.Parallel()
	var base []string
	for i := range 60 {
		base = append(base, fmt.Sprintf("w%d", i))
	}
	for _, changed := range []int{1, 3, 6} {
		other := append([]string(nil), base...)
		for k := range changed {
			other[5+k*9] = fmt.Sprintf("x%d", k) // spread out: each replacement breaks 3 shingles
		}
		exact := Jaccard(base, other, 3)
		// 58 shingles each, 3 per replacement differ: J = (58−3c)/(58+3c).
		want := float64(58-3*changed) / float64(58+3*changed)
		require.InDelta(t, want, exact, 1e-12)
		est := Estimate(p20x6.Sign(base), p20x6.Sign(other))
		require.InDelta(t, exact, est, 4.5*math.Sqrt(exact*(1-exact)/120), "%d changed", changed)
	}
}
