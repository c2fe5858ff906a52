package cli

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestScoreCommandLengthControl scores a file of two pairs worked by hand:
// replies (tokens, reward) A = (4, 6) vs (1, 1) and B = (2, 3) vs (3, 2), with
// equal implicit margins (log-probs −1 per token). The fit over the four
// replies: x̄ = 2.5, ȳ = 3, Sxx = 5, Sxy = 7, slope 1.4, R² = 49/70 = 0.7.
// Residual margins: A 5 − 1.4·3 = 0.8, B 1 − 1.4·(−1) = 2.4, so residual keeps
// B where the raw margin (5 against 1) keeps A.
func TestScoreCommandLengthControl(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in := filepath.Join(dir, "pairs.jsonl")
	writeFile(t, in, `{"id": 1, "score_chosen": 6, "score_rejected": 1, "chosen_tokens": 4, "rejected_tokens": 1, "chosen_logps": -4, "rejected_logps": -1}
{"id": 2, "score_chosen": 3, "score_rejected": 2, "chosen_tokens": 2, "rejected_tokens": 3, "chosen_logps": -2, "rejected_logps": -3}
`)
	out := filepath.Join(dir, "scored.jsonl")
	selected := func(lines []string) []bool {
		var s []bool
		for _, l := range lines {
			s = append(s, string(field(t, l, "selected")) == "true")
		}
		return s
	}

	msg, err := runScore(t, "--in", in, "--out", out, "--ratio", "0.5")
	require.NoError(t, err)
	require.NotContains(t, msg, "length control")
	lines := readLines(t, out)
	require.Equal(t, []bool{true, false}, selected(lines))
	require.NotContains(t, topKeys(t, lines[0]), "residual_margin")

	msg, err = runScore(t, "--in", in, "--out", out, "--ratio", "0.5", "--length-control", "residual")
	require.NoError(t, err)
	require.Contains(t, msg, "length control residual: slope 1.4 reward per token, R² 0.700, fitted over the file's 4 replies")
	lines = readLines(t, out)
	require.Equal(t, []bool{false, true}, selected(lines))
	require.InDelta(t, 0.8, floatField(t, lines[0], "residual_margin"), 1e-12)
	require.InDelta(t, 2.4, floatField(t, lines[1], "residual_margin"), 1e-12)
	require.Equal(t, 5.0, floatField(t, lines[0], "explicit_margin"), "the raw margin is written as it is")

	// A given slope of 0 removes nothing: the raw selection.
	_, err = runScore(t, "--in", in, "--out", out, "--ratio", "0.5", "--length-control", "residual", "--length-slope", "0")
	require.NoError(t, err)
	require.Equal(t, []bool{true, false}, selected(readLines(t, out)))

	// Every reply of the same length: no slope, the raw margins, said.
	same := filepath.Join(dir, "same.jsonl")
	writeFile(t, same, `{"explicit_margin": 1, "implicit_margin": 0, "score_chosen": 2, "score_rejected": 1, "chosen_tokens": 7, "rejected_tokens": 7}
{"explicit_margin": 3, "implicit_margin": 0, "score_chosen": 4, "score_rejected": 1, "chosen_tokens": 7, "rejected_tokens": 7}
`)
	msg, err = runScore(t, "--in", same, "--out", out, "--ratio", "0.5", "--length-control", "residual")
	require.NoError(t, err)
	require.Contains(t, msg, "every reply has the same length, so the slope is undefined; scored the raw margins")
	require.Equal(t, []bool{false, true}, selected(readLines(t, out)))

	for _, tc := range []struct {
		rows string
		args []string
		want string
	}{
		{`{"explicit_margin": 1, "implicit_margin": 0}` + "\n", nil, "row 1: --length-control residual needs chosen_tokens and rejected_tokens"},
		{`{"explicit_margin": 1, "implicit_margin": 0, "chosen_tokens": 2, "rejected_tokens": 1}` + "\n", nil,
			"row 1: fitting the length slope needs score_chosen and score_rejected (or give --length-slope)"},
		{`{"explicit_margin": 1, "implicit_margin": 0, "chosen_tokens": 2.5, "rejected_tokens": 1}` + "\n", []string{"--length-slope", "1"},
			"row 1: chosen_tokens must be a non-negative integer, got 2.5"},
	} {
		bad := filepath.Join(dir, "bad.jsonl")
		writeFile(t, bad, tc.rows)
		_, err := runScore(t, append([]string{"--in", bad, "--out", out, "--length-control", "residual"}, tc.args...)...)
		require.ErrorContains(t, err, tc.want)
	}
	_, err = runScore(t, "--in", in, "--out", out, "--length-control", "Residual")
	require.ErrorContains(t, err, `--length-control "Residual": want none or residual`)
	_, err = runScore(t, "--in", in, "--out", out, "--length-slope", "1")
	require.ErrorContains(t, err, "--length-slope needs --length-control residual")
}
