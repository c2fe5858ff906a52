package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/metric"
)

// runScore runs `selfplay score args...` and returns its standard output.
func runScore(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newScoreCmd()
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// readLines returns the non-empty lines of a file.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// topKeys lists an object's top-level keys in order, duplicates included.
func topKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	_, err := dec.Token()
	require.NoError(t, err)
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

func field(t *testing.T, line, key string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(line), &m))
	v, ok := m[key]
	require.True(t, ok, "no %q in %s", key, line)
	return v
}

func floatField(t *testing.T, line, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(string(field(t, line, key)), 64)
	require.NoError(t, err)
	return v
}

// The golden pool of metric/score_test.go, as JSONL rows with extra fields,
// one row in the scores-and-logps form, a blank line and a CRLF ending.
//
//	id  m_ex  m_im     z(m_ex)  z(|m_im|)  AP (w=1)
//	1   7      1.375    1.5      1.5        0
//	2   1     -0.875   -1.5     -0.5       -1
//	3   5      0.625    0.5     -1.5        2
//	4   3     -1.0     -0.5      0         -0.5
//	5   4      1.125    0        0.5       -0.5
//
// m_ex: mean 4, population std √(20/5) = 2; |m_im|: mean 1, std √(0.3125/5)
// = 0.25. Row 4 gives its margins as scores: m_ex = 2.5 − (−0.5) = 3 and
// m_im = −6/4 − (−1/2) = −1.5 + 0.5 = −1. AP order: 3, 1, 4, 5 (tie at −0.5,
// lower id first), 2; k = ⌊0.4·5⌋ = 2 selects ids 3 and 1.
var goldenRows = []string{
	`{"id":1,"prompt":[{"role":"user","content":"Say \"hi\" — ünïcode"}],"explicit_margin":7,"implicit_margin":1.375}`,
	`{"id": 2, "explicit_margin": 1, "implicit_margin": -0.875, "note": "rank"}`,
	`{"id":3,"explicit_margin":5,"rank":99,"implicit_margin":0.625,"selected":false,"score":"stale"}`,
	`{"id":4,"score_chosen":2.5,"score_rejected":-0.5,"chosen_logps":-6,"rejected_logps":-1,"chosen_tokens":4,"rejected_tokens":2}`,
	``,
	"{\"id\":5,\"explicit_margin\":4.0,\"implicit_margin\":1.125,\"extra\":{\"nested\":[1,2.50]}}\r",
}

