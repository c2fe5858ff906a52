package tinylm

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func testModel(t *testing.T) *Model {
	t.Helper()
	m, err := NewModel(testTokenizer(t), 4, 0.7, 42)
	require.NoError(t, err)
	for v := range m.B {
		m.B[v] = 0.1 * float64(v%5)
	}
	return m
}

func TestLogitsFormula(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	prompt := []int{UserID, 9, 10, 11, EndID, AssistantID}
	prev := 13
	got := make([]float64, m.V())
	m.Logits(prompt, prev, got)
	for v := range m.V() {
		want := m.B[v]
		for k := range m.Dim {
			var c float64
			for _, w := range prompt {
				c += m.F[w*m.Dim+k]
			}
			h := m.E[prev*m.Dim+k] + c/float64(len(prompt))
			want += m.U[v*m.Dim+k] * h
		}
		require.InDelta(t, want, got[v], 1e-12, "logit %d", v)
	}
	lp := make([]float64, m.V())
	LogSoftmax(got, lp)
	var total float64
	for _, x := range lp {
		total += math.Exp(x)
	}
	require.InDelta(t, 1, total, 1e-12, "probabilities sum to one")
}

func TestConditioningPrefix(t *testing.T) {
	t.Parallel()
	seq := []int{UserID, 9, EndID, AssistantID, 13, 14, EndID, UserID, 9, EndID, AssistantID, 13}
	tests := []struct {
		name string
		t    int
		want int
	}{
		{name: "before any assistant: all history", t: 2, want: 2},
		{name: "first response token", t: 4, want: 4},
		{name: "later response token", t: 6, want: 4},
		{name: "next user turn still conditioned on first prompt", t: 8, want: 4},
		{name: "second reply conditioned on everything before it", t: 11, want: 11},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, ConditioningPrefix(seq, tc.t))
		})
	}
}

func TestSequenceLogProbsMatchesResponseLogProbs(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	prompt := []int{SystemID, 13, EndID, UserID, 9, 10, 11, 12, EndID, AssistantID}
	resp := []int{13, 14, 5, 7, 6, 8, EndID}
	want, err := m.ResponseLogProbs(prompt, resp)
	require.NoError(t, err)
	seq := append(append([]int(nil), prompt...), resp...)
	lps, tops, ranks, err := m.SequenceLogProbs(seq, 3)
	require.NoError(t, err)
	require.True(t, math.IsNaN(lps[0]), "the first position has no prediction")
	require.Equal(t, want, lps[len(prompt):], "teacher forcing over the sequence gives the very same numbers")
	for i := 1; i < len(seq); i++ {
		require.Len(t, tops[i], 3)
		require.GreaterOrEqual(t, tops[i][0].LogProb, lps[i])
		require.Equal(t, ranks[i] == 1, tops[i][0].ID == seq[i], "rank 1 iff the token is the top one")
	}
	// Without an <|assistant|>, every token conditions the next.
	plain := []int{9, 10, 11}
	lp2, _, _, err := m.SequenceLogProbs(plain, 0)
	require.NoError(t, err)
	z := make([]float64, m.V())
	m.Logits(plain[:2], plain[1], z)
	require.InDelta(t, z[11]-LogSumExp(z), lp2[2], 1e-12)

	_, _, _, err = m.SequenceLogProbs([]int{1, 999}, 0)
	require.ErrorContains(t, err, "outside the vocabulary")
}

func TestAccumulateLogProbGradMatchesFiniteDifferences(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		prompt, resp []int
	}{
		{name: "chat prompt", prompt: []int{UserID, 9, 10, 11, 12, EndID, AssistantID}, resp: []int{13, 14, 9, EndID}},
		{name: "response with a new assistant turn", prompt: []int{UserID, 9, 10, EndID, AssistantID}, resp: []int{13, EndID, UserID, 9, AssistantID, 14}},
		{name: "plain prompt", prompt: []int{9, 10}, resp: []int{11, 12, 13}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := testModel(t)
			g := NewGrad(m)
			const scale = 0.5
			lp := m.AccumulateLogProbGrad(g, tc.prompt, tc.resp, scale)
			f := func() float64 {
				lps, err := m.ResponseLogProbs(tc.prompt, tc.resp)
				require.NoError(t, err)
				var s float64
				for _, x := range lps {
					s += x
				}
				return s
			}
			require.InDelta(t, f(), lp, 1e-12)
			const eps = 1e-5
			params := map[string][2][]float64{"B": {m.B, g.B}, "U": {m.U, g.U}, "E": {m.E, g.E}, "F": {m.F, g.F}}
			for name, pg := range params {
				p, gr := pg[0], pg[1]
				for i := 0; i < len(p); i += 3 {
					old := p[i]
					p[i] = old + eps
					up := f()
					p[i] = old - eps
					down := f()
					p[i] = old
					num := scale * (up - down) / (2 * eps)
					require.InDelta(t, num, gr[i], 1e-6, "%s[%d]", name, i)
				}
			}
		})
	}
}

func TestTopK(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lp   []float64
		k    int
		want []TokenLogProb
	}{
		{name: "best first", lp: []float64{-3, -1, -2}, k: 2, want: []TokenLogProb{{1, -1}, {2, -2}}},
		{name: "ties keep lower id first", lp: []float64{-1, -2, -1, -1}, k: 3, want: []TokenLogProb{{0, -1}, {2, -1}, {3, -1}}},
		{name: "k larger than vocabulary", lp: []float64{-2, -1}, k: 5, want: []TokenLogProb{{1, -1}, {0, -2}}},
		{name: "k zero", lp: []float64{-2, -1}, k: 0, want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, TopK(tc.lp, tc.k))
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	t.Parallel()
	m := testModel(t)
	path := filepath.Join(t.TempDir(), "m.bin.gz")
	require.NoError(t, m.Save(path))
	got, err := Load(path)
	require.NoError(t, err)
	require.Equal(t, m.Tok.Words(), got.Tok.Words())
	require.Equal(t, m.Dim, got.Dim)
	require.Equal(t, m.B, got.B)
	require.Equal(t, m.U, got.U)
	require.Equal(t, m.E, got.E)
	require.Equal(t, m.F, got.F)

	var buf bytes.Buffer
	require.NoError(t, m.Encode(&buf))
	full := buf.Bytes()
	bad := filepath.Join(t.TempDir(), "bad")
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{name: "not gzip", data: []byte("hello"), want: "not a gzip weights file"},
		{name: "truncated", data: full[:len(full)/2], want: "unexpected EOF"},
	}
	for _, tc := range tests {
		require.NoError(t, os.WriteFile(bad, tc.data, 0o600))
		_, err := Load(bad)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)

	m.B[0] = math.NaN()
	require.ErrorContains(t, m.Save(path), "non-finite")
}

func TestBuiltin(t *testing.T) {
	t.Parallel()
	require.LessOrEqual(t, len(builtinWeights), 1<<20, "the embedded weights stay under 1 MB")
	a, b := Builtin(), Builtin()
	require.GreaterOrEqual(t, a.V(), 500)
	require.LessOrEqual(t, a.V(), 2000)
	require.NoError(t, a.validate())
	a.B[7] += 1
	require.NotEqual(t, a.B[7], b.B[7], "Builtin returns independent copies")
	spec, err := LoadSpec("builtin")
	require.NoError(t, err)
	require.Equal(t, b.U, spec.U)
}
