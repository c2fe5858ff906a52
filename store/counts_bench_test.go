package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// BenchmarkRunTaskCounts times what a metrics scrape asks of the database
// for the run's task counts, on an iteration of N tasks with half of them
// done: store.RunTaskCounts (the trigger-kept counts) against the GROUP BY
// over every task the collector ran before. Run with
//
//	go test ./store -run X -bench RunTaskCounts -benchtime 20x
func BenchmarkRunTaskCounts(b *testing.B) {
	for _, n := range []int{20_000, 200_000} {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			ctx := context.Background()
			pool, _ := storetest.NewPool(b)
			run, err := store.EnsureRun(ctx, pool, "r", []byte(`{}`))
			if err != nil {
				b.Fatal(err)
			}
			its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "i", PolicyModel: "m", Config: []byte(`{}`)}})
			if err != nil {
				b.Fatal(err)
			}
			it := its[0].ID
			for _, q := range []struct {
				sql  string
				args []any
			}{
				{`INSERT INTO prompts (hash, messages, source)
				  SELECT 'h' || g, jsonb_build_array(jsonb_build_object('role', 'user', 'content', 'q ' || g)), 'bench'
				  FROM generate_series(1, $1::int) g`, []any{n}},
				{`INSERT INTO iteration_prompts (iteration_id, prompt_id) SELECT $1, id FROM prompts`, []any{it}},
				{`INSERT INTO tasks (iteration_id, prompt_id, kind) SELECT $1, id, 'generate' FROM prompts`, []any{it}},
				{`UPDATE tasks SET status = 'done', outcome = CASE WHEN prompt_id % 3 = 0 THEN 'paired' ELSE 'identical_texts' END
				  WHERE iteration_id = $1 AND prompt_id % 2 = 0`, []any{it}},
				{`ANALYZE`, nil},
			} {
				if _, err := pool.Exec(ctx, q.sql, q.args...); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("counts", func(b *testing.B) {
				for b.Loop() {
					if _, err := store.RunTaskCounts(ctx, pool, "r"); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("groupby", func(b *testing.B) {
				for b.Loop() {
					rows, err := pool.Query(ctx, `
						SELECT i.name, t.kind, t.status,
						       CASE WHEN t.status = 'done' THEN coalesce(t.outcome, 'done') ELSE t.status END,
						       count(*)
						FROM tasks t JOIN iterations i ON i.id = t.iteration_id JOIN runs r ON r.id = i.run_id
						WHERE r.name = $1
						GROUP BY 1, 2, 3, 4`, "r")
					if err != nil {
						b.Fatal(err)
					}
					rows.Close()
					if rows.Err() != nil {
						b.Fatal(rows.Err())
					}
				}
			})
		})
	}
}
