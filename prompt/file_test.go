package prompt_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/internal/jsonl"
	"github.com/selfplay/selfplay/prompt"
)

// Bad prompt files fail whole, with "FILE:LINE: reason", and return no
// prompts, so a caller has nothing to insert.

func TestReadRejectsBadLines(t *testing.T) {
	t.Parallel()
	good := `{"prompt": "How do tides work?"}` + "\n"
	tests := []struct {
		name   string
		body   string
		max    int
		line   int
		reason string
	}{
		{name: "invalid JSON", body: good + `{"prompt": "unclosed` + "\n", line: 2, reason: "invalid JSON"},
		{name: "two values on a line", body: `{"prompt": "a"} {"prompt": "b"}`, line: 1, reason: "more than one value"},
		{name: "misspelt field", body: good + good + `{"promt": "typo"}`, line: 3, reason: `unknown field "promt"`},
		{name: "extra field", body: `{"prompt": "a", "answer": "b"}`, line: 1, reason: `unknown field "answer"`},
		{name: "no prompt or messages", body: `{"id": "q1"}`, line: 1, reason: `missing field: expected "prompt" or "messages"`},
		{name: "both prompt and messages", body: `{"prompt": "a", "messages": [{"role": "user", "content": "b"}]}`, line: 1, reason: `has both "prompt" and "messages"`},
		{name: "prompt not a string", body: `{"prompt": 42}`, line: 1, reason: "invalid JSON"},
		{name: "messages not a list", body: `{"messages": {"role": "user"}}`, line: 1, reason: "invalid JSON"},
		{name: "message with unknown field", body: `{"messages": [{"role": "user", "text": "hi"}]}`, line: 1, reason: `unknown field "text"`},
		{name: "empty prompt", body: good + `{"prompt": "   "}`, line: 2, reason: "messages[0].content is empty"},
		{name: "empty messages list", body: `{"messages": []}`, line: 1, reason: "empty messages list"},
		{name: "unknown role", body: `{"messages": [{"role": "robot", "content": "beep"}]}`, line: 1, reason: `messages[0].role "robot"`},
		{name: "last message not from the user", body: `{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`, line: 1, reason: "last message must be from the user"},
		{name: "non-UTF-8 bytes", body: good + "{\"prompt\": \"caf\xe9\"}\n", line: 2, reason: "invalid UTF-8"},
		{name: "UTF-16 file", body: "\xff\xfe{\x00\"\x00p\x00", line: 1, reason: "invalid UTF-8"},
		{name: "over-long prompt", body: good + `{"prompt": "` + strings.Repeat("word ", 2000) + `"}`, max: 8000, line: 2, reason: "prompt has 10000 characters, over max_prompt_chars 8000"},
		{name: "over-long in characters, not bytes", body: `{"prompt": "` + strings.Repeat("é", 11) + `"}`, max: 10, line: 1, reason: "prompt has 11 characters, over max_prompt_chars 10"},
		{name: "over-long across messages", body: `{"messages": [{"role": "system", "content": "` + strings.Repeat("s", 6) + `"}, {"role": "user", "content": "` + strings.Repeat("u", 6) + `"}]}`, max: 10, line: 1, reason: "prompt has 12 characters"},
		{name: "blank lines still count", body: "\n\n" + good + "\n" + `{"prompt": ""}`, line: 5, reason: "content is empty"},
		{name: "escaped NUL in a prompt", body: good + `{"prompt": "nul\u0000escaped"}`, line: 2, reason: `messages[0].content holds a NUL character (\u0000)`},
		{name: "escaped NUL in a message", body: `{"messages": [{"role": "system", "content": "a\u0000"}, {"role": "user", "content": "b"}]}`, line: 1, reason: "messages[0].content holds a NUL"},
		{name: "escaped NUL in the id", body: good + `{"id": "q\u0000", "prompt": "fine"}`, line: 2, reason: `"id" holds a NUL`},
		{name: "raw NUL byte", body: "{\"prompt\": \"a\x00b\"}", line: 1, reason: "invalid JSON"},
		{name: "a line longer than the limit", body: good + strings.Repeat(" ", 10) + strings.Repeat("x", jsonl.MaxLineBytes+1) + "\n" + good, line: 2, reason: "line longer than 16777216 bytes"},
		{name: "a byte order mark after the first line", body: good + jsonl.BOM + good, line: 2, reason: "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps, err := prompt.Read(strings.NewReader(tc.body), "pool.jsonl", tc.max)
			require.Error(t, err)
			require.Nil(t, ps, "nothing is returned to insert")
			var le *prompt.LineError
			require.True(t, errors.As(err, &le), "%T: %v", err, err)
			require.Equal(t, "pool.jsonl", le.File)
			require.Equal(t, tc.line, le.Line)
			require.Contains(t, le.Reason, tc.reason)
			require.True(t, strings.HasPrefix(err.Error(), "pool.jsonl:"+strconv.Itoa(tc.line)+": "), err.Error())
		})
	}
}

