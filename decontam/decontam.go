// Package decontam finds prompts that share a run of words with a
// benchmark: the n-gram set of the benchmark prompts is built once per run
// as a table of 64-bit hashes (open addressing), and checking a prompt is
// one hash and one table probe per n-gram of its words.
//
// Words are those of prompt.Words (NFKC, case folding, punctuation and
// symbols as separators), over prompt.Content (the non-system messages).
// A hash match is taken as a shared n-gram without comparing the words:
// with S n-grams in the set and Q checked, the chance of any false match is
// about S·Q/2^64 (1e-6 for S = 10^7 and Q = 10^6).
package decontam

import (
	"context"
	"fmt"
	"math/bits"

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
	slots []uint64 // n-gram hashes by position, 0 for an empty slot
	refs  []uint32 // refs[i] is the benchmark row of slots[i] in rows
	mask  uint64
	count int
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
func (s *Set) NGrams() int { return s.count }

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
	s.fill(len(entries), func(yield func(key uint64, ref uint32)) {
		for _, e := range entries {
			yield(e.key, e.ref)
		}
	})
	return s, nil
}

// fill builds the table from n entries: a power of two of slots, at least
// 4/3 of n (a load of 3/4 at most; an unsuccessful probe then reads about 8
// consecutive slots, one or two cache lines). Of equal keys the first is
// kept: the first file's first row.
func (s *Set) fill(n int, entries func(func(uint64, uint32))) {
	size := 1 << bits.Len(uint(max(n+n/3, 1)))
	s.slots, s.refs = make([]uint64, size), make([]uint32, size)
	s.mask = uint64(size - 1)
	entries(func(key uint64, ref uint32) {
		key = max(key, 1) // 0 marks an empty slot
		i := key & s.mask
		for s.slots[i] != 0 {
			if s.slots[i] == key {
				return
			}
			i = (i + 1) & s.mask
		}
		s.slots[i], s.refs[i] = key, ref
		s.count++
	})
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
	if s == nil || s.count == 0 || len(words) < s.n {
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

// find looks key up.
func (s *Set) find(key uint64) (uint32, bool) {
	key = max(key, 1)
	for i := key & s.mask; s.slots[i] != 0; i = (i + 1) & s.mask {
		if s.slots[i] == key {
			return s.refs[i], true
		}
	}
	return 0, false
}
