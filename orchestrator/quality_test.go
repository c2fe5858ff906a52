package orchestrator

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

const (
	gsm    = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
	german = "Die Straße nach München ist im Winter oft gesperrt, weil der Schnee dort sehr hoch liegt und räumt."
	fridge = "Explain how a refrigerator keeps food cold, what the compressor and the refrigerant do, " +
		"why the back of the fridge feels warm, and how much electricity a typical kitchen fridge uses in a year at home."
)

type qualityRun struct {
	pool   *pgxpool.Pool
	o      *Orchestrator
	run    store.Run
	states []*iterationState
}

// jsonl writes prompts as {"prompt": …} lines.
func jsonl(t *testing.T, dir, name string, texts ...string) string {
	t.Helper()
	var b strings.Builder
	for _, text := range texts {
		line, err := json.Marshal(map[string]string{"prompt": text})
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
	}
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	return path
}

// newQualityRun stores a run of two iterations reading these files, with
// the benchmark's n-gram set built, as Run does before the first stage.
func newQualityRun(t *testing.T, pool *pgxpool.Pool, name string, loaded string, bench []string, files ...[]string) *qualityRun {
	t.Helper()
	ctx := context.Background()
	cfg := config.Defaults()
	cfg.Run = name
	cfg.Dedup.Loaded = loaded
	cfg.Decontaminate.Files = bench
	for i, f := range files {
		it := config.Iteration{Name: []string{"iter0", "iter1"}[i], PolicyModel: "m", Prompts: config.Prompts{Files: f},
			Generation: cfg.Generation, Scoring: cfg.Scoring, Selection: cfg.Selection, Evolve: cfg.Evolve,
			Dedup: cfg.Dedup, Decontaminate: cfg.Decontaminate}
		cfg.Iterations = append(cfg.Iterations, it)
	}
	run, err := store.EnsureRun(ctx, pool, name, []byte(`{}`))
	require.NoError(t, err)
	var specs []store.IterationSpec
	for i, it := range cfg.Iterations {
		settings, err := json.Marshal(it.Settings())
		require.NoError(t, err)
		specs = append(specs, store.IterationSpec{Ordinal: i, Name: it.Name, PolicyModel: "m", Config: settings})
	}
	its, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	require.NoError(t, err)
	o := &Orchestrator{cfg: &cfg, pool: pool, log: slog.New(slog.DiscardHandler)}
	require.NoError(t, o.buildBenchmark(ctx))
	q := &qualityRun{pool: pool, o: o, run: run}
	for i := range its {
		st := &iterationState{o: o, run: run, it: its[i], cfg: cfg.Iterations[i]}
		if i+1 < len(its) {
			st.next = &cfg.Iterations[i+1]
		}
		q.states = append(q.states, st)
	}
	return q
}

// flagRow is a prompt_flags row as the tests compare it.
type flagRow struct {
	Reason, Text string
	Dropped      bool
	Matched      string
	Estimated    float64
	Exact        float64
	Benchmark    string
	Stored       bool
}

func (q *qualityRun) flags(t *testing.T, iteration int) []flagRow {
	t.Helper()
	rows, err := q.pool.Query(context.Background(), `
		SELECT reason, prompt_text, dropped, coalesce(matched_text, ''), coalesce(estimated_jaccard, -1), coalesce(exact_jaccard, -1),
		       coalesce(benchmark_file || ':' || benchmark_row, ''), prompt_id IS NOT NULL
		FROM prompt_flag_details WHERE run = $1 AND iteration_ordinal = $2 ORDER BY reason, prompt_text`, q.run.Name, iteration)
	require.NoError(t, err)
	var out []flagRow
	for rows.Next() {
		var f flagRow
		require.NoError(t, rows.Scan(&f.Reason, &f.Text, &f.Dropped, &f.Matched, &f.Estimated, &f.Exact, &f.Benchmark, &f.Stored))
		out = append(out, f)
	}
	require.NoError(t, rows.Err())
	return out
}

