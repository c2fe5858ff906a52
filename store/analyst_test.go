package store_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/selfplaytest"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// cookbookQuery is one statement of the SQL cookbook (README and docs/sql.md).
type cookbookQuery = selfplaytest.CookbookQuery

// iterationSettings are the settings SeedRun's selections follow.
func iterationSettings(t testing.TB, n int) [][]byte {
	d := config.Defaults()
	var out [][]byte
	for i := range n {
		s := config.Settings{Name: fmt.Sprintf("iter%d", i), PolicyModel: fmt.Sprintf("policy-%d", i),
			Prompts:    config.Prompts{Files: []string{"prompts.jsonl"}, Evolved: i > 0},
			Generation: d.Generation, Scoring: d.Scoring, Selection: d.Selection, Evolve: d.Evolve}
		b, err := json.Marshal(s)
		require.NoError(t, err)
		out = append(out, b)
	}
	return out
}

// seedDemo writes the run 'demo' the cookbook speaks of, plus a small run
// 'other' whose rows no query of 'demo' may return.
func seedDemo(t testing.TB, pool *pgxpool.Pool, prompts, responseChars int) []int64 {
	storetest.SeedRun(t, pool, storetest.RunSpec{Name: "other", Iterations: iterationSettings(t, 2), Prompts: 50, Samples: 4, ResponseChars: 16})
	return storetest.SeedRun(t, pool, storetest.RunSpec{Name: "demo", Iterations: iterationSettings(t, 3), Prompts: prompts, Samples: 4, ResponseChars: responseChars})
}

// queryMaps runs sql and returns its rows as column → value maps.
func queryMaps(t testing.TB, db store.DBTX, sql string, args ...any) []map[string]any {
	t.Helper()
	rows, err := db.Query(context.Background(), sql, args...)
	require.NoError(t, err, sql)
	out, err := pgx.CollectRows(rows, pgx.RowToMap)
	require.NoError(t, err, sql)
	return out
}

// rankedMetricComparison is the plain form of the cookbook's comparison of
// metrics on run 'demo', iteration 'iter0': each metric's top k by window
// ranks (ties by pair id), one row per pair and metric, grouped.
const rankedMetricComparison = `
WITH p AS (
    SELECT pair_id, alignment_potential, explicit_z, implicit_z, explicit_margin, implicit_margin,
           chosen_reward, selected
    FROM pair_details
    WHERE iteration_id = (SELECT i.id FROM iterations i JOIN runs r ON r.id = i.run_id
                          WHERE r.name = 'demo' AND i.name = 'iter0')
      AND rank IS NOT NULL
), k AS (
    SELECT count(*) FILTER (WHERE selected) AS k FROM p
), ranked AS (
    SELECT p.*,
           row_number() OVER (ORDER BY alignment_potential DESC, pair_id) AS by_alignment_potential,
           row_number() OVER (ORDER BY explicit_z DESC, pair_id)          AS by_explicit_margin,
           row_number() OVER (ORDER BY implicit_z ASC, pair_id)           AS by_implicit_margin
    FROM p
)
SELECT m.metric, count(*) AS pairs,
       round(avg(explicit_margin)::numeric, 3)      AS mean_explicit_margin,
       round(avg(abs(implicit_margin))::numeric, 4) AS mean_abs_implicit_margin,
       round(avg(chosen_reward)::numeric, 3)        AS mean_chosen_reward,
       count(*) FILTER (WHERE selected)             AS in_stored_selection
FROM ranked CROSS JOIN k
CROSS JOIN LATERAL (VALUES ('alignment_potential', by_alignment_potential),
                           ('explicit_margin', by_explicit_margin),
                           ('implicit_margin', by_implicit_margin)) AS m(metric, rnk)
WHERE m.rnk <= k.k
GROUP BY m.metric
ORDER BY m.metric`

