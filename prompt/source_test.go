package prompt_test

import (
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
)

// hfMessage and hfRow lay a file out as Hugging Face datasets written by
// pyarrow do (ultrafeedback_binarized: prompt, prompt_id, chosen and
// messages lists, scores): every column optional, lists as 3-level LISTs.
type hfMessage struct {
	Content *string `parquet:"content,optional"`
	Role    *string `parquet:"role,optional"`
}

type hfRow struct {
	Prompt      *string     `parquet:"prompt,optional"`
	PromptID    *string     `parquet:"prompt_id,optional"`
	Chosen      []hfMessage `parquet:"chosen,list"`
	Messages    []hfMessage `parquet:"messages,list"`
	ScoreChosen float64     `parquet:"score_chosen"`
}

func str(s string) *string { return &s }

func msgs(pairs ...string) []hfMessage {
	var out []hfMessage
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, hfMessage{Role: str(pairs[i]), Content: str(pairs[i+1])})
	}
	return out
}

func writeParquet[T any](t *testing.T, name string, rows []T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[T](f)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
	return path
}

func writeGzip(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	require.NoError(t, err)
	zw := gzip.NewWriter(f)
	_, err = zw.Write([]byte(body))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, f.Close())
	return path
}

func texts(ps []prompt.Prompt) []string {
	var out []string
	for _, p := range ps {
		out = append(out, prompt.Text(p.Messages))
	}
	return out
}

func ultrafeedback(n int) []hfRow {
	var rows []hfRow
	for i := range n {
		q := "question " + string(rune('a'+i))
		rows = append(rows, hfRow{Prompt: str(q), PromptID: str("id-" + string(rune('a'+i))),
			Chosen: msgs("user", q, "assistant", "answer"), Messages: msgs("user", q, "assistant", "answer"), ScoreChosen: 8})
	}
	return rows
}

func TestReadParquet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	uf := writeParquet(t, "train_prefs.parquet", ultrafeedback(3))
	ps, err := prompt.ReadSource(ctx, prompt.Source{Files: []string{uf}})
	require.NoError(t, err, "the prompt column by default, other columns ignored")
	require.Equal(t, []string{"question a", "question b", "question c"}, texts(ps))
	require.Equal(t, []prompt.Message{{Role: "user", Content: "question a"}}, ps[0].Messages)
	require.Equal(t, "id-a", ps[0].SourceID, "prompt_id is the source id")
	require.Equal(t, uf, ps[0].Source)

	type chat struct {
		ID       int64       `parquet:"id"`
		Messages []hfMessage `parquet:"messages,list"`
	}
	conv := writeParquet(t, "chat.parquet", []chat{{ID: 7, Messages: msgs("system", "be brief", "user", "hi")}})
	ps, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{conv}})
	require.NoError(t, err, "the messages column when there is no prompt column")
	require.Equal(t, []prompt.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, ps[0].Messages)
	require.Equal(t, "7", ps[0].SourceID)

	type instr struct {
		Instruction string `parquet:"instruction"`
		Source      string `parquet:"source"`
	}
	named := writeParquet(t, "instr.parquet", []instr{{"Explain tides.", "flan"}, {"Explain tides.", "sharegpt"}, {"Name a prime.", "flan"}})
	ps, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{named}, Column: "instruction"})
	require.NoError(t, err)
	require.Equal(t, []string{"Explain tides.", "Name a prime."}, texts(ps), "duplicates kept once")
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{named}})
	require.EqualError(t, err, named+`: no "prompt" or "messages" column; name the prompt column with prompts.column (the file has instruction, source)`)
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{named}, Column: "question"})
	require.EqualError(t, err, named+`: no column "question" (prompts.column); the file has instruction, source`)
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{uf}, Column: "chosen"})
	require.ErrorContains(t, err, uf+":1: the last message must be from the user")

	notParquet := filepath.Join(t.TempDir(), "x.parquet")
	require.NoError(t, os.WriteFile(notParquet, []byte(`{"prompt": "json, not parquet"}`), 0o600))
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{notParquet}})
	require.ErrorContains(t, err, notParquet+": not a Parquet file")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = prompt.ReadSource(cancelled, prompt.Source{Files: []string{uf}})
	require.ErrorIs(t, err, context.Canceled)
}