func (q *qualityRun) pool_(t *testing.T, iteration int) []string {
	t.Helper()
	ps, err := store.PoolPrompts(context.Background(), q.pool, q.states[iteration].it.ID)
	require.NoError(t, err)
	var out []string
	for _, p := range ps {
		out = append(out, prompt.Text(p.Messages))
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// TestLoadScreensPromptFiles: of a prompt file, a prompt holding a
// benchmark prompt inside a longer text and one holding a benchmark prompt
// in other letter case, width and punctuation are dropped with the
// benchmark's file:row; a prompt identical to another but for white space
// and case is reported (kept) as its near-duplicate with Jaccard 1. Loading
// again, and loading the same schedule as a second run of the same
// database, store no second flag or signature and flag the same prompts;
// dedup.loaded: drop leaves the near-duplicate out.
func TestLoadScreensPromptFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	dir := t.TempDir()
	bench := jsonl(t, dir, "bench.jsonl", "What is 2 + 2?", gsm, german)
	whitespace := strings.ToUpper(strings.ReplaceAll(fridge, " ", "  \n "))
	file := jsonl(t, dir, "prompts.jsonl",
		"Before you answer, read this. "+gsm+" Now: how many clips did she sell in April and May altogether?",
		"DIE STRASSE NACH ＭＵＮＣＨＥＮ — nein: MÜNCHEN! — IST IM WINTER OFT GESPERRT, WEIL DER SCHNEE DORT SEHR HOCH LIEGT",
		fridge,
		"How do I cook rice?",
		whitespace,
		"What is 2 + 2? Answer in words.", // the benchmark's row 1 has 5 words, fewer than 13: no n-gram
	)

	want := []flagRow{
		{Reason: "contaminated", Text: "Before you answer, read this. " + gsm + " Now: how many clips did she sell in April and May altogether?",
			Dropped: true, Estimated: -1, Exact: -1, Benchmark: bench + ":2"},
		{Reason: "contaminated", Text: "DIE STRASSE NACH ＭＵＮＣＨＥＮ — nein: MÜNCHEN! — IST IM WINTER OFT GESPERRT, WEIL DER SCHNEE DORT SEHR HOCH LIEGT",
			Dropped: true, Estimated: -1, Exact: -1, Benchmark: bench + ":3"},
		{Reason: "near_duplicate", Text: whitespace, Matched: fridge, Estimated: 1, Exact: 1, Stored: true},
	}
	a := newQualityRun(t, pool, "a", config.DedupReport, []string{bench}, []string{file})
	require.Equal(t, 3, a.o.bench.Prompts)
	require.Equal(t, 1, a.o.bench.Short)
	require.NoError(t, a.states[0].load(ctx))
	require.Equal(t, want, a.flags(t, 0))
	require.ElementsMatch(t, []string{fridge, "How do I cook rice?", whitespace, "What is 2 + 2? Answer in words."}, a.pool_(t, 0))
	sigs := count(t, pool, `SELECT count(*) FROM prompt_signatures`)
	require.Equal(t, 4, sigs)
	require.Equal(t, 4*20, count(t, pool, `SELECT count(*) FROM prompt_bands WHERE run_id = $1`, a.run.ID))

	// The queries of docs/data-quality.md find them.
	docs, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "docs", "data-quality.md"))
	require.NoError(t, err)
	blocks := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(docs), -1)
	require.Len(t, blocks, 1)
	queries := strings.Split(strings.TrimSpace(blocks[0][1]), ";\n")
	require.Len(t, queries, 3)
	for i, want := range []int{2, 1, 2} { // groups: contaminated of prompts.jsonl (2), near_duplicate (1)
		rows, err := pool.Query(ctx, strings.ReplaceAll(queries[i], "'demo'", "'a'"))
		require.NoError(t, err, queries[i])
		n := 0
		for rows.Next() {
			n++
		}
		require.NoError(t, rows.Err())
		require.Equal(t, want, n, queries[i])
	}

	// So does the README's: one row per reason here (the contaminated
	// prompts dropped, the near-duplicate kept and reported).
	readme, err := os.ReadFile(filepath.Join(selfplaytest.Root(), "README.md"))
	require.NoError(t, err)
	blocks = regexp.MustCompile("(?s)```sql data-quality\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.Len(t, blocks, 1)
	var got []string
	rows, err := pool.Query(ctx, strings.ReplaceAll(blocks[0][1], "'demo'", "'a'"))
	require.NoError(t, err)
	for rows.Next() {
		var it, reason string
		var dropped bool
		var n int
		require.NoError(t, rows.Scan(&it, &reason, &dropped, &n))
		got = append(got, fmt.Sprintf("%s %s %v %d", it, reason, dropped, n))
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"iter0 contaminated true 2", "iter0 near_duplicate false 1"}, got)

	// The load stage again (an orchestrator restarted in it): nothing new.
	require.NoError(t, a.states[0].load(ctx))
	require.Equal(t, want, a.flags(t, 0))
	require.Equal(t, 3, count(t, pool, `SELECT count(*) FROM prompt_flags`))
	require.Equal(t, sigs, count(t, pool, `SELECT count(*) FROM prompt_signatures`))
	require.Len(t, a.pool_(t, 0), 4)

	// The same schedule as a second run of the database: the same flags,
	// its own bands, no second signature.
	b := newQualityRun(t, pool, "b", config.DedupReport, []string{bench}, []string{file})
	require.NoError(t, b.states[0].load(ctx))
	require.Equal(t, want, b.flags(t, 0))
	require.Equal(t, sigs, count(t, pool, `SELECT count(*) FROM prompt_signatures`))
	require.Equal(t, 4*20, count(t, pool, `SELECT count(*) FROM prompt_bands WHERE run_id = $1`, b.run.ID))

	// dedup.loaded: drop.
	c := newQualityRun(t, pool, "c", config.DedupDrop, []string{bench}, []string{file})
	require.NoError(t, c.states[0].load(ctx))
	wantDrop := append([]flagRow(nil), want...)
	wantDrop[2].Dropped, wantDrop[2].Stored = true, false
	require.Equal(t, wantDrop, c.flags(t, 0))
	require.ElementsMatch(t, []string{fridge, "How do I cook rice?", "What is 2 + 2? Answer in words."}, c.pool_(t, 0))
	require.Equal(t, 3*20, count(t, pool, `SELECT count(*) FROM prompt_bands WHERE run_id = $1`, c.run.ID))
}

