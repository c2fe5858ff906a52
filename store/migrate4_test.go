package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/migrations"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// oldColumns are pair_details' columns before migration 4, in order.
const oldColumns = `run, iteration, iteration_ordinal, policy_model, pair_id, prompt_id, prompt_messages, prompt_text,
	prompt_source, parent_prompt_id, prompt_strategy, chosen, rejected, chosen_reward, rejected_reward,
	chosen_tokens, rejected_tokens, chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps,
	explicit_margin, implicit_margin, dpo_margin, explicit_z, implicit_z, alignment_potential, metric_score,
	rank, selected, evolve_score, evolve_rank, evolve_selected`

// TestMigration4KeepsPairDetails: a database at schema 3 with pairs of two
// runs, and prompts of every shape, migrated to 4 shows the same rows and
// values in pair_details' old columns, in the same order, and the ids of
// run and iteration beside them.
func TestMigration4KeepsPairDetails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, storetest.NewEmptyDatabase(t))
	require.NoError(t, err)
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS, goose.WithTableName("goose_db_version"))
	require.NoError(t, err)
	_, err = p.UpTo(ctx, 3)
	require.NoError(t, err)

	// Prompts: plain; a system message first; two user turns (the last
	// counts); no user message; content that is not a string; an evolved one.
	_, err = pool.Exec(ctx, `
		INSERT INTO runs (name, config) VALUES ('a', '{}'), ('b', '{}');
		INSERT INTO iterations (run_id, ordinal, name, policy_model) SELECT id, o, 'iter' || o, 'm' || o FROM runs, generate_series(0, 1) o;
		INSERT INTO prompts (hash, messages, source) VALUES
		  ('h1', '[{"role": "user", "content": "plain"}]', 'f.jsonl'),
		  ('h2', '[{"role": "system", "content": "be brief"}, {"role": "user", "content": "after a system message"}]', 'f.jsonl'),
		  ('h3', '[{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply"}, {"role": "user", "content": "second"}]', 'f.jsonl'),
		  ('h4', '[{"role": "system", "content": "no user here"}]', 'f.jsonl'),
		  ('h5', '[{"role": "user", "content": [{"type": "text", "text": "parts"}]}]', 'f.jsonl'),
		  ('h6', '[{"role": "user"}, {"role": "user", "content": "ignored: not the last"}, {"role": "user"}]', 'f.jsonl');
		INSERT INTO prompts (hash, messages, source, parent_prompt_id, strategy)
		SELECT 'h7', '[{"role": "user", "content": "evolved"}]', 'evolved', id, 'deepen' FROM prompts WHERE hash = 'h1';
		INSERT INTO prompts (hash, messages, source, parent_prompt_id, strategy)
		SELECT 'h8', '[{"role": "user", "content": "evolved twice"}]', 'evolved', id, 'concretize' FROM prompts WHERE hash = 'h7';
		INSERT INTO iteration_prompts SELECT i.id, p.id FROM iterations i, prompts p;
		INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward, ref_logprob_sum)
		SELECT iteration_id, prompt_id, s, 'response ' || s || ' of ' || prompt_id, 3 + s, -1.5 * (s + 1), s * 0.7,
		       CASE WHEN prompt_id % 2 = 0 THEN -2.0 * s END
		FROM iteration_prompts, generate_series(0, 2) s;
		INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin, dpo_margin)
		SELECT ip.iteration_id, ip.prompt_id, c.id, x.id, c.reward - x.reward, 0.1 * ip.prompt_id,
		       CASE WHEN ip.prompt_id % 3 = 0 THEN 0.25 END
		FROM iteration_prompts ip
		JOIN responses c ON (c.iteration_id, c.prompt_id, c.sample_index) = (ip.iteration_id, ip.prompt_id, 2)
		JOIN responses x ON (x.iteration_id, x.prompt_id, x.sample_index) = (ip.iteration_id, ip.prompt_id, 0)
		WHERE ip.prompt_id % 4 <> 1`)
	require.NoError(t, err)
	// Scored as ScorePairs did at schema 3 (its statement of today writes
	// top_pairs too, which schema 3 lacks): scores, ranks by score and the
	// two best of each iteration selected.
	_, err = pool.Exec(ctx, `
		UPDATE pairs p SET explicit_z = p.explicit_margin - 1, implicit_z = p.implicit_margin,
		       alignment_potential = r.score, metric_score = r.score, rank = r.rnk, selected = r.rnk <= 2
		FROM (SELECT id, explicit_margin - implicit_margin AS score,
		             row_number() OVER (PARTITION BY iteration_id ORDER BY explicit_margin - implicit_margin DESC, id) AS rnk
		      FROM pairs) r
		WHERE r.id = p.id`)
	require.NoError(t, err)
	read := `SELECT ` + oldColumns + ` FROM pair_details ORDER BY pair_id`
	before := queryMaps(t, pool, read)
	require.Len(t, before, 4*6) // 4 iterations × the 6 of 8 prompts with a pair

	_, err = store.Migrate(ctx, pool)
	require.NoError(t, err)
	after := queryMaps(t, pool, read)
	require.Equal(t, before, after)

	got := queryMaps(t, pool, `SELECT DISTINCT prompt_id, prompt_text FROM pair_details ORDER BY prompt_id`)
	var want []any
	for _, row := range got {
		want = append(want, row["prompt_text"])
	}
	// Prompts 2 (h2), 3 (h3), 4 (h4), 6 (h6), 7 (h7), 8 (h8) have pairs;
	// h4 has no user message and h6's last user message has no content.
	require.Equal(t, []any{"after a system message", "second", nil, nil, "evolved", "evolved twice"}, want)

	// Migration 7: the selected pairs of each iteration, in rank order, are
	// in top_pairs; each prompt knows how many rewrites separate it from
	// its original, and a prompt inserted now is given it.
	top := queryMaps(t, pool, `SELECT t.iteration_id, t.rank, t.pair_id FROM top_pairs t ORDER BY 1, 2`)
	sel := queryMaps(t, pool, `SELECT iteration_id, rank, id AS pair_id FROM pairs WHERE selected ORDER BY 1, 2`)
	require.Len(t, sel, 4*2)
	require.Equal(t, sel, top)
	gens := queryMaps(t, pool, `SELECT hash, generation FROM prompts ORDER BY id`)
	require.Equal(t, []map[string]any{
		{"hash": "h1", "generation": int32(0)}, {"hash": "h2", "generation": int32(0)}, {"hash": "h3", "generation": int32(0)},
		{"hash": "h4", "generation": int32(0)}, {"hash": "h5", "generation": int32(0)}, {"hash": "h6", "generation": int32(0)},
		{"hash": "h7", "generation": int32(1)}, {"hash": "h8", "generation": int32(2)},
	}, gens)
	_, err = pool.Exec(ctx, `
		INSERT INTO prompts (hash, messages, source, parent_prompt_id, strategy)
		SELECT 'h9', '[{"role": "user", "content": "evolved thrice"}]', 'evolved', id, 'deepen' FROM prompts WHERE hash = 'h8';
		INSERT INTO prompts (hash, messages, source) VALUES ('h10', '[{"role": "user", "content": "new"}]', 'g.jsonl')`)
	require.NoError(t, err)
	gens = queryMaps(t, pool, `SELECT hash, generation FROM prompts WHERE hash IN ('h9', 'h10') ORDER BY id`)
	require.Equal(t, []map[string]any{{"hash": "h9", "generation": int32(3)}, {"hash": "h10", "generation": int32(0)}}, gens)

	// A pair inserted now gets its responses' rewards from the database.
	_, err = pool.Exec(ctx, `
		INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin)
		SELECT c.iteration_id, c.prompt_id, c.id, x.id, c.reward - x.reward, 0
		FROM responses c JOIN responses x USING (iteration_id, prompt_id)
		WHERE c.prompt_id = 1 AND c.sample_index = 1 AND x.sample_index = 0`)
	require.NoError(t, err)
	fresh := queryMaps(t, pool, `SELECT d.chosen_reward = c.reward AND d.rejected_reward = x.reward AS same, count(*) AS n
		FROM pair_details d JOIN pairs p ON p.id = d.pair_id
		JOIN responses c ON c.id = p.chosen_id JOIN responses x ON x.id = p.rejected_id
		WHERE d.prompt_id = 1 GROUP BY 1`)
	require.Equal(t, []map[string]any{{"same": true, "n": int64(4)}}, fresh)

	// The new columns are the ids behind the names.
	ids := queryMaps(t, pool, `SELECT d.run_id = r.id AND d.iteration_id = i.id AS same, count(*) AS n
		FROM pair_details d JOIN runs r ON r.name = d.run JOIN iterations i ON i.run_id = r.id AND i.name = d.iteration
		GROUP BY 1`)
	require.Equal(t, []map[string]any{{"same": true, "n": int64(28)}}, ids)
}

