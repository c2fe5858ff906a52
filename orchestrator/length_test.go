package orchestrator

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/store/storetest"
)

// TestScoringLogsLength: scoring logs the length fit; an iteration whose
// replies all have one length logs, at warning level under residual, that
// the slope is undefined and the raw margin was scored; chosen replies of
// the selected pairs that double in length from one iteration to the next
// log a warning with both lengths, unless length_drift_warn is 0.
func TestScoringLogsLength(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := storetest.NewPool(t)
	for _, warn := range []float64{0.2, 0} {
		var logs bytes.Buffer
		run, err := store.EnsureRun(ctx, pool, "len"+map[bool]string{true: "on", false: "off"}[warn > 0], []byte(`{}`))
		require.NoError(t, err)
		its, err := store.EnsureIterations(ctx, pool, run.ID, []store.IterationSpec{
			{Ordinal: 0, Name: "iter0", PolicyModel: "m", Config: []byte(`{}`)},
			{Ordinal: 1, Name: "iter1", PolicyModel: "m", Config: []byte(`{}`)}})
		require.NoError(t, err)
		c := config.Defaults()
		cfg := config.Iteration{Generation: c.Generation, Scoring: c.Scoring, Selection: c.Selection, Evolve: c.Evolve}
		cfg.Scoring.LengthControl, cfg.Scoring.LengthDriftWarn, cfg.Selection.Ratio = "residual", warn, 1
		o := &Orchestrator{cfg: &c, pool: pool, log: slog.New(slog.NewJSONHandler(&logs, nil))}

		// iter0: every reply one token long. iter1: chosen replies two
		// tokens long, rejected one: the selected chosen length doubles.
		storetest.SeedPairs(t, pool, its[0].ID, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
		storetest.SeedPairs(t, pool, its[1].ID, []float64{1, 2, 3}, []float64{0.1, 0.2, 0.3})
		_, err = pool.Exec(ctx, `UPDATE responses SET token_count = 2 WHERE iteration_id = $1 AND sample_index = 0`, its[1].ID)
		require.NoError(t, err)
		_, err = pool.Exec(ctx, `UPDATE pairs SET chosen_tokens = 2 WHERE iteration_id = $1`, its[1].ID)
		require.NoError(t, err)
		for _, it := range its {
			require.NoError(t, (&iterationState{o: o, run: run, it: it, cfg: cfg}).score(ctx))
		}

		var lines []map[string]any
		for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
			var m map[string]any
			require.NoError(t, json.Unmarshal(l, &m))
			if m["msg"] != "pairs selected for training" {
				lines = append(lines, m)
			}
		}
		require.Equal(t, "reward on length: slope undefined", lines[0]["msg"])
		require.Equal(t, "WARN", lines[0]["level"], "residual was asked for and could not act")
		require.Equal(t, "every reply has the same length (1 token): slope undefined, raw margin scored", lines[0]["note"])
		require.Equal(t, false, lines[0]["residual_applied"])
		require.Equal(t, "reward on length", lines[1]["msg"])
		require.Equal(t, "iter1", lines[1]["iteration"])
		require.Equal(t, true, lines[1]["residual_applied"])
		if warn == 0 {
			require.Len(t, lines, 2, "no drift warning when length_drift_warn is 0")
			continue
		}
		require.Len(t, lines, 3)
		w := lines[2]
		require.Equal(t, "chosen replies grew longer", w["msg"])
		require.Equal(t, "WARN", w["level"])
		require.Equal(t, 1.0, w["previous_selected_chosen_tokens"])
		require.Equal(t, 2.0, w["selected_chosen_tokens"])
		require.Equal(t, 1.0, w["growth"])
	}
}
