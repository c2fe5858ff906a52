// Package decontam finds prompts that share a run of words with a
// benchmark: the n-gram set of the benchmark prompts is built once per run
// as sorted 64-bit hashes, and checking a prompt is one hash and one
// bucket search per n-gram of its words.
//
// Words are those of prompt.Words (NFKC, case folding, punctuation and
// symbols as separators), over prompt.Content (the non-system messages).
// A hash match is taken as a shared n-gram without comparing the words:
// with S n-grams in the set and Q checked, the chance of any false match is
// about S·Q/2^64 (1e-6 for S = 10^7 and Q = 10^6).
package decontam

import (
	"cmp"
	"context"
	"fmt"
	"math/bits"
	"slices"

	"github.com/selfplay/selfplay/internal/hash64"
	"github.com/selfplay/selfplay/prompt"
)

// Match locates the benchmark prompt a checked prompt shares an n-gram
// with.
type Match struct {
	File string
	// Row is the benchmark prompt's 1-based line (JSON Lines) or row
	// (Parquet) in File.
	Row int
}

// String is "FILE:ROW".
func (m Match) String() string { return fmt.Sprintf("%s:%d", m.File, m.Row) }

// Set is the n-gram set of a benchmark. It is read-only once built and safe
// for concurrent use.
type Set struct {
	n     int
	keys  []uint64 // sorted, distinct n-gram hashes
	refs  []uint32 // refs[i] is the row of keys[i] in rows
	index []uint32 // index[b] is the first key whose top bits are ≥ b
	shift uint
	files []string
	rows  []ref

	// Prompts is the number of benchmark prompts read; Short counts those
	// with fewer than N words, which no prompt can share an n-gram with.
	Prompts, Short int
}

type ref struct {
	file uint32
	row  uint32
}

// N is the n-gram length in words.
func (s *Set) N() int { return s.n }

// NGrams is the number of distinct n-grams in the set.
func (s *Set) NGrams() int { return len(s.keys) }

// Files are the benchmark files the set was built from.
func (s *Set) Files() []string { return s.files }

// Build reads the benchmark files (JSON Lines, .jsonl.gz or Parquet, like
// prompt files; column as prompts.column, "" for the default) and builds
// their n-gram set. A bad row fails the build with a *prompt.LineError
// naming the file and row.
func Build(ctx context.Context, files []string, column string, n int) (*Set, error) {
	if n < 1 {
		return nil, fmt.Errorf("decontaminate: n-gram length %d: expected at least 1", n)
	}
	s := &Set{n: n, files: files}
	type entry struct {
		key uint64
		ref uint32
	}
	var entries []entry
	fileIndex := map[string]uint32{}
	for i, f := range files {
		fileIndex[f] = uint32(i)
	}
	var hs []uint64
	err := prompt.EachRow(ctx, prompt.Source{Files: files, Column: column}, func(file string, row int, p prompt.Prompt) {
		s.Prompts++
		r := uint32(len(s.rows))
		s.rows = append(s.rows, ref{file: fileIndex[file], row: uint32(row)})
		hs = wordHashes(hs[:0], prompt.Words(prompt.Content(p.Messages)))
		if len(hs) < n {
			s.Short++
			return
		}
		for i := 0; i+n <= len(hs); i++ {
			entries = append(entries, entry{hash64.Words(hs[i : i+n]), r})
		}
	})
	if err != nil {
		return nil, fmt.Errorf("decontaminate.files: %w", err)
	}
	// Stable: of equal hashes, the first file's first row is kept.
	slices.SortStableFunc(entries, func(a, b entry) int { return cmp.Compare(a.key, b.key) })
	s.keys = make([]uint64, 0, len(entries))
	s.refs = make([]uint32, 0, len(entries))
	for i, e := range entries {
		if i > 0 && e.key == entries[i-1].key {
			continue
		}
		s.keys = append(s.keys, e.key)
		s.refs = append(s.refs, e.ref)
	}
	s.buildIndex()
	return s, nil
}

// buildIndex splits the sorted keys into 2^b buckets by their top b bits,
// about one key per bucket (b at most 22: a 16 MiB index).
func (s *Set) buildIndex() {
	b := min(max(bits.Len(uint(len(s.keys))), 1), 22)
	s.shift = uint(64 - b)
	s.index = make([]uint32, 1<<b+1)
	k := 0
	for top := range 1 << b {
		for k < len(s.keys) && s.keys[k]>>s.shift < uint64(top) {
			k++
		}
		s.index[top] = uint32(k)
	}
	s.index[1<<b] = uint32(len(s.keys))
}

// wordHashes appends the hash of each word to dst.
func wordHashes(dst []uint64, words []string) []uint64 {
	for _, w := range words {
		dst = append(dst, hash64.String(w))
	}
	return dst
}

// Check says whether the prompt's messages share an n-gram with a
// benchmark prompt, and which one (the first of the prompt's n-grams in
// text order that the benchmark holds).
func (s *Set) Check(msgs []prompt.Message) (Match, bool) {
	if s == nil {
		return Match{}, false
	}
	return s.CheckWords(prompt.Words(prompt.Content(msgs)))
}

// CheckWords is Check on words already split by prompt.Words.
func (s *Set) CheckWords(words []string) (Match, bool) {
	if s == nil || len(s.keys) == 0 || len(words) < s.n {
		return Match{}, false
	}
	var buf [64]uint64
	hs := wordHashes(buf[:0], words)
	for i := 0; i+s.n <= len(hs); i++ {
		if r, ok := s.find(hash64.Words(hs[i : i+s.n])); ok {
			rf := s.rows[r]
			return Match{File: s.files[rf.file], Row: int(rf.row)}, true
		}
	}
	return Match{}, false
}

// find looks key up in its bucket.
func (s *Set) find(key uint64) (uint32, bool) {
	top := key >> s.shift
	lo, hi := s.index[top], s.index[top+1]
	bucket := s.keys[lo:hi]
	i, ok := slices.BinarySearch(bucket, key)
	if !ok {
		return 0, false
	}
	return s.refs[int(lo)+i], true
}