// TestPairDetailsReadsOnlyTheTablesItNeeds: a query of pair columns plans
// a scan of pairs and nothing else; naming a text column brings its table
// back in; a prompt text search uses the trigram index.
func TestPairDetailsReadsOnlyTheTablesItNeeds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	seedDemo(t, pool, 200, 16)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	plan := func(sql string) string {
		t.Helper()
		var lines []string
		rows, err := conn.Query(ctx, `EXPLAIN (COSTS OFF) `+sql)
		require.NoError(t, err)
		for rows.Next() {
			var l string
			require.NoError(t, rows.Scan(&l))
			lines = append(lines, l)
		}
		require.NoError(t, rows.Err())
		return strings.Join(lines, "\n")
	}
	counts := plan(`SELECT iteration_id, count(*), avg(alignment_potential) FROM pair_details GROUP BY 1`)
	for _, table := range []string{"responses", "prompts", "iterations", "runs"} {
		require.NotContains(t, counts, " on "+table, counts)
	}
	require.Contains(t, plan(`SELECT chosen FROM pair_details WHERE pair_id = 1`), "on responses")
	// A table this small is read whole; the index is still the one chosen
	// when scans are expensive.
	_, err = conn.Exec(ctx, `SET enable_seqscan = off; SET enable_indexscan = off`)
	require.NoError(t, err)
	var word string // the md5 word of one prompt
	require.NoError(t, conn.QueryRow(ctx, `SELECT substring(prompt_text FROM '[0-9a-f]{32}') FROM pair_details LIMIT 1`).Scan(&word))
	require.Contains(t, plan(`SELECT pair_id FROM pair_details WHERE prompt_text ILIKE '%`+word[3:15]+`%'`), "prompts_text_trgm_idx")
}

// TestCompleteGenerateStoresThePairsRewards: the pair a worker stores, in
// the statement that stores its responses, carries their rewards.
func TestCompleteGenerateStoresThePairsRewards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	it, ids := newTasks(t, pool, 1)
	r := []float64{0.25, 2.5, -1.125}
	var rs []store.Response
	for i := range r {
		rs = append(rs, store.Response{SampleIndex: i, Content: fmt.Sprintf("answer %d", i), TokenCount: 2, LogProbSum: -1, Reward: &r[i]})
	}
	k := store.TaskKey{IterationID: it, PromptID: ids[0], Kind: "generate"}
	require.NoError(t, store.CompleteGenerate(ctx, pool, k, "paired", 1, rs,
		&store.PairChoice{Chosen: 1, Rejected: 2, ExplicitMargin: 3.625, ImplicitMargin: 0}))
	got := queryMaps(t, pool, `SELECT chosen, chosen_reward, rejected, rejected_reward FROM pair_details`)
	require.Equal(t, []map[string]any{{"chosen": "answer 1", "chosen_reward": 2.5, "rejected": "answer 2", "rejected_reward": -1.125}}, got)
}
