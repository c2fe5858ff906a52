package orchestrator

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Hook commands run with argv: each placeholder's value becomes part of
// one argument, and no shell ever reads the values, so data that looks like
// shell syntax stays data.

func TestSubstituteKeepsArgumentsWhole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		argv []string
		vars map[string]string
		want []string
	}{
		{
			name: "placeholders as whole arguments",
			argv: []string{"train.py", "--data", "{dataset}", "--out", "{next_model}"},
			vars: map[string]string{"{dataset}": "/exports/r/i/train.jsonl", "{next_model}": "tiny-1"},
			want: []string{"train.py", "--data", "/exports/r/i/train.jsonl", "--out", "tiny-1"},
		},
		{
			name: "placeholder inside an argument",
			argv: []string{"--data={dataset}", "{run}/{iteration}"},
			vars: map[string]string{"{dataset}": "/x/train.jsonl", "{run}": "r", "{iteration}": "i"},
			want: []string{"--data=/x/train.jsonl", "r/i"},
		},
		{
			name: "shell syntax in a value stays one argument",
			argv: []string{"echo", "{policy_model}", "{iteration}"},
			vars: map[string]string{"{policy_model}": "m; rm -rf / #", "{iteration}": "$(reboot) `halt` | tee x && y\nz"},
			want: []string{"echo", "m; rm -rf / #", "$(reboot) `halt` | tee x && y\nz"},
		},
		{
			name: "a value holding a placeholder stays literal",
			argv: []string{"{dataset}", "{run}"},
			vars: map[string]string{"{dataset}": "/data/{run}/train.jsonl", "{run}": "demo"},
			want: []string{"/data/{run}/train.jsonl", "demo"},
		},
		{
			name: "spaces, quotes and globs are not split or expanded",
			argv: []string{"{dataset}"},
			vars: map[string]string{"{dataset}": `/my exports/"quoted" 'too' *.jsonl`},
			want: []string{`/my exports/"quoted" 'too' *.jsonl`},
		},
		{
			name: "empty value gives an empty argument, not a missing one",
			argv: []string{"a", "{next_model}", "b"},
			vars: map[string]string{"{next_model}": ""},
			want: []string{"a", "", "b"},
		},
		{
			name: "unknown placeholders and plain braces are left alone",
			argv: []string{"{unknown}", "{", "}{run}{"},
			vars: map[string]string{"{run}": "r"},
			want: []string{"{unknown}", "{", "}r{"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			argv := append([]string(nil), tc.argv...)
			got := Substitute(argv, tc.vars)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.argv, argv, "the configured argv is not modified")
		})
	}
}

// lineLog records the hook's output lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Info(msg string, args ...any) {
	if msg != "hook output" {
		return
	}
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "line" {
			l.mu.Lock()
			l.lines = append(l.lines, fmt.Sprint(args[i+1]))
			l.mu.Unlock()
		}
	}
}

func TestHookDataIsNeverInterpretedByAShell(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	require.NoError(t, os.Mkdir(canary, 0o700))
	pwned := filepath.Join(dir, "pwned")
	// Values a hostile or careless schedule could put in a model name or a
	// path: each would run a command if a shell read it.
	vars := map[string]string{
		"{policy_model}": "tiny; touch " + pwned + "-semicolon",
		"{next_model}":   "$(touch " + pwned + "-subst)",
		"{iteration}":    "`touch " + pwned + "-backtick`",
		"{run}":          "r && rm -rf " + canary,
		"{dataset}":      filepath.Join(dir, "my data", "*.jsonl") + " | touch " + pwned + "-pipe",
		"{manifest}":     "line one\ntouch " + pwned + "-newline",
	}
	order := []string{"{policy_model}", "{next_model}", "{iteration}", "{run}", "{dataset}", "{manifest}"}
	tests := []struct {
		name string
		argv []string
	}{
		// printf is a program, not a shell: it prints each argument.
		{name: "argv", argv: append([]string{"printf", `%s\n`}, order...)},
		// The safe way to use a shell in a hook: the values travel as
		// positional parameters and the script quotes them.
		{name: "sh -c with positional parameters", argv: append([]string{"/bin/sh", "-c", `for a in "$@"; do printf '%s\n' "$a"; done`, "hook"}, order...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			log := &lineLog{}
			err := runHook(context.Background(), tc.argv, vars, 30*time.Second, log)
			require.NoError(t, err)
			var want []string
			for _, k := range order {
				want = append(want, splitLines(vars[k])...)
			}
			require.Equal(t, want, log.lines, "the hook received each value verbatim")
			matches, err := filepath.Glob(pwned + "*")
			require.NoError(t, err)
			require.Empty(t, matches, "no command hidden in the data ran")
			require.DirExists(t, canary)
		})
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func TestHookFailuresSayWhat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		argv    []string
		timeout time.Duration
		want    []string
	}{
		{"missing program", []string{"/nonexistent/train-{run}"}, 10 * time.Second, []string{`train hook "/nonexistent/train-r"`, "no such file or directory"}},
		{"non-zero exit with output", []string{"/bin/sh", "-c", `echo "loss exploded at step $1" >&2; exit 3`, "hook", "{run}"}, 10 * time.Second, []string{"exit status 3", "loss exploded at step r"}},
		{"timeout", []string{"sleep", "30"}, 200 * time.Millisecond, []string{"timed out after 200ms"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := runHook(context.Background(), tc.argv, map[string]string{"{run}": "r"}, tc.timeout, &lineLog{})
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}