func TestReadAcceptsEdgeCases(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		body  string
		max   int
		texts []string
	}{
		{name: "exactly max_prompt_chars", body: `{"prompt": "` + strings.Repeat("é", 10) + `"}`, max: 10, texts: []string{strings.Repeat("é", 10)}},
		{name: "no trailing newline, CRLF, blank lines", body: "\r\n{\"prompt\": \"a\"}\r\n\r\n{\"prompt\": \"b\"}", texts: []string{"a", "b"}},
		{name: "duplicates kept once", body: `{"prompt": "a"}` + "\n" + `{"messages": [{"role": "user", "content": "a"}]}`, texts: []string{"a"}},
		{name: "ids of any JSON type", body: `{"id": 7, "prompt": "a"}` + "\n" + `{"id": "q2", "prompt": "b"}`, texts: []string{"a", "b"}},
		{name: "a UTF-8 byte order mark", body: jsonl.BOM + `{"prompt": "a"}` + "\r\n" + `{"prompt": "b"}`, texts: []string{"a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps, err := prompt.Read(strings.NewReader(tc.body), "pool.jsonl", tc.max)
			require.NoError(t, err)
			var texts []string
			for _, p := range ps {
				texts = append(texts, prompt.Text(p.Messages))
				require.Equal(t, "pool.jsonl", p.Source)
				require.Equal(t, prompt.Hash(p.Messages), p.Hash)
			}
			require.Equal(t, tc.texts, texts)
		})
	}
}

func TestReadFileWithoutPrompts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		return path
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{"empty file", write("empty.jsonl", ""), "no prompts in file"},
		{"only blank lines", write("blank.jsonl", "\n  \n\t\n"), "no prompts in file"},
		{"missing file", filepath.Join(dir, "missing.jsonl"), "no such file or directory"},
		{"a directory", dir, "is a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ps, err := prompt.ReadFile(tc.path, 8000)
			require.Error(t, err)
			require.Nil(t, ps)
			require.Contains(t, err.Error(), tc.path, "the error names the file")
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestReadFilesAllOrNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.jsonl")
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(`{"prompt": "fine"}`+"\n"), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte(`{"prompt": "fine too"}`+"\n"+`{"prompt": "`+strings.Repeat("x", 30)+`"}`+"\n"), 0o600))
	ps, err := prompt.ReadFiles([]string{good, bad}, 20)
	require.Nil(t, ps, "a bad second file drops the good first one too")
	var le *prompt.LineError
	require.True(t, errors.As(err, &le))
	require.Equal(t, bad, le.File)
	require.Equal(t, 2, le.Line)

	_, err = prompt.ReadFiles([]string{good, filepath.Join(dir, "nope.jsonl")}, 20)
	require.ErrorContains(t, err, "nope.jsonl")
}

// A file with no newlines (/dev/zero) fails at the line limit instead of
// growing memory without bound; a cancelled read stops at once.
func TestReadDevZeroAndCancellation(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/dev/zero"); err == nil {
		ps, err := prompt.ReadFile("/dev/zero", 8000)
		require.Nil(t, ps)
		require.EqualError(t, err, "/dev/zero:1: line longer than 16777216 bytes (is this a JSON Lines file?)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ps, err := prompt.ReadContext(ctx, strings.NewReader(`{"prompt": "a"}`), "pool.jsonl", 0)
	require.Nil(t, ps)
	require.ErrorIs(t, err, context.Canceled)
}