// TestLoadComparesWithEarlierIterations: a prompt file of the second
// iteration is compared with the prompts the first brought in; the same
// prompt loaded again is no near-duplicate of itself.
func TestLoadComparesWithEarlierIterations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	dir := t.TempDir()
	first := jsonl(t, dir, "first.jsonl", fridge)
	second := jsonl(t, dir, "second.jsonl", fridge, strings.ReplaceAll(fridge, ",", " ,"))
	q := newQualityRun(t, pool, "a", config.DedupDrop, nil, []string{first}, []string{second})
	require.NoError(t, q.states[0].load(ctx))
	require.NoError(t, q.states[1].load(ctx))
	require.Equal(t, []flagRow{{Reason: "near_duplicate", Text: strings.ReplaceAll(fridge, ",", " ,"), Dropped: true,
		Matched: fridge, Estimated: 1, Exact: 1}}, q.flags(t, 1))
	require.Equal(t, []string{fridge}, q.pool_(t, 1))
	require.Empty(t, q.flags(t, 0))
}

// TestScreenEvolvedDropsContaminatedRewrites: once the evolve tasks are
// done, a rewrite in the next pool that holds a benchmark prompt leaves the
// pool and the run's LSH index, flagged with its strategy; a second screen
// adds nothing.
func TestScreenEvolvedDropsContaminatedRewrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	dir := t.TempDir()
	bench := jsonl(t, dir, "bench.jsonl", gsm)
	q := newQualityRun(t, pool, "a", config.DedupReport, []string{bench}, []string{jsonl(t, dir, "p.jsonl", "How do I cook rice?")}, nil)
	require.NoError(t, q.states[0].load(ctx))
	parent := q.pool_(t, 0)
	require.Len(t, parent, 1)
	parentMsgs := []prompt.Message{{Role: "user", Content: parent[0]}}
	parentID, err := store.InsertPrompts(ctx, pool, []prompt.Prompt{prompt.New(parentMsgs, "p.jsonl", "")})
	require.NoError(t, err)
	rewrites := []prompt.Prompt{
		prompt.Evolved(parentMsgs, "Cook rice for a party of ten: "+strings.ToLower(gsm), parentID[0], "concretize"),
		prompt.Evolved(parentMsgs, "How do I cook brown rice in a pressure cooker?", parentID[0], "deepen"),
	}
	ids, err := store.InsertPrompts(ctx, pool, rewrites)
	require.NoError(t, err)
	require.NoError(t, store.AddToPool(ctx, pool, q.states[1].it.ID, ids))
	params := dedupParams(q.states[0].cfg.Dedup)
	items := []store.NearItem{
		store.NewNearItem(params, rewrites[0].Hash, rewrites[0].Messages),
		store.NewNearItem(params, rewrites[1].Hash, rewrites[1].Messages),
	}
	require.NoError(t, store.StoreSignatures(ctx, pool, q.run.ID, 0, params, ids, items))

	for range 2 {
		require.NoError(t, q.states[0].screenEvolved(ctx))
		require.Equal(t, []string{"How do I cook brown rice in a pressure cooker?"}, q.pool_(t, 1))
		require.Equal(t, []flagRow{{Reason: "contaminated", Text: "Cook rice for a party of ten: " + strings.ToLower(gsm),
			Dropped: true, Estimated: -1, Exact: -1, Benchmark: bench + ":1", Stored: true}}, q.flags(t, 0))
		require.Equal(t, 0, count(t, pool, `SELECT count(*) FROM prompt_bands WHERE prompt_id = $1`, ids[0]))
		require.Equal(t, 20, count(t, pool, `SELECT count(*) FROM prompt_bands WHERE prompt_id = $1`, ids[1]))
		counts, err := store.FlagCounts(ctx, pool, q.states[0].it.ID)
		require.NoError(t, err)
		require.Equal(t, []store.FlagCount{{Reason: "contaminated", Dropped: true, Origin: "evolved", Source: "concretize", Count: 1}}, counts)
	}
}

// TestBadBenchmarkRefusesTheRun: a bad row of a benchmark file stops the
// run before anything is stored, naming the file and line.
func TestBadBenchmarkRefusesTheRun(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bench.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"prompt": "`+gsm+`"}`+"\n"+`{"prompt": ""}`+"\n"), 0o600))
	cfg := config.Defaults()
	cfg.Run = "refused"
	cfg.Decontaminate.Files = []string{bad}
	cfg.Iterations = []config.Iteration{{Name: "iter0", PolicyModel: "m", Prompts: config.Prompts{Files: []string{jsonl(t, dir, "p.jsonl", "hello")}},
		Dedup: cfg.Dedup, Decontaminate: cfg.Decontaminate}}
	err := New(&cfg, pool, nil, Options{}, slog.New(slog.DiscardHandler)).Run(ctx)
	require.ErrorContains(t, err, "decontaminate.files: "+bad+":2: messages[0].content is empty")
	for _, table := range []string{"runs", "iterations", "prompts", "prompt_flags", "prompt_signatures", "prompt_bands"} {
		require.Equal(t, 0, count(t, pool, `SELECT count(*) FROM `+table), table)
	}
}
