// Package minhash estimates how alike two prompts are from MinHash
// signatures of their word shingles, and cuts the signatures into LSH bands
// so that a lookup of similar prompts is a few index probes.
//
// A signature holds Bands×Rows minimum hash values, one per hash function
// h_i(x) = (a_i·x + b_i) mod (2^61 − 1) over the 64-bit hashes x of the
// prompt's distinct shingles (runs of Shingle consecutive words). For two
// shingle sets A and B, the chance that one function's minima agree is the
// Jaccard similarity |A∩B|/|A∪B|, so the fraction of agreeing positions
// estimates it, with standard deviation sqrt(J(1−J)/(Bands·Rows)). Two
// prompts become LSH candidates when all Rows values of at least one band
// agree, with probability 1 − (1 − J^Rows)^Bands: an S-curve whose steep
// part sits near (1/Bands)^(1/Rows).
//
// The functions' coefficients come from a fixed seed, so every process and
// every version of selfplay computes the same signature for the same text;
// changing them would make stored signatures incomparable (Params.Key names
// the parameters stored with a signature).
package minhash

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"

	"github.com/selfplay/selfplay/internal/hash64"
)

// Params are the MinHash and LSH parameters of a run.
type Params struct {
	// Shingle is the number of consecutive words in a shingle.
	Shingle int
	// Bands × Rows is the signature's length; Rows values form a band.
	Bands, Rows int
}

// Size is the signature's length, Bands·Rows.
func (p Params) Size() int { return p.Bands * p.Rows }

// Key names the parameters a stored signature was made with.
func (p Params) Key() string {
	return fmt.Sprintf("shingle=%d,bands=%d,rows=%d", p.Shingle, p.Bands, p.Rows)
}

// Threshold is the similarity at which the LSH S-curve turns,
// (1/Bands)^(1/Rows): pairs well above it are almost always candidates.
func (p Params) Threshold() float64 {
	return math.Pow(1/float64(p.Bands), 1/float64(p.Rows))
}

// CandidateChance is the probability that two prompts of Jaccard
// similarity j share at least one band: 1 − (1 − j^Rows)^Bands.
func (p Params) CandidateChance(j float64) float64 {
	return 1 - math.Pow(1-math.Pow(j, float64(p.Rows)), float64(p.Bands))
}

// mersenne is 2^61 − 1, the prime modulus of the hash functions.
const mersenne = 1<<61 - 1

// maxSize bounds Bands·Rows (config validation keeps it far lower).
const maxSize = 1024

// coefficients a_i (in [1, p)) and b_i (in [0, p)) of the hash functions,
// from a fixed seed: a signature's first n values are the same whatever the
// signature's length.
var coefA, coefB = func() ([]uint64, []uint64) {
	r := rand.New(rand.NewPCG(0x5e1f_91a7_d0d0_cafe, 0x6d69_6e68_6173_6821))
	a, b := make([]uint64, maxSize), make([]uint64, maxSize)
	for i := range a {
		a[i] = 1 + r.Uint64N(mersenne-1)
		b[i] = r.Uint64N(mersenne)
	}
	return a, b
}()

// Signature is a prompt's MinHash signature, Params.Size values below
// 2^61; nil for a text without words.
type Signature []uint64

// Shingles returns the distinct shingles of words: every run of k
// consecutive words, joined by a space; a text of fewer than k words (but
// at least one) is one shingle.
func Shingles(words []string, k int) map[string]struct{} {
	out := map[string]struct{}{}
	if len(words) == 0 {
		return out
	}
	if len(words) < k {
		out[strings.Join(words, " ")] = struct{}{}
		return out
	}
	for i := 0; i+k <= len(words); i++ {
		out[strings.Join(words[i:i+k], " ")] = struct{}{}
	}
	return out
}

// Sign computes the signature of words (see prompt.Words); nil when there
// are none.
func (p Params) Sign(words []string) Signature {
	sh := Shingles(words, p.Shingle)
	if len(sh) == 0 {
		return nil
	}
	n := p.Size()
	sig := make(Signature, n)
	for i := range sig {
		sig[i] = math.MaxUint64
	}
	for s := range sh {
		x := reduce(hash64.String(s))
		for i := range n {
			if h := addMod(mulMod(coefA[i], x), coefB[i]); h < sig[i] {
				sig[i] = h
			}
		}
	}
	return sig
}

// BandHashes returns one hash per band of the signature: band b's hash is that
// of values [b·Rows, (b+1)·Rows). Two signatures share a band when their
// hashes for it are equal (a 64-bit collision only adds a candidate, which
// the estimate then rejects).
func (p Params) BandHashes(sig Signature) []int64 {
	if len(sig) != p.Size() {
		return nil
	}
	out := make([]int64, p.Bands)
	for b := range out {
		out[b] = int64(hash64.Words(sig[b*p.Rows : (b+1)*p.Rows]))
	}
	return out
}

// Agreeing counts the positions where two signatures of one length agree.
func Agreeing(a, b Signature) int {
	if len(a) != len(b) {
		return 0
	}
	n := 0
	for i := range a {
		if a[i] == b[i] {
			n++
		}
	}
	return n
}

// Estimate is the estimated Jaccard similarity of two signatures: the
// fraction of positions that agree; 0 when either is empty.
func Estimate(a, b Signature) float64 {
	if len(a) == 0 || len(a) != len(b) {
		return 0
	}
	return float64(Agreeing(a, b)) / float64(len(a))
}

// AtLeast says whether agreeing positions out of size reach threshold,
// computed so that a threshold inexact in binary (0.7 is 0.69999…) does
// not lose the boundary case: 7 of 10 is at least 0.7.
func AtLeast(agreeing, size int, threshold float64) bool {
	return size > 0 && float64(agreeing) >= threshold*float64(size)-1e-9
}

// Jaccard is the exact Jaccard similarity of the k-word shingle sets of
// two word lists: |A∩B| / |A∪B|; 0 when both are empty.
func Jaccard(a, b []string, k int) float64 {
	sa, sb := Shingles(a, k), Shingles(b, k)
	inter := 0
	for s := range sa {
		if _, ok := sb[s]; ok {
			inter++
		}
	}
	union := len(sa) + len(sb) - inter
	if union == 0 {
		return 0
	}
	return float64(inter) / float64(union)
}

// reduce is x mod 2^61 − 1.
func reduce(x uint64) uint64 {
	r := (x & mersenne) + (x >> 61)
	if r >= mersenne {
		r -= mersenne
	}
	return r
}

// mulMod is a·x mod 2^61 − 1 for a, x below 2^61.
func mulMod(a, x uint64) uint64 {
	hi, lo := bits.Mul64(a, x)
	r := (lo & mersenne) + (lo>>61 | hi<<3)
	if r >= mersenne {
		r -= mersenne
	}
	if r >= mersenne {
		r -= mersenne
	}
	return r
}

// addMod is a + b mod 2^61 − 1 for a, b below 2^61.
func addMod(a, b uint64) uint64 {
	r := a + b
	if r >= mersenne {
		r -= mersenne
	}
	return r
}
