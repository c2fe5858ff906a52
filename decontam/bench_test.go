package decontam

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/selfplay/selfplay/prompt"
)

// benchText is a prompt of n words drawn from a 5000-word vocabulary.
func benchText(r *rand.Rand, n int) string {
	words := make([]string, n)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", r.IntN(5000))
	}
	return strings.Join(words, " ") + "?"
}

// benchFile writes a benchmark of n prompts of 30 to 90 words (60 on
// average: 48 13-grams each).
func benchFile(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "bench.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	r := rand.New(rand.NewPCG(7, 7))
	enc := json.NewEncoder(w)
	for range n {
		if err := enc.Encode(map[string]string{"prompt": benchText(r, 30+r.IntN(61))}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkBuild100k reads a benchmark file of 100,000 prompts and builds
// its n-gram set (docs/performance.md).
func BenchmarkBuild100k(b *testing.B) {
	path := benchFile(b, 100_000)
	b.ResetTimer()
	for b.Loop() {
		s, err := Build(context.Background(), []string{path}, "", 13)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(s.NGrams()), "ngrams")
	}
}

// BenchmarkCheck checks 100-word prompts that share no n-gram with a
// 100,000-prompt benchmark (every n-gram is looked up: the slowest case),
// from the messages (words split here) and from words already split.
func BenchmarkCheck(b *testing.B) {
	s, err := Build(context.Background(), []string{benchFile(b, 100_000)}, "", 13)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(8, 8))
	msgs := make([][]prompt.Message, 1000)
	words := make([][]string, len(msgs))
	for i := range msgs {
		msgs[i] = []prompt.Message{{Role: "user", Content: benchText(r, 100)}}
		words[i] = prompt.Words(msgs[i][0].Content)
	}
	b.Run("messages", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, ok := s.Check(msgs[i%len(msgs)]); ok {
				b.Fatal("a random prompt matched")
			}
			i++
		}
	})
	b.Run("words", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, ok := s.CheckWords(words[i%len(words)]); ok {
				b.Fatal("a random prompt matched")
			}
			i++
		}
	})
}
