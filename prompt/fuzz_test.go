package prompt_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/prompt"
)

// FuzzRead feeds arbitrary bytes to the prompt-file reader. It never
// panics; it either fails with an error naming the file (and, for a bad
// line, a line number within the input) and no prompts, or returns distinct
// prompts that each pass Validate and carry their own hash. Run it with
//
//	go test ./prompt -run '^$' -fuzz '^FuzzRead$' -fuzztime 30s
func FuzzRead(f *testing.F) {
	for _, s := range []string{
		`{"prompt": "How do tides work?"}` + "\n" + `{"id": 2, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]}`,
		`{"prompt": "a"} {"prompt": "b"}`,
		`{"promt": "typo"}`,
		"{\"prompt\": \"caf\xe9\"}",
		`{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}`,
		"\r\n\n{\"prompt\": \"a\"}\r\n{\"prompt\": \"a\"}",
		`{"prompt": "` + strings.Repeat("é", 12) + `"}`,
		"",
	} {
		f.Add([]byte(s), uint16(10))
	}
	f.Fuzz(func(t *testing.T, data []byte, maxChars uint16) {
		ps, err := prompt.Read(bytes.NewReader(data), "fuzz.jsonl", int(maxChars))
		if err != nil {
			require.Nil(t, ps)
			require.True(t, strings.HasPrefix(err.Error(), "fuzz.jsonl:"), err.Error())
			var le *prompt.LineError
			if errors.As(err, &le) {
				require.GreaterOrEqual(t, le.Line, 1)
				require.LessOrEqual(t, le.Line, bytes.Count(data, []byte("\n"))+1)
				require.NotEmpty(t, le.Reason)
			}
			return
		}
		require.NotEmpty(t, ps)
		seen := map[string]bool{}
		for _, p := range ps {
			require.Empty(t, prompt.Validate(p.Messages, int(maxChars)))
			require.Equal(t, prompt.Hash(p.Messages), p.Hash)
			require.False(t, seen[p.Hash], "duplicate prompt returned")
			seen[p.Hash] = true
		}
	})
}
