package prompt

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/parquet-go/parquet-go"

	"github.com/selfplay/selfplay/internal/jsonl"
)

// Source says how an iteration reads its prompt files: which column holds
// the prompt, which the source id, and how many rows to take.
//
// A file's format follows its name: .parquet is Apache Parquet (what
// Hugging Face datasets publish), .gz (.jsonl.gz) is gzip-compressed JSON
// Lines, anything else JSON Lines.
type Source struct {
	Files []string
	// Column names the prompt column, a text (one user message) or a list
	// of {role, content} messages. "" means: in JSON Lines, "prompt" or
	// "messages" on each line, nothing else but "id" (the strict form);
	// in Parquet, the "prompt" column, else the "messages" column. With a
	// column named, JSON Lines rows may hold other fields, which are
	// ignored, as Parquet's other columns always are.
	Column string
	// IDColumn names the source-id column; "" means "id", else
	// "prompt_id", when the file has one.
	IDColumn string
	// Limit > 0 reads only the first Limit rows, counted across the files
	// in order; the rest of the files is not read.
	Limit int
	// Sample > 0 keeps Sample of the prompts read, drawn at random with
	// Seed (the same files and seed give the same sample), in file order.
	Sample int
	Seed   int64
	// MaxChars > 0 caps a prompt's length in characters.
	MaxChars int
}

// ReadSource reads the source's files. Every row read must be a good
// prompt, else the whole read fails with a *LineError ("FILE:ROW:
// reason"; the row is the line of a JSON Lines file, 1-based, and the row
// of a Parquet file, 1-based), so a caller inserts all or nothing.
// Prompts repeated within or across files are kept once. It stops with
// ctx.Err() when ctx ends.
func ReadSource(ctx context.Context, src Source) ([]Prompt, error) {
	var out []Prompt
	seen := map[string]bool{}
	rows := 0
	for _, path := range src.Files {
		if src.Limit > 0 && rows >= src.Limit {
			break
		}
		n, err := readOne(ctx, path, src, src.Limit-rows, func(p Prompt, _ int) {
			if !seen[p.Hash] {
				seen[p.Hash] = true
				out = append(out, p)
			}
		})
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no prompts in file", path)
		}
		rows += n
	}
	if src.Sample > 0 && src.Sample < len(out) {
		r := rand.New(rand.NewPCG(uint64(src.Seed), 0x5e1f91a7))
		keep := r.Perm(len(out))[:src.Sample]
		sort.Ints(keep)
		sampled := make([]Prompt, len(keep))
		for i, k := range keep {
			sampled[i] = out[k]
		}
		out = sampled
	}
	return out, nil
}

// EachRow reads the source's files (Limit, Sample and duplicate removal do
// not apply) and calls fn with every prompt, its file and its row (the
// line of a JSON Lines file, the row of a Parquet file, both 1-based). A bad
// row fails the read with a *LineError naming file and row, an empty file
// with an error naming the file.
func EachRow(ctx context.Context, src Source, fn func(file string, row int, p Prompt)) error {
	for _, path := range src.Files {
		n, err := readOne(ctx, path, src, 0, func(p Prompt, row int) { fn(path, row, p) })
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s: no prompts in file", path)
		}
	}
	return nil
}

// readOne reads up to limit rows (all when limit <= 0) of one file, calls
// add with each prompt and its 1-based row, and returns how many it read.
func readOne(ctx context.Context, path string, src Source, limit int, add func(Prompt, int)) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("read prompts: %w", err)
	}
	defer f.Close()
	if strings.EqualFold(ext(path), ".parquet") {
		return readParquet(ctx, f, path, src, limit, add)
	}
	var r io.Reader = f
	br := bufio.NewReader(f)
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		r = zr
	} else {
		r = br
	}
	rows := 0
	errLimit := errors.New("limit reached")
	err = jsonl.EachContext(ctx, r, path, 0, func(n int, raw []byte) error {
		var p Prompt
		var reason string
		if src.Column == "" {
			p, reason = parseLine(raw, path, src.MaxChars)
		} else {
			p, reason = parseRecord(raw, path, src)
		}
		if reason != "" {
			return &LineError{File: path, Line: n, Reason: reason}
		}
		add(p, n)
		if rows++; limit > 0 && rows >= limit {
			return errLimit
		}
		return nil
	})
	if errors.Is(err, errLimit) {
		return rows, nil
	}
	if tl := (*jsonl.LineTooLongError)(nil); errors.As(err, &tl) {
		return 0, &LineError{File: path, Line: tl.Line, Reason: tl.Reason()}
	}
	return rows, err
}

// ext is the file's extension, ".parquet" or ".gz" for "x.jsonl.gz".
func ext(path string) string {
	if i := strings.LastIndexByte(path, '.'); i >= 0 && !strings.ContainsRune(path[i:], os.PathSeparator) {
		return path[i:]
	}
	return ""
}

