package decontam

import (
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if strings.HasSuffix(name, ".gz") {
		f, err := os.Create(path)
		require.NoError(t, err)
		zw := gzip.NewWriter(f)
		_, err = zw.Write([]byte(body))
		require.NoError(t, err)
		require.NoError(t, zw.Close())
		require.NoError(t, f.Close())
		return path
	}
	require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
	return path
}

func user(text string) []prompt.Message { return []prompt.Message{{Role: "user", Content: text}} }

// The benchmark's prompts: line 3 of a.jsonl (after a blank line) has 15
// words, line 1 has 4 (shorter than 13: it can match nothing), and
// b.jsonl.gz's second line holds a conversation.
const gsm = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."

func setup(t *testing.T) (*Set, string, string) {
	t.Helper()
	dir := t.TempDir()
	a := writeFile(t, dir, "a.jsonl", `{"prompt": "What is two plus two?"}`+"\n\n"+
		`{"prompt": "`+gsm+`", "id": "gsm-1"}`+"\n")
	b := writeFile(t, dir, "b.jsonl.gz", `{"prompt": "Name a colour."}`+"\n"+
		`{"messages": [{"role": "system", "content": "Answer step by step and show every step of your working in full detail please."}, {"role": "user", "content": "Write a limerick about a cat who learned to play the violin in a small town."}]}`+"\n")
	s, err := Build(context.Background(), []string{a, b}, "", 13)
	require.NoError(t, err)
	return s, a, b
}

func TestBuild(t *testing.T) {
	t.Parallel()
	s, a, b := setup(t)
	require.Equal(t, 4, s.Prompts)
	require.Equal(t, 2, s.Short) // "what is two plus two", "name a colour"
	// 20 words in gsm: 8 13-grams; the limerick (user message only) has 16
	// words: 4.
	require.Equal(t, 8+4, s.NGrams())
	require.Equal(t, []string{a, b}, s.Files())
}

func TestCheck(t *testing.T) {
	t.Parallel()
	s, a, b := setup(t)
	for _, tc := range []struct {
		name string
		msgs []prompt.Message
		want string // "" for no match
	}{
		{"the benchmark prompt itself", user(gsm), a + ":3"},
		{"inside a longer prompt", user("Solve this, please. " + gsm + " How many clips did she sell altogether? Explain."), a + ":3"},
		{"13 of its words only", user("so: sold clips to 48 of her friends in April, and then she sold half!"), a + ":3"},
		{"upper case and full-width letters", user("NATALIA SOLD CLIPS TO 48 OF HER FRIENDS IN APRIL, AND ｔｈｅｎ ｓｈｅ Sold"), a + ":3"},
		{"other punctuation and white space", user("natalia sold clips\tto 48 of her friends in april — and\nthen she…"), a + ":3"},
		{"12 words in a row only", user("sold clips to 48 of her friends in April, and then she"), ""},
		{"words in another order", user("clips sold to 48 of her friends in April, and then she sold half"), ""},
		{"the benchmark's user message in a system message", []prompt.Message{
			{Role: "system", Content: "Write a limerick about a cat who learned to play the violin in a small town."},
			{Role: "user", Content: "Hello"}}, ""},
		{"a benchmark conversation's user message", user("please write a limerick about a cat who learned to play the violin in a small town today"), b + ":2"},
		{"a benchmark's system message is not checked", user("Answer step by step and show every step of your working in full detail please."), ""},
		{"a short benchmark prompt", user("What is two plus two? Tell me."), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := s.Check(tc.msgs)
			if tc.want == "" {
				require.False(t, ok, "matched %s", m)
				return
			}
			require.True(t, ok)
			require.Equal(t, tc.want, m.String())
		})
	}
}

func TestNoFilesNoSet(t *testing.T) {
	t.Parallel()
	var s *Set
	_, ok := s.Check(user(gsm))
	require.False(t, ok)
}

// TestDuplicateNGramsKeepTheFirstRow: a prompt repeated in a benchmark is
// reported at its first row.
func TestDuplicateNGramsKeepTheFirstRow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	line := `{"prompt": "` + gsm + `"}` + "\n"
	a := writeFile(t, dir, "a.jsonl", line+line)
	b := writeFile(t, dir, "b.jsonl", line)
	s, err := Build(context.Background(), []string{b, a}, "", 13)
	require.NoError(t, err)
	m, ok := s.Check(user(gsm))
	require.True(t, ok)
	require.Equal(t, b+":1", m.String())
	require.Equal(t, 8, s.NGrams())
}

func TestBadBenchmarkFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := writeFile(t, dir, "good.jsonl", `{"prompt": "`+gsm+`"}`+"\n")
	bad := writeFile(t, dir, "bad.jsonl", `{"prompt": "fine"}`+"\n"+`{"prompt": "fine"}`+"\n"+`{"question": "no prompt field"}`+"\n")
	_, err := Build(context.Background(), []string{good, bad}, "", 13)
	var le *prompt.LineError
	require.True(t, errors.As(err, &le), "%v", err)
	require.Equal(t, bad, le.File)
	require.Equal(t, 3, le.Line)
	require.ErrorContains(t, err, "decontaminate.files: "+bad+":3: ")

	empty := writeFile(t, dir, "empty.jsonl", "\n")
	_, err = Build(context.Background(), []string{empty}, "", 13)
	require.ErrorContains(t, err, empty+": no prompts in file")

	_, err = Build(context.Background(), []string{filepath.Join(dir, "missing.jsonl")}, "", 13)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.ErrorContains(t, err, "missing.jsonl")
}

// TestColumn: benchmark files with the prompt in another field, as
// prompts.column reads them.
func TestColumn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f := writeFile(t, dir, "gsm8k.jsonl", `{"question": "`+gsm+`", "answer": "72"}`+"\n")
	s, err := Build(context.Background(), []string{f}, "question", 13)
	require.NoError(t, err)
	m, ok := s.Check(user(gsm))
	require.True(t, ok)
	require.Equal(t, f+":1", m.String())
}