// requireSameComparison compares rows of the metric comparison: metric,
// pairs and in_stored_selection exactly, each mean to within one unit of its
// last rounded digit. The means are float sums taken in another order than
// the plain form's, and a mean that lies on a rounding boundary (2.7195 in
// TestMetricComparisonAtTies) rounds either way.
func requireSameComparison(t *testing.T, want, got []map[string]any) {
	t.Helper()
	require.Len(t, got, len(want))
	for i := range want {
		for _, col := range []string{"metric", "pairs", "in_stored_selection"} {
			require.Equal(t, want[i][col], got[i][col], "%s of %v", col, want[i]["metric"])
		}
		for col, unit := range map[string]float64{"mean_explicit_margin": 1e-3, "mean_abs_implicit_margin": 1e-4, "mean_chosen_reward": 1e-3} {
			w, err := want[i][col].(pgtype.Numeric).Float64Value()
			require.NoError(t, err)
			g, err := got[i][col].(pgtype.Numeric).Float64Value()
			require.NoError(t, err)
			require.InDelta(t, w.Float64, g.Float64, unit*1.01, "%s of %v", col, want[i]["metric"])
		}
	}
}

// cookbookQueryTitled returns the cookbook statement whose title starts
// with prefix.
func cookbookQueryTitled(t testing.TB, prefix string) string {
	t.Helper()
	for _, q := range selfplaytest.Cookbook(t) {
		if strings.HasPrefix(q.Title, prefix) {
			return q.SQL
		}
	}
	t.Fatalf("the README's cookbook has no query titled %q…", prefix)
	return ""
}

// TestMetricComparisonAtTies: the cookbook's comparison of metrics finds
// each metric's k-th best value and splits the pairs equal to it by id. On
// pools where the k-th value is shared — explicit margins of three values,
// one of them both as 0.3 and as 0.1+0.2 (1 ulp apart), and implicit
// margins all of one magnitude, so every implicit z is 0 — it must give the
// plain ranking's rows; and with nothing selected, three rows of 0 pairs.
// With dpo margins on two thirds of the pairs, only those are scored, and
// only those are compared (an unscored pair's NULL AP would sort first).
func TestMetricComparisonAtTies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	query := cookbookQueryTitled(t, "How selection by each metric")
	for _, tc := range []struct {
		name  string
		ratio float64
		mex   func(i int) float64
		mim   func(i int) float64
		dpo   bool
	}{
		{"three explicit values, one implicit magnitude", 0.4,
			func(i int) float64 { return []float64{2, 0.3, 0.1 + 0.2}[i%3] },
			func(i int) float64 { return []float64{0.5, -0.5}[i%2] }, false},
		{"all margins equal", 0.4, func(int) float64 { return 1 }, func(int) float64 { return -0.25 }, false},
		{"tied values in both", 0.55,
			func(i int) float64 { return float64(i % 4) },
			func(i int) float64 { return float64(i%3) - 1 }, false},
		{"nothing selected", 0, func(i int) float64 { return float64(i) }, func(i int) float64 { return float64(i % 7) }, false},
		{"a dpo pool that leaves pairs out", 0.4,
			func(i int) float64 { return float64(i % 4) },
			func(i int) float64 { return float64(i%3) - 1 }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := storetest.NewPool(t)
			run, err := store.EnsureRun(ctx, pool, "demo", []byte(`{}`))
			require.NoError(t, err)
			its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{{Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)}})
			require.NoError(t, err)
			const n = 500
			mex, mim := make([]float64, n), make([]float64, n)
			for i := range n {
				mex[i], mim[i] = tc.mex(i), tc.mim(i)
			}
			storetest.SeedPairs(t, pool, its[0].ID, mex, mim)
			spec, pooled := store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: tc.ratio}, n
			if tc.dpo {
				tag, err := pool.Exec(ctx, `UPDATE pairs SET dpo_margin = 2 * implicit_margin WHERE iteration_id = $1 AND id % 3 <> 0`, its[0].ID)
				require.NoError(t, err)
				spec.Implicit, pooled = "dpo", int(tag.RowsAffected())
				require.Less(t, pooled, n)
			}
			k, err := store.ScorePairs(ctx, pool, its[0].ID, spec, store.TrainSelection)
			require.NoError(t, err)
			require.EqualValues(t, int(tc.ratio*float64(pooled)+1e-9), k)
			got := queryMaps(t, pool, query)
			require.Len(t, got, 3)
			if k == 0 {
				for _, row := range got {
					require.EqualValues(t, 0, row["pairs"], row["metric"])
				}
				return
			}
			requireSameComparison(t, queryMaps(t, pool, rankedMetricComparison), got)
			for _, row := range got {
				require.EqualValues(t, k, row["pairs"], row["metric"])
			}
			require.EqualValues(t, k, got[0]["in_stored_selection"], "alignment_potential is the stored metric")
		})
	}
}

