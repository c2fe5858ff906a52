package storetest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/store"
)

// RunSpec describes a finished run SeedRun writes, shaped like a real one.
type RunSpec struct {
	Name string
	// Iterations are the iterations' effective settings (JSON, as the
	// orchestrator stores them); their number is the run's length, and
	// the n-th is named "iter<n>".
	Iterations [][]byte
	// Prompts is the size of every iteration's pool. From the second
	// iteration on, half of the pool are prompts evolved from the first
	// half of the previous pool (one strategy each), half are fresh.
	Prompts int
	// Samples is the number of responses per prompt (at least 2).
	Samples int
	// ResponseChars is the shortest response; lengths vary up to twice it.
	ResponseChars int
}

// SeedRun writes a finished run inside the database: prompts (four
// phrasings, each with an md5 word of its own and one of 1000 topics, as
// in "i want to learn <md5> , where do i start ? (topic 7)"; every fourth
// with a system message before the user's), pools, generate tasks
// (1 in 100 failed with a policy endpoint's error, 1 in 100 without a pair
// because all rewards were equal, the rest paired), Samples responses per
// done task, the best-vs-worst pair of each paired prompt, evolve tasks for
// the prompts evolved into the next pool, and the train (alignment
// potential, ratio 0.4) and evolve (w = 2.5, ratio 0.25) selections scored
// by store.ScorePairs. A million pairs take minutes; then VACUUM ANALYZE.
// It returns the iterations' ids.
func SeedRun(t testing.TB, pool *pgxpool.Pool, spec RunSpec) []int64 {
	t.Helper()
	ctx := context.Background()
	if spec.Samples < 2 || spec.Prompts < 2 || spec.ResponseChars < 8 {
		t.Fatalf("seed run %s: need Samples ≥ 2, Prompts ≥ 2 and ResponseChars ≥ 8", spec.Name)
	}
	run, err := store.EnsureRun(ctx, pool, spec.Name, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var specs []store.IterationSpec
	for i, cfg := range spec.Iterations {
		specs = append(specs, store.IterationSpec{Ordinal: i, Name: fmt.Sprintf("iter%d", i), PolicyModel: fmt.Sprintf("policy-%d", i), Config: cfg})
	}
	its, err := store.EnsureIterations(ctx, pool, run.ID, specs)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int64, len(its))
	for _, it := range its {
		ids[it.Ordinal] = it.ID
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	exec := func(what, sql string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("seed run %s: %s: %v", spec.Name, what, err)
		}
	}
	exec("session", `SET synchronous_commit = off; SET work_mem = '256MB';
		CREATE TEMP TABLE IF NOT EXISTS seed_pool (k int, g int, prompt_id bigint, PRIMARY KEY (k, g));
		TRUNCATE seed_pool; SELECT setseed(0.42)`)
	half := spec.Prompts / 2
	for k, it := range ids {
		tag := fmt.Sprintf("%s/%d/%d", spec.Name, run.ID, k)
		from := 1
		if k > 0 {
			// Evolved: prompt g of this pool rewrites prompt g of the last.
			from = half + 1
			exec("evolved prompts", `
				WITH ins AS (
				    INSERT INTO prompts (hash, messages, source, parent_prompt_id, strategy)
				    SELECT md5($1 || ':' || s.g), jsonb_build_array(jsonb_build_object('role', 'user', 'content',
				               'Rewritten ' || md5($1 || ':' || s.g) || ': ' || last_user_message(p.messages))),
				           'evolved', p.id, (ARRAY['breadth', 'deepen', 'constraints', 'concretizing', 'reasoning'])[s.g % 5 + 1]
				    FROM seed_pool s JOIN prompts p ON p.id = s.prompt_id
				    WHERE s.k = $2 - 1 AND s.g <= $3
				    ORDER BY s.g
				    RETURNING id, parent_prompt_id)
				INSERT INTO seed_pool SELECT $2, s.g, ins.id FROM ins JOIN seed_pool s ON s.k = $2 - 1 AND s.prompt_id = ins.parent_prompt_id`,
				tag, k, half)
			exec("evolve tasks", `
				INSERT INTO tasks (iteration_id, prompt_id, kind, status, attempts, outcome)
				SELECT $1, prompt_id, 'evolve', 'done', 1, 'kept 1 of 5; dropped: 3 too long for length_ratio, 1 duplicate'
				FROM seed_pool WHERE k = $2 - 1 AND g <= $3 ORDER BY g`, ids[k-1], k, half)
		}
		exec("prompts", `
			WITH ins AS (
			    INSERT INTO prompts (hash, messages, source, source_id)
			    SELECT md5($1 || ':' || g),
			           CASE WHEN g % 4 = 0 THEN '[{"role": "system", "content": "You are a careful assistant."}]'::jsonb ELSE '[]' END
			           || jsonb_build_array(jsonb_build_object('role', 'user', 'content',
			               format((ARRAY['why is my %s so playful ?', 'i want to learn %s , where do i start ?',
			                             'what is a simple %s tip for a beginner ?', 'explain %s to a colleague in a few steps .'])[g % 4 + 1],
			                      md5($1 || ':' || g)) || ' (topic ' || (g % 1000) || ')')),
			           'prompts.jsonl', g::text
			    FROM generate_series($2::int, $3::int) g
			    ORDER BY g
			    RETURNING id, source_id)
			INSERT INTO seed_pool SELECT $4, source_id::int, id FROM ins`, tag, from, spec.Prompts, k)
		exec("pool", `INSERT INTO iteration_prompts (iteration_id, prompt_id) SELECT $1, prompt_id FROM seed_pool WHERE k = $2 ORDER BY g`, it, k)
		exec("generate tasks", `
			INSERT INTO tasks (iteration_id, prompt_id, kind, status, attempts, outcome, error, error_endpoint, error_status)
			SELECT $1, prompt_id, 'generate', CASE WHEN g % 100 = 7 THEN 'failed' ELSE 'done' END, 1,
			       CASE g % 100 WHEN 7 THEN NULL WHEN 13 THEN 'all rewards equal' ELSE 'paired' END,
			       CASE WHEN g % 100 = 7 THEN 'gave up after 5 deliveries: sample: llm: policy endpoint (model "policy-0") /v1/chat/completions: status 503: overloaded' END,
			       CASE WHEN g % 100 = 7 THEN 'policy' END, CASE WHEN g % 100 = 7 THEN 503 END
			FROM seed_pool WHERE k = $2 ORDER BY g`, it, k)
		// Sample g % n is chosen (reward 3–5) and sample (g+1) % n rejected
		// (0–0.5); the others are in between. All equal: reward 1.
		exec("responses", `
			INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, finish_reason, reward)
			SELECT $1, s.prompt_id, i, r.content, length(r.content) / 4, -(length(r.content) / 4) * (0.3 + random()), 'stop',
			       CASE WHEN s.g % 100 = 13 THEN 1
			            WHEN i = s.g % $3 THEN 3 + 2 * random()
			            WHEN i = (s.g + 1) % $3 THEN 0.5 * random()
			            ELSE 0.5 + 2.5 * random() END
			FROM seed_pool s CROSS JOIN generate_series(0, $3 - 1) i
			CROSS JOIN LATERAL (SELECT left('Answer ' || repeat(md5(s.prompt_id || ':' || i) || ' ', 64), $4 + (s.g * 7 + i * 13) % $4) AS content) r
			WHERE s.k = $2 AND s.g % 100 <> 7
			ORDER BY s.g, i`, it, k, spec.Samples, spec.ResponseChars)
		exec("pairs", `
			INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin)
			SELECT $1, s.prompt_id, c.id, x.id, c.reward - x.reward,
			       c.logprob_sum / c.token_count - x.logprob_sum / x.token_count
			FROM seed_pool s
			JOIN responses c ON c.iteration_id = $1 AND c.prompt_id = s.prompt_id AND c.sample_index = s.g % $3
			JOIN responses x ON x.iteration_id = $1 AND x.prompt_id = s.prompt_id AND x.sample_index = (s.g + 1) % $3
			WHERE s.k = $2 AND s.g % 100 NOT IN (7, 13)
			ORDER BY s.g`, it, k, spec.Samples)
		exec("analyze", `ANALYZE pairs`)
		for _, sel := range []struct {
			spec   store.ScoreSpec
			target store.Target
		}{
			{store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection},
			{store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 2.5, Ratio: 0.25}, store.EvolveSelection},
		} {
			if _, err := store.ScorePairs(ctx, pool, it, sel.spec, sel.target); err != nil {
				t.Fatalf("seed run %s: %v", spec.Name, err)
			}
		}
		exec("stage", `UPDATE iterations SET stage = 'done', started_at = now(), finished_at = now() WHERE id = $1`, it)
	}
	exec("drop", `DROP TABLE seed_pool`)
	exec("vacuum", `VACUUM ANALYZE`)
	return ids
}