// parseRecord reads a JSON Lines row whose prompt is in src.Column.
func parseRecord(raw []byte, name string, src Source) (Prompt, string) {
	if !utf8.Valid(raw) {
		return Prompt{}, "invalid UTF-8"
	}
	var rec map[string]json.RawMessage
	if err := json.Unmarshal(raw, &rec); err != nil {
		return Prompt{}, "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	cell, ok := rec[src.Column]
	if !ok || string(cell) == "null" {
		return Prompt{}, fmt.Sprintf("no %q field (prompts.column)", src.Column)
	}
	var value any
	if err := json.Unmarshal(cell, &value); err != nil {
		return Prompt{}, "invalid JSON: " + err.Error()
	}
	msgs, reason := messagesOf(src.Column, value)
	if reason != "" {
		return Prompt{}, reason
	}
	idKey := src.IDColumn
	if idKey == "" {
		for _, k := range []string{"id", "prompt_id"} {
			if _, ok := rec[k]; ok && k != src.Column {
				idKey = k
				break
			}
		}
	}
	var id any
	if idKey != "" {
		cell, ok := rec[idKey]
		if !ok {
			return Prompt{}, fmt.Sprintf("no %q field (prompts.id_column)", idKey)
		}
		var s string
		if json.Unmarshal(cell, &s) == nil {
			id = s
		} else if string(cell) != "null" {
			id = string(cell) // a number as written, not rounded through float64
		}
	}
	return finish(msgs, name, id, src.MaxChars)
}

// messagesOf reads a prompt cell: a text is one user message, a list holds
// {role, content} messages.
func messagesOf(column string, value any) ([]Message, string) {
	switch v := value.(type) {
	case string:
		return []Message{{Role: "user", Content: v}}, ""
	case []any:
		msgs := make([]Message, len(v))
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, fmt.Sprintf("%s[%d]: expected a {role, content} message, got %s", column, i, kind(e))
			}
			role, rok := m["role"].(string)
			content, cok := m["content"].(string)
			if !rok || !cok {
				return nil, fmt.Sprintf("%s[%d]: expected text role and content", column, i)
			}
			msgs[i] = Message{Role: role, Content: content}
		}
		return msgs, ""
	case nil:
		return nil, fmt.Sprintf("%q is null", column)
	}
	return nil, fmt.Sprintf("%q: expected a text or a list of {role, content} messages, got %s", column, kind(value))
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string, []byte:
		return "a text"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	case bool:
		return "a boolean"
	}
	return "a number"
}

// finish validates msgs and the id and builds the prompt.
func finish(msgs []Message, name string, id any, maxChars int) (Prompt, string) {
	for i := range msgs {
		if !utf8.ValidString(msgs[i].Content) || !utf8.ValidString(msgs[i].Role) {
			return Prompt{}, fmt.Sprintf("messages[%d]: invalid UTF-8", i)
		}
	}
	if reason := Validate(msgs, maxChars); reason != "" {
		return Prompt{}, reason
	}
	sid := ""
	switch v := id.(type) {
	case nil:
	case string:
		sid = v
	case []byte:
		sid = string(v)
	case int64, int32, int, uint64, uint32, float64, float32, bool:
		sid = fmt.Sprint(v)
	default:
		b, _ := json.Marshal(v)
		sid = string(b)
	}
	if strings.ContainsRune(sid, 0) || !utf8.ValidString(sid) {
		return Prompt{}, "the id holds a NUL character or invalid UTF-8, which PostgreSQL text cannot store"
	}
	return New(msgs, name, sid), ""
}

// readParquet reads the prompt (and id) columns of a Parquet file row by
// row; the other columns are not decoded.
func readParquet(ctx context.Context, f *os.File, path string, src Source, limit int, add func(Prompt, int)) (int, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("read prompts: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return 0, fmt.Errorf("%s: not a Parquet file: %w", path, err)
	}
	fields := map[string]parquet.Field{}
	var names []string
	for _, fl := range pf.Schema().Fields() {
		fields[fl.Name()] = fl
		names = append(names, fl.Name())
	}
	column := src.Column
	if column == "" {
		for _, c := range []string{"prompt", "messages"} {
			if _, ok := fields[c]; ok {
				column = c
				break
			}
		}
		if column == "" {
			return 0, fmt.Errorf(`%s: no "prompt" or "messages" column; name the prompt column with prompts.column (the file has %s)`, path, strings.Join(names, ", "))
		}
	}
	if _, ok := fields[column]; !ok {
		return 0, fmt.Errorf("%s: no column %q (prompts.column); the file has %s", path, column, strings.Join(names, ", "))
	}
	idColumn := src.IDColumn
	if idColumn != "" {
		if _, ok := fields[idColumn]; !ok {
			return 0, fmt.Errorf("%s: no column %q (prompts.id_column); the file has %s", path, idColumn, strings.Join(names, ", "))
		}
	} else {
		for _, c := range []string{"id", "prompt_id"} {
			if _, ok := fields[c]; ok && c != column {
				idColumn = c
				break
			}
		}
	}
	group := parquet.Group{column: fields[column]}
	if idColumn != "" {
		group[idColumn] = fields[idColumn]
	}
	r := parquet.NewReader(pf, parquet.NewSchema("prompts", group))
	defer r.Close()
	rows := 0
	for n := 1; limit <= 0 || rows < limit; n++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		row := map[string]any{}
		if err := r.Read(&row); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		value := row[column]
		if b, ok := value.([]byte); ok {
			value = string(b)
		}
		msgs, reason := messagesOf(column, value)
		var p Prompt
		if reason == "" {
			p, reason = finish(msgs, path, row[idColumn], src.MaxChars)
		}
		if reason != "" {
			return 0, &LineError{File: path, Line: n, Reason: reason}
		}
		add(p, n)
		rows++
	}
	return rows, nil
}
