package orchestrator

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"

	"github.com/selfplay/selfplay/prompt"
)

// ParquetMessage is one chat message in a Parquet export: a struct with
// role and content, so the message lists load in Hugging Face datasets as
// lists of {"role", "content"} like the JSONL's.
type ParquetMessage struct {
	Role    string `parquet:"role" json:"role"`
	Content string `parquet:"content" json:"content"`
}

// ParquetRow is one row of train.parquet: the columns of train.jsonl (see
// Row), the message lists as Parquet LISTs of structs.
type ParquetRow struct {
	Prompt             []ParquetMessage `parquet:"prompt,list"`
	Chosen             []ParquetMessage `parquet:"chosen,list"`
	Rejected           []ParquetMessage `parquet:"rejected,list"`
	PromptID           int64            `parquet:"prompt_id"`
	ScoreChosen        float64          `parquet:"score_chosen"`
	ScoreRejected      float64          `parquet:"score_rejected"`
	ExplicitMargin     float64          `parquet:"explicit_margin"`
	ImplicitMargin     float64          `parquet:"implicit_margin"`
	AlignmentPotential float64          `parquet:"alignment_potential"`
}

// ParquetRefRow is ParquetRow with the reference log-prob columns, written
// when the iteration has a reference model (the JSONL then carries them on
// every row).
type ParquetRefRow struct {
	ParquetRow
	RefChosenLogps   *float64 `parquet:"ref_chosen_logps,optional"`
	RefRejectedLogps *float64 `parquet:"ref_rejected_logps,optional"`
}

// parquetRowGroup bounds the rows a writer holds in memory before it
// flushes a row group; at a few KiB per row this stays in the tens of MiB.
const parquetRowGroup = 10_000

// writeParquet converts the JSONL export at jsonlPath into a Snappy-
// compressed Parquet file at path (temporary file + rename), row by row in
// the same order, with the reference columns when withRef. It returns the
// rows written and the file's sha256.
func writeParquet(jsonlPath, path string, withRef bool) (FileInfo, error) {
	in, err := os.Open(jsonlPath)
	if err != nil {
		return FileInfo{}, err
	}
	defer in.Close()
	var rows int64
	sum, err := writeAtomic(path, func(w io.Writer) error {
		if withRef {
			rows, err = convertJSONL(in, w, func(r Row) ParquetRefRow {
				return ParquetRefRow{ParquetRow: parquetRow(r), RefChosenLogps: r.RefChosenLogps, RefRejectedLogps: r.RefRejectedLogps}
			})
		} else {
			rows, err = convertJSONL(in, w, parquetRow)
		}
		return err
	})
	if err != nil {
		return FileInfo{}, fmt.Errorf("write %s: %w", path, err)
	}
	return FileInfo{Rows: rows, SHA256: sum}, nil
}

func convertJSONL[T any](in io.Reader, out io.Writer, conv func(Row) T) (int64, error) {
	pw := parquet.NewGenericWriter[T](out, parquet.Compression(&parquet.Snappy),
		parquet.MaxRowsPerRowGroup(parquetRowGroup), parquet.CreatedBy("selfplay", "", ""))
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<16), 1<<30)
	batch := make([]T, 0, 256)
	var n int64
	flush := func() error {
		if _, err := pw.Write(batch); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	for sc.Scan() {
		var r Row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return n, fmt.Errorf("line %d of the JSONL export: %w", n+1, err)
		}
		batch = append(batch, conv(r))
		n++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	if err := flush(); err != nil {
		return n, err
	}
	return n, pw.Close()
}

func parquetRow(r Row) ParquetRow {
	return ParquetRow{
		Prompt: parquetMessages(r.Prompt), Chosen: parquetMessages(r.Chosen), Rejected: parquetMessages(r.Rejected),
		PromptID: r.PromptID, ScoreChosen: r.ScoreChosen, ScoreRejected: r.ScoreRejected,
		ExplicitMargin: r.ExplicitMargin, ImplicitMargin: r.ImplicitMargin, AlignmentPotential: r.AlignmentPotential,
	}
}

func parquetMessages(ms []prompt.Message) []ParquetMessage {
	out := make([]ParquetMessage, len(ms))
	for i, m := range ms {
		out[i] = ParquetMessage{Role: m.Role, Content: m.Content}
	}
	return out
}
