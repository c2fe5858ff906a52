package orchestrator_test

import (
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/bus/bustest"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store/storetest"
)

// ufRow is a row of a Hugging Face preference dataset (ultrafeedback-
// binarized's layout, fewer columns): the prompt text, its id, and columns
// the loader must leave alone.
type ufRow struct {
	Prompt   *string `parquet:"prompt,optional"`
	PromptID string  `parquet:"prompt_id"`
	Chosen   []struct {
		Role    string `parquet:"role"`
		Content string `parquet:"content"`
	} `parquet:"chosen,list"`
	Score float64 `parquet:"score_chosen"`
}

func writeUF(t *testing.T, path string, prompts []string) {
	t.Helper()
	rows := make([]ufRow, len(prompts))
	for i, p := range prompts {
		if p != "<null>" {
			rows[i].Prompt = &prompts[i]
		}
		rows[i].PromptID = fmt.Sprintf("uf-%d", i+1)
		rows[i].Score = 7.5
	}
	f, err := os.Create(path)
	require.NoError(t, err)
	w := parquet.NewGenericWriter[ufRow](f)
	_, err = w.Write(rows)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.NoError(t, f.Close())
}

// TestPromptsFromParquetAndGzip: an iteration takes a seeded sample of a
// Parquet file and a gzip JSON Lines file into its pool, with the dataset's
// ids; a bad Parquet row fails the iteration with FILE:ROW and inserts
// nothing.
func TestPromptsFromParquetAndGzip(t *testing.T) {
	t.Parallel()
	run := func(t *testing.T, prompts string) (*selfplaytest.Proc, *pgxpool.Pool) {
		dbURL := storetest.NewDatabase(t)
		nats := bustest.NewStream(t)
		cfgPath := filepath.Join(t.TempDir(), "selfplay.yaml")
		require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
run: sources
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1", timeout: 1s, max_retries: 1}
  reward: {base_url: "http://%s", kind: classify, model: reward, timeout: 1s, max_retries: 1}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: %s}
`, dbURL, nats.URL, nats.Stream, selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t), prompts), 0o600))
		pool, err := pgxpool.New(context.Background(), dbURL)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		return selfplaytest.Start(t, "orchestrator", nil, "run", "-c", cfgPath), pool
	}

	t.Run("sample", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		pq := filepath.Join(dir, "train_prefs.parquet")
		var qs []string
		for i := range 8 {
			qs = append(qs, fmt.Sprintf("Parquet question %d?", i+1))
		}
		writeUF(t, pq, qs)
		gz := filepath.Join(dir, "more.jsonl.gz")
		f, err := os.Create(gz)
		require.NoError(t, err)
		zw := gzip.NewWriter(f)
		fmt.Fprintf(zw, "{\"id\": \"g1\", \"prompt\": \"Gzip question 1?\"}\n{\"id\": \"g2\", \"prompt\": \"Gzip question 2?\"}\n{\"prompt\": \"\"}\n")
		require.NoError(t, zw.Close())
		require.NoError(t, f.Close())

		// limit 10 stops before the gzip file's bad third row; sample
		// keeps 6 of the 10.
		proc, pool := run(t, fmt.Sprintf("{files: [%q, %q], limit: 10, sample: 6, seed: 3}", pq, gz))
		ctx := context.Background()
		require.Eventually(t, func() bool {
			var n int
			_ = pool.QueryRow(ctx, `SELECT count(*) FROM iteration_prompts`).Scan(&n)
			return n > 0 || proc.Exited()
		}, time.Minute, 100*time.Millisecond, proc.Tail(20))
		require.NoError(t, proc.Signal(syscall.SIGINT))
		_ = proc.Wait(30 * time.Second)

		rows, err := pool.Query(ctx, `SELECT p.source, p.source_id, p.messages->0->>'content' FROM prompts p
			JOIN iteration_prompts ip ON ip.prompt_id = p.id ORDER BY p.id`)
		require.NoError(t, err)
		var got []string
		for rows.Next() {
			var source, id, text string
			require.NoError(t, rows.Scan(&source, &id, &text))
			got = append(got, filepath.Base(source)+" "+id+" "+text)
		}
		require.NoError(t, rows.Err())
		require.Len(t, got, 6, "%v\n%s", got, proc.Tail(20))
		for _, g := range got {
			parquetRow := strings.HasPrefix(g, "train_prefs.parquet uf-") && strings.Contains(g, "Parquet question")
			gzipRow := strings.HasPrefix(g, "more.jsonl.gz g") && strings.Contains(g, "Gzip question")
			require.True(t, parquetRow || gzipRow, g)
		}
	})

	t.Run("bad row", func(t *testing.T) {
		t.Parallel()
		pq := filepath.Join(t.TempDir(), "bad.parquet")
		writeUF(t, pq, []string{"Fine?", "Also fine?", "Still fine?", "<null>", "Fine again?"})
		proc, pool := run(t, fmt.Sprintf("{files: [%q]}", pq))
		require.Error(t, proc.Wait(30*time.Second))
		require.Contains(t, proc.Output(), `bad.parquet:4: \"prompt\" is null`)
		var prompts int
		var reason string
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM prompts), coalesce(error, '') FROM iterations`).Scan(&prompts, &reason))
		require.Zero(t, prompts)
		require.Contains(t, reason, `bad.parquet:4: "prompt" is null`)
	})
}

// TestSIGINTWhileLoadingPrompts: the prompts "file" is a pipe that never
// ends. SIGINT stops the orchestrator while it reads, and nothing is
// inserted.
func TestSIGINTWhileLoadingPrompts(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "endless.jsonl")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	written := make(chan int, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		for i := 1; ; i++ {
			if _, err := fmt.Fprintf(f, "{\"prompt\": \"endless question %d?\"}\n", i); err != nil {
				return // the reader is gone
			}
			if i == 20000 {
				written <- i
			}
		}
	}()
	dbURL := storetest.NewDatabase(t)
	nats := bustest.NewStream(t)
	cfgPath := filepath.Join(dir, "selfplay.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, `
run: endless
database: {url: %q}
nats: {url: %q, stream: %s}
endpoints:
  policy: {base_url: "http://%s/v1"}
  reward: {base_url: "http://%s", kind: classify, model: reward}
iterations:
  - {name: iter0, policy_model: tiny-0, prompts: {files: [%q]}}
`, dbURL, nats.URL, nats.Stream, selfplaytest.FreeAddr(t), selfplaytest.FreeAddr(t), fifo), 0o600))
	proc := selfplaytest.Start(t, "orchestrator", nil, "run", "-c", cfgPath)
	select {
	case <-written:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the orchestrator did not read the pipe:\n%s", proc.Tail(20))
	}
	require.NoError(t, proc.Signal(syscall.SIGINT))
	require.Error(t, proc.Wait(30*time.Second), "interrupted:\n%s", proc.Tail(20))
	require.True(t, proc.Exited(), "SIGINT stops the read")

	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(t, err)
	defer pool.Close()
	var prompts int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM prompts`).Scan(&prompts))
	require.Zero(t, prompts)
}