func TestScoreCommandGolden(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "pairs.jsonl"), filepath.Join(dir, "scored.jsonl")
	writeFile(t, in, strings.Join(goldenRows, "\n")+"\n")

	stdout, err := runScore(t, "--in", in, "--out", out)
	require.NoError(t, err)
	require.Contains(t, stdout, "scored 5 pairs by alignment_potential, selected 2")

	lines := readLines(t, out)
	require.Len(t, lines, 5, "the blank line is dropped")
	want := []struct {
		id                 int64
		zEx, zIm, ap       float64
		rank               int
		selected           bool
		keptPrefix         string // the original row up to its closing brace
		explicit, implicit float64
	}{
		{id: 1, zEx: 1.5, zIm: 1.5, ap: 0, rank: 2, selected: true, keptPrefix: strings.TrimSuffix(goldenRows[0], "}")},
		{id: 2, zEx: -1.5, zIm: -0.5, ap: -1, rank: 5, keptPrefix: strings.TrimSuffix(goldenRows[1], "}")},
		{id: 3, zEx: 0.5, zIm: -1.5, ap: 2, rank: 1, selected: true, keptPrefix: `{"id":3,"explicit_margin":5,"implicit_margin":0.625`},
		{id: 4, zEx: -0.5, zIm: 0, ap: -0.5, rank: 3, keptPrefix: strings.TrimSuffix(goldenRows[3], "}"), explicit: 3, implicit: -1},
		{id: 5, zEx: 0, zIm: 0.5, ap: -0.5, rank: 4, keptPrefix: `{"id":5,"explicit_margin":4.0,"implicit_margin":1.125,"extra":{"nested":[1,2.50]}`},
	}
	for i, w := range want {
		line := lines[i]
		require.True(t, strings.HasPrefix(line, w.keptPrefix+","), "row %d keeps its bytes:\n got %s\nwant %s…", i+1, line, w.keptPrefix)
		require.Equal(t, strconv.FormatInt(w.id, 10), string(field(t, line, "id")))
		require.InDelta(t, w.zEx, floatField(t, line, "explicit_z"), 1e-12)
		require.InDelta(t, w.zIm, floatField(t, line, "implicit_z"), 1e-12)
		require.InDelta(t, w.ap, floatField(t, line, "alignment_potential"), 1e-12)
		require.InDelta(t, w.ap, floatField(t, line, "score"), 1e-12)
		require.Equal(t, strconv.Itoa(w.rank), string(field(t, line, "rank")))
		require.Equal(t, strconv.FormatBool(w.selected), string(field(t, line, "selected")))
		keys := topKeys(t, line)
		for _, k := range []string{"explicit_z", "implicit_z", "alignment_potential", "score", "rank", "selected", "explicit_margin", "implicit_margin"} {
			n := 0
			for _, got := range keys {
				if got == k {
					n++
				}
			}
			require.Equal(t, 1, n, "row %d has %q once: %v", i+1, k, keys)
		}
		if w.explicit != 0 {
			require.InDelta(t, w.explicit, floatField(t, line, "explicit_margin"), 1e-12)
			require.InDelta(t, w.implicit, floatField(t, line, "implicit_margin"), 1e-12)
		}
	}
	require.NotContains(t, lines[2], "stale", "the stale score of an earlier run is replaced")
	require.NotContains(t, lines[2], "99")
}

func TestScoreCommandRandomAndCount(t *testing.T) {
	t.Parallel()
	// First 13 hex digits of `printf '42:<id>' | md5sum` (see metric tests):
	// ids 1..5 → 590dd1ac9cf7c, 77d58fd7432c3, 3f473d2ed10aa, 9eff603f580f9,
	// 3be897c4226c4; the order is 4, 2, 1, 3, 5 and --count 2 keeps 4 and 2.
	hex := []string{"590dd1ac9cf7c", "77d58fd7432c3", "3f473d2ed10aa", "9eff603f580f9", "3be897c4226c4"}
	wantRank := []int{3, 2, 4, 1, 5}
	tests := []struct {
		name string
		rows []string
	}{
		{name: "explicit ids", rows: goldenRows},
		{name: "ids from row positions", rows: []string{
			`{"explicit_margin":7,"implicit_margin":1.375}`,
			`{"explicit_margin":1,"implicit_margin":-0.875}`,
			``,
			`{"explicit_margin":5,"implicit_margin":0.625}`,
			`{"explicit_margin":3,"implicit_margin":-1}`,
			`{"explicit_margin":4,"implicit_margin":1.125}`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
			writeFile(t, in, strings.Join(tt.rows, "\n"))
			stdout, err := runScore(t, "--in", in, "--out", out, "--metric", "random", "--count", "2", "--seed", "42")
			require.NoError(t, err)
			require.Contains(t, stdout, "selected 2")
			lines := readLines(t, out)
			require.Len(t, lines, 5)
			for i, line := range lines {
				u, err := strconv.ParseUint(hex[i], 16, 64)
				require.NoError(t, err)
				require.Equal(t, float64(u)/math.Pow(16, 13), floatField(t, line, "score"), "row %d", i+1)
				require.Equal(t, strconv.Itoa(wantRank[i]), string(field(t, line, "rank")))
				require.Equal(t, strconv.FormatBool(wantRank[i] <= 2), string(field(t, line, "selected")))
			}
		})
	}
}