// TestCookbookOnASeededRun runs every query of the SQL cookbook (README and docs/sql.md)
// against a small three-iteration run and checks what each one returns
// against the run's rows.
func TestCookbookOnASeededRun(t *testing.T) {
	t.Parallel()
	pool, _ := storetest.NewPool(t)
	its := seedDemo(t, pool, 300, 24)
	queries := selfplaytest.Cookbook(t)
	require.GreaterOrEqual(t, len(queries), 8)
	count := func(sql string, args ...any) int64 {
		var n int64
		require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n), sql)
		return n
	}
	// One session, as an analyst's psql: a SET applies to the queries after it.
	conn, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	defer conn.Release()
	for _, q := range queries {
		if q.Setting() {
			_, err := conn.Exec(context.Background(), q.SQL)
			require.NoError(t, err, q.SQL)
			continue
		}
		t.Run(q.Title, func(t *testing.T) {
			got := queryMaps(t, conn, q.SQL)
			require.NotEmpty(t, got, "no rows from:\n%s", q.SQL)
			switch {
			case strings.HasPrefix(q.Title, "Top selected pairs"):
				require.Len(t, got, 20)
				want := queryMaps(t, pool, `SELECT rank, explicit_margin, alignment_potential FROM pairs
					WHERE iteration_id = $1 AND selected ORDER BY rank LIMIT 20`, its[0])
				for i, row := range got {
					require.EqualValues(t, i+1, row["rank"])
					require.NotEmpty(t, row["chosen"])
					require.Equal(t, want[i]["explicit_margin"], row["explicit_margin"], "rank %d", i+1)
					require.Equal(t, want[i]["alignment_potential"], row["alignment_potential"], "rank %d", i+1)
				}
			case strings.HasPrefix(q.Title, "AP distribution"):
				require.Len(t, got, 3)
				for i, row := range got {
					require.EqualValues(t, count(`SELECT count(*) FROM pairs WHERE iteration_id = $1`, its[i]), row["pairs"])
					require.EqualValues(t, count(`SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, its[i]), row["selected"])
					want := queryMaps(t, pool, `SELECT round(percentile_cont(0.1) WITHIN GROUP (ORDER BY alignment_potential)::numeric, 3) AS p10,
						round(percentile_cont(0.5) WITHIN GROUP (ORDER BY alignment_potential)::numeric, 3) AS median,
						round(percentile_cont(0.9) WITHIN GROUP (ORDER BY alignment_potential)::numeric, 3) AS p90,
						round(min(alignment_potential) FILTER (WHERE selected)::numeric, 3) AS lowest_selected
						FROM pairs WHERE iteration_id = $1`, its[i])[0]
					for _, col := range []string{"p10", "median", "p90", "lowest_selected"} {
						require.Equal(t, want[col], row[col], "%s of iteration %d", col, i)
					}
				}
			case strings.HasPrefix(q.Title, "AP histogram"):
				var pairs int64
				for _, row := range got {
					pairs += row["pairs"].(int64)
				}
				require.Equal(t, count(`SELECT count(*) FROM pairs WHERE iteration_id = ANY($1)`, its), pairs)
			case strings.HasPrefix(q.Title, "How selection by each metric"):
				// The stored selection was made by alignment potential: the
				// query's top k by AP must be exactly it.
				selected := count(`SELECT count(*) FROM pairs WHERE iteration_id = $1 AND selected`, its[0])
				require.Len(t, got, 3)
				for _, row := range got {
					require.EqualValues(t, selected, row["pairs"], row["metric"])
					if row["metric"] == "alignment_potential" {
						require.EqualValues(t, selected, row["in_stored_selection"])
					}
				}
				// The same rows as the plain form.
				requireSameComparison(t, queryMaps(t, pool, rankedMetricComparison), got)
			case strings.HasPrefix(q.Title, "Evolved prompts with their lineage"):
				for _, row := range got {
					// SeedRun evolves prompt g of one pool into prompt g of the next.
					require.EqualValues(t, row["generations"], strings.Count(row["strategies"].(string), "→")+1)
					require.True(t, strings.HasSuffix(row["evolved"].(string), row["original"].(string)), "%v", row)
				}
				require.EqualValues(t, 2, got[0]["generations"])
				// The same rows as a walk of every lineage of the run from its
				// evolved prompts (the query before prompts.generation).
				walk := queryMaps(t, pool, `
					WITH RECURSIVE lineage AS (
					    SELECT pr.id AS prompt_id, pr.id AS ancestor_id, pr.parent_prompt_id, pr.strategy AS strategies, 0 AS generations
					    FROM prompts pr
					    WHERE pr.parent_prompt_id IS NOT NULL
					      AND pr.id IN (SELECT ip.prompt_id FROM iteration_prompts ip JOIN iterations i ON i.id = ip.iteration_id
					                    WHERE i.run_id = (SELECT id FROM runs WHERE name = 'demo'))
					  UNION ALL
					    SELECT l.prompt_id, a.id, a.parent_prompt_id, coalesce(a.strategy || ' → ', '') || l.strategies, l.generations + 1
					    FROM lineage l JOIN prompts a ON a.id = l.parent_prompt_id
					), deepest AS (
					    SELECT * FROM lineage WHERE parent_prompt_id IS NULL ORDER BY generations DESC, prompt_id LIMIT 20
					)
					SELECT d.prompt_id, d.generations, d.strategies, d.ancestor_id AS original_id,
					       last_user_message(o.messages) AS original, last_user_message(e.messages) AS evolved,
					       (SELECT string_agg(i.name, ', ' ORDER BY i.ordinal)
					        FROM iterations i JOIN iteration_prompts ip ON ip.iteration_id = i.id AND ip.prompt_id = d.prompt_id
					        WHERE i.run_id = (SELECT id FROM runs WHERE name = 'demo')) AS iterations
					FROM deepest d JOIN prompts o ON o.id = d.ancestor_id JOIN prompts e ON e.id = d.prompt_id
					ORDER BY d.generations DESC, d.prompt_id`)
				require.Len(t, got, 20)
				require.Equal(t, walk, got)
			case strings.HasPrefix(q.Title, "Pairs whose prompt contains a phrase"):
				require.Len(t, got, 20)
				for _, row := range got {
					require.Contains(t, row["prompt_text"], "where do i start")
				}
			case strings.HasPrefix(q.Title, "Failure reasons by endpoint"):
				require.Len(t, got, 3)
				for i, row := range got {
					require.Equal(t, "policy", row["endpoint"])
					require.Equal(t, "503", row["http_status"])
					require.EqualValues(t, count(`SELECT count(*) FROM tasks WHERE iteration_id = $1 AND status = 'failed'`, its[i]), row["tasks"])
				}
			case strings.HasPrefix(q.Title, "Reply length per iteration"):
				require.Len(t, got, 3)
				for i, row := range got {
					want := queryMaps(t, pool, `SELECT round(avg(chosen_tokens) FILTER (WHERE selected), 1) AS selected_chosen_tokens,
						round(avg(chosen_tokens), 1) AS chosen_tokens FROM pairs WHERE iteration_id = $1`, its[i])[0]
					require.Equal(t, want["selected_chosen_tokens"], row["selected_chosen_tokens"], "iteration %d", i)
					require.Equal(t, want["chosen_tokens"], row["chosen_tokens"], "iteration %d", i)
					require.Equal(t, i == 0, row["selected_chosen_growth_pct"] == nil, "growth from the second iteration on")
				}
			case strings.HasPrefix(q.Title, "Outcomes of an iteration's generate tasks"):
				outcomes := map[string]int64{}
				for _, row := range got {
					outcomes[row["outcome"].(string)] = row["prompts"].(int64)
				}
				require.Equal(t, map[string]int64{"paired": 294, "all rewards equal": 3, "failed": 3}, outcomes)
			}
		})
	}
}

// BenchmarkAnalystQueries1M times every query of the README's SQL
// cookbook, the lookups analysts make most, and each query of the HTML
// report, on a run of three iterations of 345,000 prompts (1,014,300
// pairs, 4 responses of 1–2 KB per prompt; about 7 GB). Every query runs
// -benchtime times (3x: the median of 3 is reported as ms/median). The
// database takes 15 minutes to an hour and a half to build, depending on
// the machine's load; SELFPLAY_BENCH_DATABASE_URL names one to build once
// and keep (it is created and migrated when missing, seeded when it has no
// run 'demo').
func BenchmarkAnalystQueries1M(b *testing.B) {
	ctx := context.Background()
	pool := benchDatabase(b)
	var word string // 12 characters of one prompt's md5 word: a rare substring
	require.NoError(b, pool.QueryRow(ctx, `SELECT substring(last_user_message(messages) FROM '[0-9a-f]{32}')
		FROM prompts WHERE id = (SELECT max(id) / 2 FROM prompts)`).Scan(&word))
	lookups := []cookbookQuery{
		{Title: "pair_details by pair id", SQL: `SELECT * FROM pair_details WHERE pair_id = (SELECT max(id) / 2 FROM pairs)`},
		{Title: "a pair's responses", SQL: `SELECT r.* FROM responses r JOIN pairs p ON p.iteration_id = r.iteration_id AND p.prompt_id = r.prompt_id
			WHERE p.id = (SELECT max(id) / 2 FROM pairs) ORDER BY r.sample_index`},
		{Title: "pairs by iteration and selected", SQL: `SELECT iteration, selected, count(*) FROM pair_details WHERE run = 'demo' GROUP BY 1, 2 ORDER BY 1, 2`},
		{Title: "the pairs of a prompt found by a rare substring", SQL: `SELECT iteration, pair_id, rank, prompt_text FROM pair_details
			WHERE prompt_text ILIKE '%` + word[4:16] + `%' ORDER BY iteration_ordinal`},
	}
	all := append(selfplaytest.Cookbook(b), lookups...)
	// One session, as an analyst's psql: a SET in the cookbook applies to
	// the queries after it.
	conn, err := pool.Acquire(ctx)
	require.NoError(b, err)
	defer conn.Release()
	for _, q := range all {
		if q.Setting() {
			_, err := conn.Exec(ctx, q.SQL)
			require.NoError(b, err, q.SQL)
			continue
		}
		b.Run(q.Title, func(b *testing.B) {
			var times []time.Duration
			for b.Loop() {
				start := time.Now()
				rows, err := conn.Query(ctx, q.SQL)
				require.NoError(b, err)
				n := 0
				for rows.Next() {
					n++
				}
				require.NoError(b, rows.Err(), q.SQL)
				require.Positive(b, n, q.SQL)
				times = append(times, time.Since(start))
			}
			reportMedian(b, times)
		})
	}
	_, err = conn.Exec(ctx, "RESET ALL")
	require.NoError(b, err)
	b.Run("report", func(b *testing.B) {
		// A pool of its own whose tracer times each of Load's queries.
		cfg := pool.Config().Copy()
		timer := &queryTimer{times: map[string][]time.Duration{}}
		cfg.ConnConfig.Tracer = timer
		traced, err := pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(b, err)
		defer traced.Close()
		var times []time.Duration
		for b.Loop() {
			start := time.Now()
			d, err := report.Load(ctx, traced, "demo", "iter1")
			require.NoError(b, err)
			require.Positive(b, d.Summary.Pairs)
			times = append(times, time.Since(start))
		}
		reportMedian(b, times)
		// The slowest query's median, and each query's in the log, slowest
		// first (a benchmark's log shows its first 10 lines).
		type timed struct {
			sql    string
			median time.Duration
			n      int
		}
		var all []timed
		for sql, ts := range timer.times {
			slices.Sort(ts)
			all = append(all, timed{sql, ts[len(ts)/2], len(ts)})
		}
		slices.SortFunc(all, func(x, y timed) int { return int(y.median - x.median) })
		for _, q := range all {
			b.Logf("report query %8.1f ms (median of %d): %s", float64(q.median.Microseconds())/1000, q.n, q.sql)
		}
		require.NotEmpty(b, all)
		b.ReportMetric(float64(all[0].median.Microseconds())/1000, "ms/slowest-query-median")
	})
}

// queryTimer is a pgx tracer that records how long each statement takes,
// keyed by its text with runs of white space folded (at most 120 bytes).
type queryTimer struct {
	mu    sync.Mutex
	times map[string][]time.Duration
}

type queryTimerKey struct{}

type queryStarted struct {
	sql   string
	start time.Time
}

func (q *queryTimer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	sql := strings.Join(strings.Fields(data.SQL), " ")
	if len(sql) > 120 {
		sql = sql[:120]
	}
	return context.WithValue(ctx, queryTimerKey{}, queryStarted{sql, time.Now()})
}

func (q *queryTimer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	s, ok := ctx.Value(queryTimerKey{}).(queryStarted)
	if !ok {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.times[s.sql] = append(q.times[s.sql], time.Since(s.start))
}

func reportMedian(b *testing.B, times []time.Duration) {
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms/median")
}

// benchDatabase returns a pool on the million-pair database.
func benchDatabase(b *testing.B) *pgxpool.Pool {
	ctx := context.Background()
	var pool *pgxpool.Pool
	if u := os.Getenv("SELFPLAY_BENCH_DATABASE_URL"); u != "" {
		var err error
		pool, err = pgxpool.New(ctx, u)
		require.NoError(b, err)
		b.Cleanup(pool.Close)
		if err := pool.Ping(ctx); err != nil {
			// Create it on the server the URL names.
			cfg, perr := pgx.ParseConfig(u)
			require.NoError(b, perr)
			name := cfg.Database
			cfg.Database = "postgres"
			conn, cerr := pgx.ConnectConfig(ctx, cfg)
			require.NoError(b, cerr, "connect to create %s", name)
			_, cerr = conn.Exec(ctx, `CREATE DATABASE `+pgx.Identifier{name}.Sanitize())
			conn.Close(ctx)
			require.NoError(b, cerr)
		}
		_, err = store.Migrate(ctx, pool)
		require.NoError(b, err)
	} else {
		pool, _ = storetest.NewPool(b)
	}
	if _, err := store.GetRun(ctx, pool, "demo"); err != nil {
		start := time.Now()
		seedDemo(b, pool, 345_000, 1000)
		b.Logf("seeded the million-pair database in %s", time.Since(start).Round(time.Second))
	}
	return pool
}

// BenchmarkScorePairsRankIndex1M scores 1,000,000 new pairs of one
// iteration (rank NULL, as the scoring stage finds them) with and without
// migration 4's index on pairs (iteration_id, rank), three times each,
// alternately, and reports the medians. With the index, scoring's updates
// are no longer HOT updates.
func BenchmarkScorePairsRankIndex1M(b *testing.B) {
	ctx := context.Background()
	pool, _ := storetest.NewPool(b)
	it := newIterationNamed(b, pool, 0)
	const n = 1_000_000
	mex, mim := make([]float64, n), make([]float64, n)
	for i := range n {
		mex[i], mim[i] = float64(i%9973)/997, float64(i%7919)/3959-1
	}
	storetest.SeedPairs(b, pool, it, mex, mim)
	times := map[bool][]time.Duration{}
	for b.Loop() {
		for _, withIndex := range []bool{true, false, true, false, true, false} {
			_, err := pool.Exec(ctx, `DROP INDEX IF EXISTS pairs_iteration_rank_idx`)
			require.NoError(b, err)
			_, err = pool.Exec(ctx, `UPDATE pairs SET rank = NULL, selected = false`)
			require.NoError(b, err)
			if withIndex {
				_, err = pool.Exec(ctx, `CREATE INDEX pairs_iteration_rank_idx ON pairs (iteration_id, rank)`)
				require.NoError(b, err)
			}
			_, err = pool.Exec(ctx, `VACUUM ANALYZE pairs`)
			require.NoError(b, err)
			start := time.Now()
			_, err = store.ScorePairs(ctx, pool, it, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 0.4}, store.TrainSelection)
			require.NoError(b, err)
			times[withIndex] = append(times[withIndex], time.Since(start))
		}
	}
	for withIndex, unit := range map[bool]string{true: "s/median-with-rank-index", false: "s/median-without"} {
		ts := times[withIndex]
		slices.Sort(ts)
		b.ReportMetric(ts[len(ts)/2].Seconds(), unit)
		b.Logf("%s: %v", unit, ts)
	}
}
