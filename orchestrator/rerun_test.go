package orchestrator_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// exampleSchedule is examples/selfplay.yaml pointed at the test's database,
// stream and tinylm, shrunk as the other end-to-end tests are: 24 prompts
// of the example file, short responses, and every iteration on the
// embedded model with no train hook (with no hook and the same model next,
// an iteration goes straight on). Everything else — three iterations,
// evolution, seeds, metric — is the example's.
func exampleSchedule(t *testing.T, run, dbURL string, nats config.NATS, lmAddr, dir string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "examples", "selfplay.yaml"))
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &cfg))

	promptsPath := filepath.Join(dir, "prompts.jsonl")
	if _, err := os.Stat(promptsPath); err != nil {
		src, err := os.Open(filepath.Join(selfplaytest.Root(), "examples", "prompts.jsonl"))
		require.NoError(t, err)
		defer src.Close()
		var lines []string
		sc := bufio.NewScanner(src)
		for sc.Scan() && len(lines) < 24 {
			lines = append(lines, sc.Text())
		}
		require.NoError(t, os.WriteFile(promptsPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	}

	cfg["run"] = run
	cfg["database"] = map[string]any{"url": dbURL}
	cfg["nats"] = map[string]any{"url": nats.URL, "stream": nats.Stream}
	eps := cfg["endpoints"].(map[string]any)
	eps["policy"].(map[string]any)["base_url"] = "http://" + lmAddr + "/v1"
	eps["policy"].(map[string]any)["timeout"] = "10s"
	eps["reward"].(map[string]any)["base_url"] = "http://" + lmAddr
	cfg["generation"].(map[string]any)["max_tokens"] = 48
	cfg["export"].(map[string]any)["dir"] = filepath.Join(dir, "exports")
	cfg["hooks"] = map[string]any{"wait_for_model": "30s"}
	cfg["worker"] = map[string]any{"concurrency": 8, "ack_wait": "30s", "max_deliver": 5}
	cfg["orchestrator"] = map[string]any{"poll_interval": "100ms", "progress_interval": "1s"}
	its := cfg["iterations"].([]any)
	require.Len(t, its, 3, "the example has three iterations")
	for _, it := range its {
		m := it.(map[string]any)
		m["policy_model"] = "tiny-0"
		if p := m["prompts"].(map[string]any); p["files"] != nil {
			p["files"] = []any{promptsPath}
		}
	}
	out, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(dir, run+".yaml")
	require.NoError(t, os.WriteFile(path, out, 0o600))
	return path
}

// TestExampleScheduleTwiceInOneDatabase runs the example schedule under
// run demo and then, same prompts and seeds, under demo2 in the same
// database: demo2's rewrites are the same texts as demo's, and must still
// fill demo2's own pools (they were dropped as "duplicate of a known
// prompt", and demo2 stopped at iteration 1 with an empty pool).
func TestExampleScheduleTwiceInOneDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := storetest.NewDatabase(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	nats := bustest.NewStream(t)
	dir := t.TempDir()
	lmAddr := selfplaytest.FreeAddr(t)
	l := &loop{lmAddr: lmAddr}
	l.startLM(t)

	first := exampleSchedule(t, "demo", dbURL, nats, lmAddr, dir)
	second := exampleSchedule(t, "demo2", dbURL, nats, lmAddr, dir)
	env := []string{"SELFPLAY_POLICY_API_KEY=unused"} // the example names the variable
	selfplaytest.Start(t, "worker-1", env, "worker", "-c", first, "--log-level", "warn", "--metrics-addr", selfplaytest.FreeAddr(t))
	selfplaytest.Start(t, "worker-2", env, "worker", "-c", first, "--log-level", "warn", "--metrics-addr", selfplaytest.FreeAddr(t))

	for _, path := range []string{first, second} {
		run := selfplaytest.Start(t, "orchestrator-"+filepath.Base(path), env, "run", "-c", path)
		require.NoError(t, run.Wait(3*time.Minute), run.Tail(30))
	}

	count := func(sql string, args ...any) int64 {
		t.Helper()
		var n int64
		require.NoError(t, pool.QueryRow(ctx, sql, args...).Scan(&n), sql)
		return n
	}
	for _, run := range []string{"demo", "demo2"} {
		require.EqualValues(t, 3, count(`SELECT count(*) FROM iterations i JOIN runs r ON r.id = i.run_id
			WHERE r.name = $1 AND i.stage = 'done'`, run), run)
		for ordinal := 1; ordinal <= 2; ordinal++ {
			require.Positive(t, count(`SELECT count(*) FROM iteration_prompts ip JOIN iterations i ON i.id = ip.iteration_id
				JOIN runs r ON r.id = i.run_id WHERE r.name = $1 AND i.ordinal = $2`, run, ordinal), "%s iteration %d's pool", run, ordinal)
		}
		// Every evolved prompt of a run's pool has its parent in the run's
		// previous pool, selected for evolution there.
		require.Zero(t, count(`SELECT count(*) FROM iteration_prompts ip JOIN iterations i ON i.id = ip.iteration_id
			JOIN runs r ON r.id = i.run_id JOIN prompts p ON p.id = ip.prompt_id
			WHERE r.name = $1 AND i.ordinal > 0 AND NOT EXISTS (
			    SELECT 1 FROM pairs x JOIN iterations j ON j.id = x.iteration_id
			    WHERE j.run_id = r.id AND j.ordinal = i.ordinal - 1 AND x.prompt_id = p.parent_prompt_id AND x.evolve_selected)`, run), run)
		// Within a run, a prompt is in at most one iteration's pool.
		require.Zero(t, count(`SELECT count(*) FROM (SELECT ip.prompt_id FROM iteration_prompts ip
			JOIN iterations i ON i.id = ip.iteration_id JOIN runs r ON r.id = i.run_id
			WHERE r.name = $1 GROUP BY 1 HAVING count(*) > 1) d`, run), run)
		require.EqualValues(t, 3, count(`SELECT count(*) FROM exports e JOIN iterations i ON i.id = e.iteration_id
			JOIN runs r ON r.id = i.run_id WHERE r.name = $1 AND e.kind = 'jsonl'`, run), run)
	}
	// The runs share prompt rows: demo2's first pool is demo's, and its
	// rewrites are (some of) demo's rewrites, stored once.
	require.Positive(t, count(`SELECT count(*) FROM iteration_prompts a JOIN iteration_prompts b USING (prompt_id)
		JOIN iterations ia ON ia.id = a.iteration_id JOIN iterations ib ON ib.id = b.iteration_id
		WHERE ia.run_id <> ib.run_id AND ia.ordinal = 1 AND ib.ordinal = 1`))
}