func TestScoreCommandMalformed(t *testing.T) {
	t.Parallel()
	good := `{"explicit_margin":1,"implicit_margin":0.5}`
	tests := []struct {
		name, line, want string
	}{
		{name: "truncated JSON", line: `{"explicit_margin": 1, `, want: "invalid JSON"},
		{name: "trailing garbage", line: good + ` x`, want: "invalid JSON"},
		{name: "array", line: `[1, 2]`, want: "want a JSON object"},
		{name: "null", line: `null`, want: "want a JSON object"},
		{name: "string margin", line: `{"explicit_margin":"1","implicit_margin":0}`, want: "explicit_margin: want a number, got string"},
		{name: "explicit only", line: `{"explicit_margin":1}`, want: "has explicit_margin but no implicit_margin"},
		{name: "implicit only", line: `{"implicit_margin":1,"explicit_margin":null}`, want: "has implicit_margin but no explicit_margin"},
		{name: "no margins at all", line: `{"prompt":"x"}`, want: "missing score_chosen, score_rejected, chosen_logps, rejected_logps, chosen_tokens, rejected_tokens"},
		{name: "missing tokens", line: `{"score_chosen":1,"score_rejected":0,"chosen_logps":-1,"rejected_logps":-2,"chosen_tokens":3}`, want: "(missing rejected_tokens)"},
		{name: "zero tokens", line: `{"score_chosen":1,"score_rejected":0,"chosen_logps":-1,"rejected_logps":-2,"chosen_tokens":3,"rejected_tokens":0}`, want: "rejected_tokens must be a positive integer, got 0"},
		{name: "fractional tokens", line: `{"score_chosen":1,"score_rejected":0,"chosen_logps":-1,"rejected_logps":-2,"chosen_tokens":2.5,"rejected_tokens":1}`, want: "chosen_tokens must be a positive integer, got 2.5"},
		{name: "string id", line: `{"id":"a7","explicit_margin":1,"implicit_margin":0}`, want: `id must be an integer, got "a7"`},
		{name: "fractional id", line: `{"id":1.5,"explicit_margin":1,"implicit_margin":0}`, want: "id must be an integer, got 1.5"},
		{name: "number too large", line: `{"explicit_margin":1e999,"implicit_margin":0}`, want: "explicit_margin: number 1e999 is out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			in := filepath.Join(dir, "pairs.jsonl")
			outDir := filepath.Join(dir, "out")
			require.NoError(t, os.Mkdir(outDir, 0o755))
			out := filepath.Join(outDir, "scored.jsonl")
			writeFile(t, in, good+"\n\n"+tt.line+"\n"+good+"\n")

			_, err := runScore(t, "--in", in, "--out", out)
			require.ErrorContains(t, err, in+":3: ")
			require.ErrorContains(t, err, tt.want)
			entries, err := os.ReadDir(outDir)
			require.NoError(t, err)
			require.Empty(t, entries, "no output and no temporary file is left")
		})
	}
}

func TestScoreCommandKeepsOldOutputOnFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
	writeFile(t, in, `{"explicit_margin":1,"implicit_margin":0}`+"\n"+`{oops`+"\n")
	writeFile(t, out, "previous result\n")
	_, err := runScore(t, "--in", in, "--out", out)
	require.ErrorContains(t, err, in+":2: invalid JSON")
	require.Equal(t, []string{"previous result"}, readLines(t, out))
}

func TestScoreCommandInPlaceAndEmpty(t *testing.T) {
	t.Parallel()
	t.Run("output may replace the input", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "pairs.jsonl")
		writeFile(t, path, `{"explicit_margin":2,"implicit_margin":0}`+"\n"+`{"explicit_margin":1,"implicit_margin":0}`+"\n")
		_, err := runScore(t, "--in", path, "--out", path, "--ratio", "0.5")
		require.NoError(t, err)
		lines := readLines(t, path)
		require.Len(t, lines, 2)
		// m_ex 2 and 1: mean 1.5, std 0.5, z = +1 and −1; |m_im| constant, z = 0.
		require.InDelta(t, 1.0, floatField(t, lines[0], "score"), 1e-12)
		require.Equal(t, "true", string(field(t, lines[0], "selected")))
		require.InDelta(t, -1.0, floatField(t, lines[1], "score"), 1e-12)
		require.Equal(t, "0", string(field(t, lines[1], "implicit_z")))
	})
	t.Run("empty input", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
		writeFile(t, in, "\n\n")
		stdout, err := runScore(t, "--in", in, "--out", out)
		require.NoError(t, err)
		require.Contains(t, stdout, "scored 0 pairs")
		data, err := os.ReadFile(out)
		require.NoError(t, err)
		require.Empty(t, data)
	})
}

func TestScoreCommandFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	writeFile(t, in, `{"explicit_margin":1,"implicit_margin":0}`+"\n")
	out := filepath.Join(dir, "out.jsonl")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "ratio and count", args: []string{"--in", in, "--out", out, "--ratio", "0.5", "--count", "3"}, want: "set --ratio or --count, not both"},
		{name: "misspelt metric", args: []string{"--in", in, "--out", out, "--metric", "alignment-potential"}, want: `did you mean "alignment_potential"?`},
		{name: "ratio out of range", args: []string{"--in", in, "--out", out, "--ratio", "1.2"}, want: "selection ratio 1.2 out of range"},
		{name: "negative weight", args: []string{"--in", in, "--out", out, "--implicit-weight", "-1"}, want: "implicit weight -1 out of range"},
		{name: "missing input flag", args: []string{"--out", out}, want: `required flag(s) "in" not set`},
		{name: "missing input file", args: []string{"--in", filepath.Join(dir, "nope.jsonl"), "--out", out}, want: "no such file"},
		{name: "directory as input", args: []string{"--in", dir, "--out", out}, want: "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := runScore(t, tt.args...)
			require.ErrorContains(t, err, tt.want)
			_, statErr := os.Stat(out)
			require.True(t, os.IsNotExist(statErr), "no output is written")
		})
	}
}

func TestDropMembers(t *testing.T) {
	t.Parallel()
	drop := []string{"rank", "score"}
	tests := []struct {
		name, line, want string
	}{
		{name: "nothing to drop", line: `{"a": 1, "b": [1, 2]}`, want: `{"a": 1, "b": [1, 2]`},
		{name: "first dropped", line: `{"rank": 1, "a": 2}`, want: `{ "a": 2`},
		{name: "middle dropped", line: `{"a":1,"score":{"x":[1]},"b":"rank"}`, want: `{"a":1,"b":"rank"`},
		{name: "last dropped", line: `{"a":1 , "rank":2}`, want: `{"a":1`},
		{name: "all dropped", line: `{"rank":1,"score":2}`, want: `{`},
		{name: "empty", line: `{}`, want: `{`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := dropMembers([]byte(tt.line), drop)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}
}

func TestAppendJSONFloatMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		v    float64
	}{
		{name: "zero", v: 0},
		{name: "negative zero", v: math.Copysign(0, -1)},
		{name: "integer", v: 3},
		{name: "fraction", v: -0.4375},
		{name: "repeating", v: 1.0 / 3},
		{name: "large", v: 123456789.125},
		{name: "tiny", v: 1.5e-7},
		{name: "tiny negative", v: -2e-9},
		{name: "huge", v: 2.5e21},
		{name: "max", v: math.MaxFloat64},
		{name: "smallest", v: math.SmallestNonzeroFloat64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want, err := json.Marshal(tt.v)
			require.NoError(t, err)
			require.Equal(t, string(want), string(appendJSONFloat(nil, tt.v)))
		})
	}
}

// BenchmarkScoreFile1M runs the two-pass scorer over a generated file of
// 1,000,000 rows (~100 MB) in the benchmark's temporary directory.
func BenchmarkScoreFile1M(b *testing.B) {
	dir := b.TempDir()
	in, out := filepath.Join(dir, "pairs.jsonl"), filepath.Join(dir, "scored.jsonl")
	f, err := os.Create(in)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := range 1_000_000 {
		fmt.Fprintf(w, `{"id":%d,"prompt":"prompt number %d","explicit_margin":%g,"implicit_margin":%g}`+"\n",
			i+1, i, float64(i%997)/97, float64(i%31-15)/7)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	spec := metric.DefaultSpec()
	for b.Loop() {
		if _, err := scoreFile(context.Background(), in, out, spec, lengthOptions{control: "none"}); err != nil {
			b.Fatal(err)
		}
	}
}
