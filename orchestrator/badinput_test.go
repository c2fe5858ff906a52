package orchestrator_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestBadPromptFilesInsertNothing runs the orchestrator on a schedule whose
// first iteration reads a good prompt file and a bad one. The run stops
// with "FILE:LINE: reason" (or the file's problem), the iteration is
// failed with that reason, and not one prompt reaches the database. A bad
// file is not mistaken for an outage: the run fails at once, no retries.
func TestBadPromptFilesInsertNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string // "" with missing: the file does not exist
		want string
	}{
		{name: "invalid JSON", body: `{"prompt": "fine"}` + "\n" + `{"prompt": "unclosed`, want: "bad.jsonl:2: invalid JSON"},
		{name: "wrong field", body: `{"prompt": "fine"}` + "\n\n" + `{"question": "what?"}`, want: `bad.jsonl:3: invalid JSON: unknown field "question"`},
		{name: "empty prompt", body: `{"prompt": ""}`, want: "bad.jsonl:1: messages[0].content is empty"},
		{name: "non-UTF-8", body: "{\"prompt\": \"na\xefve\"}", want: "bad.jsonl:1: invalid UTF-8"},
		{name: "over-long", body: `{"prompt": "` + strings.Repeat("x", 101) + `"}`, want: "bad.jsonl:1: prompt has 101 characters, over max_prompt_chars 100"},
		{name: "no prompts", body: "\n\n", want: "bad.jsonl: no prompts in file"},
		{name: "missing file", want: "bad.jsonl: no such file or directory"},
		{name: "escaped NUL", body: `{"prompt": "fine"}` + "\n" + `{"prompt": "nul\u0000escaped"}`, want: `bad.jsonl:2: messages[0].content holds a NUL character (\u0000)`},
		{name: "no newlines", want: "/dev/zero:1: line longer than 16777216 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dbURL := storetest.NewDatabase(t)
			nats := bustest.NewStream(t)
			dir := t.TempDir()
			good := filepath.Join(dir, "good.jsonl")
			require.NoError(t, os.WriteFile(good, []byte(`{"prompt": "How do tides work?"}`+"\n"+`{"prompt": "Why is the sky blue?"}`+"\n"), 0o600))
			bad := filepath.Join(dir, "bad.jsonl")
			switch tc.name {
			case "missing file":
			case "no newlines":
				bad = "/dev/zero"
			default:
				require.NoError(t, os.WriteFile(bad, []byte(tc.body), 0o600))
			}
			cfgPath := filepath.Join(dir, "selfplay.yaml")
			require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
run: bad-prompts
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", timeout: 1s, max_retries: 1}
  reward: {base_url: "http://%s", kind: classify, model: reward, timeout: 1s, max_retries: 1}
evolve: {max_prompt_chars: 100}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q, %q]}}
`, dbURL, nats.URL, nats.Stream, selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t), good, bad), 0o600))

			run := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", cfgPath)
			err := run.Wait(30 * time.Second)
			require.Error(t, err, "the run must stop:\n%s", run.Tail(20))
			require.Contains(t, run.Output(), tc.want)
			require.NotContains(t, run.Output(), "service unavailable")

			ctx := context.Background()
			pool, err := pgxpool.New(ctx, dbURL)
			require.NoError(t, err)
			defer pool.Close()
			var prompts, pool0 int
			var stage, reason string
			require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM prompts), (SELECT count(*) FROM iteration_prompts),
				stage, coalesce(error, '') FROM iterations WHERE name = 'iter0'`).Scan(&prompts, &pool0, &stage, &reason))
			require.Zero(t, prompts, "nothing inserted, not even the good file's prompts")
			require.Zero(t, pool0)
			require.Equal(t, "failed", stage)
			require.Contains(t, reason, tc.want)
		})
	}
}
