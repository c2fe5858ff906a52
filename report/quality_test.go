package report_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestDataQualitySection: the report counts an iteration's flags by
// reason, action and file or strategy, shows near-duplicates with both
// similarities and contaminated prompts with the benchmark's file:row, and
// reads "2 near_duplicate (breadth, deepen)" in an evolve outcome as two
// near_duplicate drops.
func TestDataQualitySection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	d := config.Defaults()
	var iters [][]byte
	for _, name := range []string{"iter0", "iter1"} {
		s := config.Settings{Name: name, PolicyModel: "p", Generation: d.Generation, Scoring: d.Scoring, Selection: d.Selection,
			Evolve: d.Evolve, Dedup: d.Dedup, Decontaminate: config.Decontaminate{Files: []string{"gsm8k.jsonl"}, NGram: 13}}
		b, err := json.Marshal(s)
		require.NoError(t, err)
		iters = append(iters, b)
	}
	its := storetest.SeedRun(t, pool, storetest.RunSpec{Name: "q", Iterations: iters, Prompts: 40, Samples: 2, ResponseChars: 8})

	var parent, matched int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT prompt_id FROM tasks WHERE iteration_id = $1 AND kind = 'evolve' ORDER BY prompt_id LIMIT 1`, its[0]).Scan(&parent))
	require.NoError(t, pool.QueryRow(ctx, `SELECT prompt_id FROM iteration_prompts WHERE iteration_id = $1 ORDER BY prompt_id LIMIT 1`, its[0]).Scan(&matched))
	_, err := pool.Exec(ctx, `UPDATE tasks SET outcome = 'kept 2 of 5; dropped: 1 empty, 2 near_duplicate (breadth, deepen)'
		WHERE iteration_id = $1 AND prompt_id = $2 AND kind = 'evolve'`, its[0], parent)
	require.NoError(t, err)
	user := func(s string) []prompt.Message { return []prompt.Message{{Role: "user", Content: s}} }
	near := prompt.Evolved(user("x"), "How do I cook  rice?", parent, "deepen")
	near2 := prompt.Evolved(user("x"), "How do I cook rice ?", parent, "breadth")
	dirty := prompt.New(user("Natalia sold clips to 48 of her friends in April, and then she sold half as many"), "prompts.jsonl", "7")
	require.NoError(t, store.InsertFlags(ctx, pool, []store.Flag{
		{IterationID: its[0], Reason: store.ReasonNearDuplicate, Dropped: true, Prompt: near, MatchedPromptID: matched, Estimated: 0.95, Exact: 0.9375},
		{IterationID: its[0], Reason: store.ReasonNearDuplicate, Dropped: true, Prompt: near2, MatchedPromptID: matched, Estimated: 1, Exact: 1},
		{IterationID: its[0], Reason: store.ReasonContaminated, Dropped: true, Prompt: dirty, BenchmarkFile: "gsm8k.jsonl", BenchmarkRow: 1234},
	}))

	got, err := report.Load(ctx, pool, "q", "iter0")
	require.NoError(t, err)
	require.Equal(t, []store.FlagCount{
		{Reason: "contaminated", Dropped: true, Origin: "loaded", Source: "prompts.jsonl", Count: 1},
		{Reason: "near_duplicate", Dropped: true, Origin: "evolved", Source: "breadth", Count: 1},
		{Reason: "near_duplicate", Dropped: true, Origin: "evolved", Source: "deepen", Count: 1},
	}, got.Flags)
	require.Len(t, got.NearExamples, 2)
	require.Equal(t, "How do I cook  rice?", got.NearExamples[0].Text)
	require.Equal(t, 0.9375, *got.NearExamples[0].Exact)
	require.Len(t, got.ContaminatedExamples, 1)
	require.Contains(t, got.Dropped, report.Count{Label: "near_duplicate", N: 2})
	require.Contains(t, got.Dropped, report.Count{Label: "empty", N: 1})

	var buf bytes.Buffer
	require.NoError(t, report.Render(&buf, got))
	html := buf.String()
	require.Contains(t, html, `<section class="top" id="data-quality">`)
	require.Contains(t, html, "gsm8k.jsonl:1234")
	require.Contains(t, html, "0.9375")
	require.Contains(t, html, "<td>near_duplicate</td><td>dropped</td><td>evolved</td><td>deepen</td>")

	// An iteration without flags says what was checked.
	got, err = report.Load(ctx, pool, "q", "iter1")
	require.NoError(t, err)
	buf.Reset()
	require.NoError(t, report.Render(&buf, got))
	require.Contains(t, buf.String(), "No prompt of this iteration was found near-duplicate (dedup.near_threshold 0.8) or contaminated (1 benchmark files, 13-word n-grams)")
}