// A bad row anywhere fails the whole read with FILE:ROW, as a bad line of
// a JSON Lines file does.
func TestReadParquetBadRows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		bad    hfRow
		reason string
	}{
		{name: "null prompt", bad: hfRow{}, reason: `"prompt" is null`},
		{name: "empty prompt", bad: hfRow{Prompt: str("  ")}, reason: "messages[0].content is empty"},
		{name: "NUL", bad: hfRow{Prompt: str("a\x00b")}, reason: "holds a NUL character"},
		{name: "invalid UTF-8", bad: hfRow{Prompt: str("caf\xe9")}, reason: "invalid UTF-8"},
		{name: "over-long", bad: hfRow{Prompt: str(strings.Repeat("x", 21))}, reason: "prompt has 21 characters, over max_prompt_chars 20"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rows := append(append(ultrafeedback(2), tc.bad), ultrafeedback(1)...)
			path := writeParquet(t, "bad.parquet", rows)
			ps, err := prompt.ReadSource(context.Background(), prompt.Source{Files: []string{path}, MaxChars: 20})
			require.Nil(t, ps)
			var le *prompt.LineError
			require.True(t, errors.As(err, &le), "%T: %v", err, err)
			require.Equal(t, path, le.File)
			require.Equal(t, 3, le.Line)
			require.Contains(t, le.Reason, tc.reason)
		})
	}

	type badMsgs struct {
		Messages []hfMessage `parquet:"messages,list"`
	}
	path := writeParquet(t, "msgs.parquet", []badMsgs{{Messages: msgs("user", "ok")}, {Messages: []hfMessage{{Role: str("user")}}}})
	_, err := prompt.ReadSource(context.Background(), prompt.Source{Files: []string{path}})
	require.EqualError(t, err, path+":2: messages[0]: expected text role and content")
}

func TestReadGzipAndNamedColumns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	gz := writeGzip(t, "pool.jsonl.gz", `{"prompt": "a"}`+"\n"+`{"id": 3, "messages": [{"role": "user", "content": "b"}]}`+"\n")
	ps, err := prompt.ReadSource(ctx, prompt.Source{Files: []string{gz}})
	require.NoError(t, err)
	require.Equal(t, []string{"a", "b"}, texts(ps))
	require.Equal(t, "3", ps[1].SourceID)

	bad := writeGzip(t, "bad.jsonl.gz", `{"prompt": "a"}`+"\n"+`{"prompt": "b", "answer": "c"}`+"\n")
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{bad}})
	require.EqualError(t, err, bad+`:2: invalid JSON: unknown field "answer"`, "the strict form without prompts.column")

	truncated := filepath.Join(t.TempDir(), "cut.jsonl.gz")
	b, err := os.ReadFile(gz)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(truncated, b[:len(b)-6], 0o600))
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{truncated}})
	require.ErrorContains(t, err, truncated+":")
	require.ErrorContains(t, err, "unexpected EOF")

	rows := writeGzip(t, "uf.jsonl.gz", `{"question": "q1", "qid": 12345678901234567890, "completions": [1, 2]}`+"\n"+
		`{"question": [{"role": "user", "content": "q2"}], "qid": "b"}`+"\n")
	ps, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{rows}, Column: "question", IDColumn: "qid"})
	require.NoError(t, err, "other fields are ignored when the column is named")
	require.Equal(t, []string{"q1", "q2"}, texts(ps))
	require.Equal(t, "12345678901234567890", ps[0].SourceID, "a numeric id as written")
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{rows}, Column: "prompt"})
	require.EqualError(t, err, rows+`:1: no "prompt" field (prompts.column)`)
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{rows}, Column: "qid"})
	require.EqualError(t, err, rows+`:1: "qid": expected a text or a list of {role, content} messages, got a number`)
}

// limit reads only the first rows, across files in order; sample draws a
// seeded subset in file order.
func TestLimitAndSample(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := writeParquet(t, "a.parquet", ultrafeedback(5))
	var lines []string
	for _, q := range []string{"f", "g", "h"} {
		lines = append(lines, `{"prompt": "question `+q+`"}`)
	}
	lines = append(lines, `{"prompt": ""}`) // row 4 of b: bad, but past the limit
	b := writeGzip(t, "b.jsonl.gz", strings.Join(lines, "\n"))

	ps, err := prompt.ReadSource(ctx, prompt.Source{Files: []string{a, b}, Limit: 7})
	require.NoError(t, err, "rows past the limit are not read")
	require.Equal(t, []string{"question a", "question b", "question c", "question d", "question e", "question f", "question g"}, texts(ps))
	ps, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{a, b}, Limit: 3})
	require.NoError(t, err, "the second file is not opened")
	require.Len(t, ps, 3)
	_, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{a, b}})
	require.ErrorContains(t, err, b+":4: messages[0].content is empty")

	sample := func(seed int64) []string {
		ps, err := prompt.ReadSource(ctx, prompt.Source{Files: []string{a, b}, Limit: 8, Sample: 4, Seed: seed})
		require.NoError(t, err)
		return texts(ps)
	}
	one := sample(1)
	require.Len(t, one, 4)
	require.Equal(t, one, sample(1), "the same seed draws the same sample")
	require.NotEqual(t, one, sample(2))
	all := []string{"question a", "question b", "question c", "question d", "question e", "question f", "question g", "question h"}
	last := -1
	for _, q := range one {
		i := strings.Index(strings.Join(all, "|"), q)
		require.Greater(t, i, last, "file order is kept")
		last = i
	}
	ps, err = prompt.ReadSource(ctx, prompt.Source{Files: []string{a}, Sample: 50})
	require.NoError(t, err)
	require.Len(t, ps, 5, "a sample larger than the pool keeps it all")
}
