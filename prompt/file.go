package prompt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/selfplay/selfplay/internal/jsonl"
)

// LineError locates a bad line of a prompts file.
type LineError struct {
	File   string
	Line   int
	Reason string
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// line is one JSONL record: either "prompt" or "messages", optional "id".
type line struct {
	Prompt   *string          `json:"prompt"`
	Messages *[]Message       `json:"messages"`
	ID       *json.RawMessage `json:"id"`
}

// ReadFile parses a prompts file: JSON Lines (or .jsonl.gz, or Parquet;
// see Source). Each non-blank line is {"prompt": "text"} or {"messages":
// [{"role", "content"}, ...]}, with an optional "id" kept as the source id.
// Any bad line fails the whole file with a *LineError ("FILE:LINE:
// reason"); maxChars > 0 caps a prompt's length in characters. Duplicates
// within the file are kept once.
func ReadFile(path string, maxChars int) ([]Prompt, error) {
	return ReadFiles([]string{path}, maxChars)
}

// Read parses JSONL prompts from r; name is used in errors and as Source.
func Read(r io.Reader, name string, maxChars int) ([]Prompt, error) {
	return ReadContext(context.Background(), r, name, maxChars)
}

// ReadContext is Read that stops with ctx.Err() when ctx ends. A line
// longer than jsonl.MaxLineBytes fails the file like any bad line.
func ReadContext(ctx context.Context, r io.Reader, name string, maxChars int) ([]Prompt, error) {
	var out []Prompt
	seen := map[string]bool{}
	err := jsonl.EachContext(ctx, r, name, 0, func(n int, raw []byte) error {
		p, perr := parseLine(raw, name, maxChars)
		if perr != "" {
			return &LineError{File: name, Line: n, Reason: perr}
		}
		if !seen[p.Hash] {
			seen[p.Hash] = true
			out = append(out, p)
		}
		return nil
	})
	if tl := (*jsonl.LineTooLongError)(nil); errors.As(err, &tl) {
		return nil, &LineError{File: name, Line: tl.Line, Reason: tl.Reason()}
	}
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no prompts in file", name)
	}
	return out, nil
}

// parseLine reads one non-blank line; the reason is empty when it is a
// good prompt.
func parseLine(raw []byte, name string, maxChars int) (Prompt, string) {
	if !utf8.Valid(raw) {
		return Prompt{}, "invalid UTF-8"
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var l line
	if err := dec.Decode(&l); err != nil {
		return Prompt{}, "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	if dec.More() {
		return Prompt{}, "invalid JSON: more than one value on the line"
	}
	var msgs []Message
	switch {
	case l.Prompt != nil && l.Messages != nil:
		return Prompt{}, `has both "prompt" and "messages"; expected one`
	case l.Prompt != nil:
		msgs = []Message{{Role: "user", Content: *l.Prompt}}
	case l.Messages != nil:
		msgs = *l.Messages
	default:
		return Prompt{}, `missing field: expected "prompt" or "messages"`
	}
	if reason := Validate(msgs, maxChars); reason != "" {
		return Prompt{}, reason
	}
	id := ""
	if l.ID != nil {
		var s string
		if json.Unmarshal(*l.ID, &s) == nil {
			id = s
		} else {
			id = string(*l.ID)
		}
	}
	if strings.ContainsRune(id, 0) {
		return Prompt{}, `"id" holds a NUL character (\u0000), which PostgreSQL text cannot store`
	}
	return New(msgs, name, id), ""
}

// Validate returns why msgs is not a usable prompt, or "" when it is: at
// least one message, known roles, no empty content, the last message from
// the user, and at most maxChars characters in all (when maxChars > 0).
func Validate(msgs []Message, maxChars int) string {
	if len(msgs) == 0 {
		return "empty messages list"
	}
	for i, m := range msgs {
		if !slices.Contains(Roles, m.Role) {
			return fmt.Sprintf("messages[%d].role %q: expected system, user or assistant", i, m.Role)
		}
		if strings.TrimSpace(m.Content) == "" {
			return fmt.Sprintf("messages[%d].content is empty", i)
		}
		if strings.ContainsRune(m.Content, 0) {
			return fmt.Sprintf(`messages[%d].content holds a NUL character (\u0000), which PostgreSQL text cannot store`, i)
		}
	}
	if msgs[len(msgs)-1].Role != "user" {
		return "the last message must be from the user"
	}
	if maxChars > 0 {
		if n := Chars(msgs); n > maxChars {
			return fmt.Sprintf("prompt has %d characters, over max_prompt_chars %d", n, maxChars)
		}
	}
	return ""
}

// ReadFiles reads several prompt files (JSON Lines, gzip-compressed JSON
// Lines or Parquet, see Source); the first bad line of any file fails the
// whole read, so a caller inserts all of them or nothing. Prompts
// repeated across files are kept once.
func ReadFiles(paths []string, maxChars int) ([]Prompt, error) {
	return ReadSource(context.Background(), Source{Files: paths, MaxChars: maxChars})
}
