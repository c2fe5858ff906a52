// Package hash64 holds the fixed 64-bit hashes that signatures and n-gram
// sets store: they must give the same value in every process and version,
// so no seeded or randomised hash is used.
package hash64

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// String is the 64-bit FNV-1a hash of s.
func String(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h
}

// Words hashes a sequence of word hashes (each from String), in order: the
// FNV-1a step over 64-bit values, then Mix.
func Words(hs []uint64) uint64 {
	h := uint64(fnvOffset)
	for _, v := range hs {
		h = (h ^ v) * fnvPrime
	}
	return Mix(h)
}

// Mix is splitmix64's finaliser: every input bit affects every output bit.
func Mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
