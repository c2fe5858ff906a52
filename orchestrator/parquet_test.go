package orchestrator

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
)

func writeJSONL(t testing.TB, path string, rows []Row) {
	t.Helper()
	f, err := os.Create(path)
	require.NoError(t, err)
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for _, r := range rows {
		require.NoError(t, enc.Encode(r))
	}
	require.NoError(t, w.Flush())
	require.NoError(t, f.Close())
}

func fp(v float64) *float64 { return &v }

func TestWriteParquetWithReferenceColumns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rows := []Row{
		{Prompt: []prompt.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}},
			Chosen: []prompt.Message{{Role: "assistant", Content: "hello"}}, Rejected: []prompt.Message{{Role: "assistant", Content: "go away"}},
			PromptID: 7, ScoreChosen: 2.5, ScoreRejected: -1, ExplicitMargin: 3.5, ImplicitMargin: 0.25, AlignmentPotential: 1.75,
			RefChosenLogps: fp(-12.5), RefRejectedLogps: fp(-20)},
		{Prompt: []prompt.Message{{Role: "user", Content: "ünïcode ✓"}},
			Chosen: []prompt.Message{{Role: "assistant", Content: ""}}, Rejected: []prompt.Message{{Role: "assistant", Content: "x"}},
			PromptID: 8, ExplicitMargin: 0.5, ImplicitMargin: -0.5, AlignmentPotential: -1},
	}
	in, out := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "train.parquet")
	writeJSONL(t, in, rows)

	fi, err := writeParquet(in, out, true)
	require.NoError(t, err)
	require.EqualValues(t, 2, fi.Rows)
	require.Len(t, fi.SHA256, 64)

	got, err := parquet.ReadFile[ParquetRefRow](out)
	require.NoError(t, err)
	require.Equal(t, []ParquetRefRow{
		{ParquetRow: ParquetRow{
			Prompt: []ParquetMessage{{"system", "be brief"}, {"user", "hi"}}, Chosen: []ParquetMessage{{"assistant", "hello"}},
			Rejected: []ParquetMessage{{"assistant", "go away"}}, PromptID: 7, ScoreChosen: 2.5, ScoreRejected: -1,
			ExplicitMargin: 3.5, ImplicitMargin: 0.25, AlignmentPotential: 1.75}, RefChosenLogps: fp(-12.5), RefRejectedLogps: fp(-20)},
		{ParquetRow: ParquetRow{
			Prompt: []ParquetMessage{{"user", "ünïcode ✓"}}, Chosen: []ParquetMessage{{"assistant", ""}},
			Rejected: []ParquetMessage{{"assistant", "x"}}, PromptID: 8, ExplicitMargin: 0.5, ImplicitMargin: -0.5, AlignmentPotential: -1}},
	}, got)

	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	pf, err := parquet.OpenFile(f, st.Size())
	require.NoError(t, err)
	require.Contains(t, pf.Schema().String(), "optional double ref_chosen_logps;")
	require.Contains(t, pf.Schema().String(), "optional double ref_rejected_logps;")
}

func TestWriteParquetRejectsABrokenExport(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "train.parquet")
	require.NoError(t, os.WriteFile(in, []byte(`{"prompt_id": 1}`+"\n"+`{"prompt_id": `+"\n"), 0o600))
	_, err := writeParquet(in, out, false)
	require.ErrorContains(t, err, "line 2 of the JSONL export")
	_, err = os.Stat(out)
	require.True(t, os.IsNotExist(err), "no half-written file is left behind")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temporary file is removed")
}

// BenchmarkWriteParquet100k converts a 100,000-row export (about 600
// bytes of text per row) to Parquet.
func BenchmarkWriteParquet100k(b *testing.B) {
	dir := b.TempDir()
	in, out := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "train.parquet")
	rows := make([]Row, 100_000)
	for i := range rows {
		rows[i] = Row{
			Prompt:   []prompt.Message{{Role: "user", Content: fmt.Sprintf("question %d: %s", i, strings.Repeat("how do i cook rice ? ", 5))}},
			Chosen:   []prompt.Message{{Role: "assistant", Content: strings.Repeat("rinse the rice, then simmer it . ", 8)}},
			Rejected: []prompt.Message{{Role: "assistant", Content: strings.Repeat("no idea . ", 10)}},
			PromptID: int64(i), ScoreChosen: float64(i%7) / 2, ScoreRejected: -float64(i%5) / 3,
			ExplicitMargin: float64(i%11) / 4, ImplicitMargin: float64(i%13)/10 - 0.6, AlignmentPotential: float64(i%17)/5 - 1.6,
		}
	}
	writeJSONL(b, in, rows)
	st, err := os.Stat(in)
	require.NoError(b, err)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		if _, err := writeParquet(in, out, false); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(rows))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
