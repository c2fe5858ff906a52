package report_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestLengthSectionAndDriftWarning: a run of two iterations whose chosen
// replies grow from 10 to 13 tokens (30%) warns at the default
// scoring.length_drift_warn of 20%, and not at 50%; the scatter draws every
// response and the selected chosen replies, with the fit line.
func TestLengthSectionAndDriftWarning(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	for _, tc := range []struct {
		warn float64
		want string
	}{
		{0.2, "Chosen replies grew longer: the selected pairs' chosen replies average 13.0 tokens, 30% more than the 10.0 of iteration iter0 (scoring.length_drift_warn 0.2)."},
		{0.5, ""},
	} {
		run := fmt.Sprintf("len%g", tc.warn)
		s := config.Defaults()
		s.Scoring.LengthDriftWarn = tc.warn
		settings, err := json.Marshal(config.Settings{Scoring: s.Scoring, Selection: s.Selection, Evolve: s.Evolve, Generation: s.Generation})
		require.NoError(t, err)
		r, err := store.EnsureRun(ctx, pool, run, []byte(`{}`))
		require.NoError(t, err)
		its, err := store.EnsureIterations(ctx, pool, r.ID, []store.IterationSpec{
			{Ordinal: 0, Name: "iter0", PolicyModel: "m", Config: settings},
			{Ordinal: 1, Name: "iter1", PolicyModel: "m", Config: settings}})
		require.NoError(t, err)
		// Per iteration, 4 prompts: chosen (L tokens, reward 2 + prompt
		// number) against rejected (5 tokens, reward 1); every pair is
		// selected (ratio 1), so the selected chosen length is L.
		for i, l := range []int{10, 13} {
			_, err := pool.Exec(ctx, `
				WITH pr AS (INSERT INTO prompts (hash, messages, source)
				            SELECT $1 || '-' || $2::bigint::text || '-' || g, '[{"role":"user","content":"q"}]', 'test' FROM generate_series(1, 4) g
				            RETURNING id, hash),
				ip AS (INSERT INTO iteration_prompts SELECT $2::bigint, id FROM pr),
				c AS (INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward)
				      SELECT $2, id, 0, 'c', $3, -1, 2 + split_part(hash, '-', 3)::int FROM pr RETURNING id, prompt_id, reward),
				x AS (INSERT INTO responses (iteration_id, prompt_id, sample_index, content, token_count, logprob_sum, reward)
				      SELECT $2, id, 1, 'x', 5, -1, 1 FROM pr RETURNING id, prompt_id)
				INSERT INTO pairs (iteration_id, prompt_id, chosen_id, rejected_id, explicit_margin, implicit_margin)
				SELECT $2, c.prompt_id, c.id, x.id, c.reward - 1, 0.1 FROM c JOIN x USING (prompt_id)`,
				run, its[i].ID, l)
			require.NoError(t, err)
			_, err = store.ScorePairs(ctx, pool, its[i].ID, store.ScoreSpec{Metric: "alignment_potential", ImplicitWeight: 1, Ratio: 1}, store.TrainSelection)
			require.NoError(t, err)
		}

		d, err := report.Load(ctx, pool, run, "iter1")
		require.NoError(t, err)
		if tc.want == "" {
			require.Empty(t, d.Warnings)
		} else {
			require.Equal(t, []string{tc.want}, d.Warnings)
		}
		require.Len(t, d.Length.Trend, 2)
		var buf strings.Builder
		require.NoError(t, report.Render(&buf, d))
		if tc.want != "" {
			require.Contains(t, buf.String(), `<p class="warning">⚠ Chosen replies grew longer`)
		}
		for _, f := range report.Figures(d) {
			switch f.ID {
			case "length":
				// 8 responses and 4 selected chosen replies; the fit
				// line over tokens 5 (rewards 1) and 13 (3..6, mean 4.5):
				// slope 3.5/8 = 0.4375.
				require.Equal(t, 12, strings.Count(f.SVG, `class="mark"`))
				require.Contains(t, f.SVG, `<title>fit</title>`)
				require.Contains(t, f.Caption, "0.4375 · tokens")
				require.Contains(t, f.Caption, "scoring.length_control none")
			case "trend-length":
				require.Equal(t, 6, strings.Count(f.SVG, `class="mark"`), "three series over two iterations")
			}
		}
	}
}
