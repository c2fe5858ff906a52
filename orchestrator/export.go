package orchestrator

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/selfplay/selfplay/internal/atomicfile"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/store"
)

// ExportSpec says what to export and where.
type ExportSpec struct {
	// Dir is export.dir; files go to Dir/Run/Iteration/ unless OutDir is set.
	Dir, Run, Iteration string
	IterationID         int64
	// OutDir overrides the folder (selfplay export --out).
	OutDir string
	// ConfigHash is recorded in the manifest.
	ConfigHash string
	// Record writes the exports rows (the orchestrator's own export).
	Record bool
	// Reselect, when non-nil, exports the selection this spec would make
	// over the stored margins instead of the stored selection, without
	// changing the stored rows.
	Reselect *metric.Spec
	// Implicit is the implicit margin form used by Reselect (simpo|dpo).
	Implicit string
	// LengthControl is the scoring.length_control of Reselect: "none" ("")
	// or "residual" (the explicit margins with the iteration's stored
	// length effect removed; the raw ones when its fit is undefined).
	LengthControl string
	// Formats are export.formats; train.jsonl is always written, "parquet"
	// adds train.parquet with the same rows.
	Formats []string
}

// Row is one line of train.jsonl: TRL's conversational preference format
// (prompt, chosen, rejected as message lists) plus score columns.
type Row struct {
	Prompt             []prompt.Message `json:"prompt"`
	Chosen             []prompt.Message `json:"chosen"`
	Rejected           []prompt.Message `json:"rejected"`
	PromptID           int64            `json:"prompt_id"`
	ScoreChosen        float64          `json:"score_chosen"`
	ScoreRejected      float64          `json:"score_rejected"`
	ExplicitMargin     float64          `json:"explicit_margin"`
	ImplicitMargin     float64          `json:"implicit_margin"`
	AlignmentPotential float64          `json:"alignment_potential"`
	RefChosenLogps     *float64         `json:"ref_chosen_logps,omitempty"`
	RefRejectedLogps   *float64         `json:"ref_rejected_logps,omitempty"`
}

// Manifest describes an export.
type Manifest struct {
	Run            string              `json:"run"`
	Iteration      string              `json:"iteration"`
	PolicyModel    string              `json:"policy_model"`
	ReferenceModel string              `json:"reference_model,omitempty"`
	ConfigHash     string              `json:"config_hash"`
	CreatedAt      time.Time           `json:"created_at"`
	Counts         Counts              `json:"counts"`
	Metric         MetricSummary       `json:"metric"`
	Files          map[string]FileInfo `json:"files"`
	// LearningCheck is what the policy trained on this export learned of
	// the iteration's pairs (docs/learning.md); absent until the check ran.
	LearningCheck *metric.LearningSummary `json:"learning_check,omitempty"`
}

// Counts tally an iteration's outcomes.
type Counts struct {
	Prompts     int64            `json:"prompts"`
	TasksDone   int64            `json:"tasks_done"`
	TasksFailed int64            `json:"tasks_failed"`
	Pairs       int64            `json:"pairs"`
	NoPair      map[string]int64 `json:"no_pair"`
	Selected    int64            `json:"selected"`
}

// MetricSummary summarises the margins of all pairs and of the selection.
type MetricSummary struct {
	Name               string `json:"name"`
	AllPairs           Stats  `json:"all_pairs"`
	Selected           Stats  `json:"selected"`
	ReselectedByExport bool   `json:"reselected_by_export,omitempty"`
}

// Stats are means of the selection-relevant quantities.
type Stats struct {
	N                      int64    `json:"n"`
	MeanExplicitMargin     *float64 `json:"mean_explicit_margin"`
	MeanAbsImplicitMargin  *float64 `json:"mean_abs_implicit_margin"`
	MeanAlignmentPotential *float64 `json:"mean_alignment_potential"`
	MeanChosenReward       *float64 `json:"mean_chosen_reward"`
}

// FileInfo is one exported file.
type FileInfo struct {
	Rows   int64  `json:"rows"`
	SHA256 string `json:"sha256"`
}

// ExportResult is what Export wrote.
type ExportResult struct {
	Dir      string
	Dataset  string
	Manifest string
	// Parquet is train.parquet's path, "" when not written.
	Parquet string
	Rows    int64
}

// Export writes train.jsonl (the selected pairs, best first) and
// manifest.json for an iteration, streaming rows from PostgreSQL. Each file
// is written to a temporary name and renamed, so a reader never sees half a
// file. With Record it also upserts the exports rows.
func Export(ctx context.Context, pool *pgxpool.Pool, spec ExportSpec) (ExportResult, error) {
	it, err := store.GetIteration(ctx, pool, spec.IterationID)
	if err != nil {
		return ExportResult{}, err
	}
	if err := Exportable(it); err != nil {
		return ExportResult{}, err
	}
	dir := spec.OutDir
	if dir == "" {
		dir = filepath.Join(spec.Dir, spec.Run, spec.Iteration)
		if spec.Reselect != nil {
			dir = filepath.Join(dir, ReselectFolder(*spec.Reselect)+lengthSuffix(spec.LengthControl))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ExportResult{}, fmt.Errorf("export folder: %w", err)
	}
	res := ExportResult{Dir: dir, Dataset: filepath.Join(dir, "train.jsonl"), Manifest: filepath.Join(dir, "manifest.json")}

	var sel []int64 // the selected pair ids in rank order, when reselecting
	if spec.Reselect != nil {
		if sel, err = reselect(ctx, pool, spec.IterationID, *spec.Reselect, spec.Implicit, spec.LengthControl); err != nil {
			return res, err
		}
	}
	var rows int64
	sum, err := writeAtomic(res.Dataset, func(w io.Writer) error {
		rows, err = writeRows(ctx, pool, spec.IterationID, sel, w)
		return err
	})
	if err != nil {
		return res, err
	}
	res.Rows = rows

	m := Manifest{Run: spec.Run, Iteration: spec.Iteration, PolicyModel: it.PolicyModel, ReferenceModel: it.ReferenceModel,
		ConfigHash: spec.ConfigHash, CreatedAt: time.Now().UTC(),
		Files: map[string]FileInfo{"train.jsonl": {Rows: rows, SHA256: sum}}}
	if slices.Contains(spec.Formats, "parquet") {
		res.Parquet = filepath.Join(dir, "train.parquet")
		if m.Files["train.parquet"], err = writeParquet(res.Dataset, res.Parquet, it.ReferenceModel != ""); err != nil {
			return res, err
		}
	}
	if m.Counts, err = countOutcomes(ctx, pool, spec.IterationID); err != nil {
		return res, err
	}
	m.Counts.Selected = rows
	var settings struct {
		Selection struct {
			Metric string `json:"metric"`
		} `json:"selection"`
	}
	_ = json.Unmarshal(it.Config, &settings)
	m.Metric.Name = settings.Selection.Metric
	if spec.Reselect != nil {
		m.Metric.Name, m.Metric.ReselectedByExport = string(spec.Reselect.Metric), true
	}
	if m.Metric.AllPairs, err = pairStats(ctx, pool, spec.IterationID, false, nil); err != nil {
		return res, err
	}
	if m.Metric.Selected, err = pairStats(ctx, pool, spec.IterationID, true, sel); err != nil {
		return res, err
	}
	if m.LearningCheck, err = learningForManifest(ctx, pool, spec.IterationID); err != nil {
		return res, err
	}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return res, err
	}
	msum, err := writeAtomic(res.Manifest, func(w io.Writer) error { _, err := w.Write(append(mb, '\n')); return err })
	if err != nil {
		return res, err
	}
	if spec.Record {
		b := &pgx.Batch{}
		for _, f := range []struct {
			kind, path, sum string
			rows            int64
		}{{"jsonl", res.Dataset, sum, rows}, {"manifest", res.Manifest, msum, 1}, {"parquet", res.Parquet, m.Files["train.parquet"].SHA256, rows}} {
			if f.path == "" {
				continue
			}
			b.Queue(`INSERT INTO exports (iteration_id, kind, path, rows, sha256) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (iteration_id, kind) DO UPDATE SET path = EXCLUDED.path, rows = EXCLUDED.rows,
				sha256 = EXCLUDED.sha256, created_at = now()`, spec.IterationID, f.kind, f.path, f.rows, f.sum)
		}
		if err := pool.SendBatch(ctx, b).Close(); err != nil {
			return res, fmt.Errorf("record exports: %w", err)
		}
	}
	return res, nil
}

// Exportable refuses an iteration whose selection is not final: one that
// has not reached the exporting stage, or that failed (its stages after the
// failure never ran; --retry-failed finishes it). Export checks it.
func Exportable(it store.Iteration) error {
	switch it.Stage {
	case store.StageExporting, store.StageTraining, store.StageChecking, store.StageDone:
		return nil
	case store.StageFailed:
		return fmt.Errorf("iteration %s failed (%s): its selection may be incomplete, so it is not exported; fix the cause and run again with --retry-failed", it.Name, deref(it.Error))
	}
	return fmt.Errorf("iteration %s is still %s: it can be exported once its selection is final (stage exporting, training, checking or done)", it.Name, it.Stage)
}

// ReselectFolder names the folder a reselection is exported to, inside the
// iteration's export folder, when no --out is given: by-METRIC-RATIO (or
// by-METRIC-nCOUNT), with the weight of alignment_potential (-wW) and the
// seed of random (-seedS), e.g. by-alignment_potential-0.4-w2.5. The
// orchestrator's own export beside it is never overwritten.
func ReselectFolder(spec metric.Spec) string {
	name := "by-" + string(spec.Metric) + "-" + strconv.FormatFloat(spec.Ratio, 'g', -1, 64)
	if spec.Count > 0 {
		name = "by-" + string(spec.Metric) + "-n" + strconv.Itoa(spec.Count)
	}
	switch spec.Metric {
	case metric.AlignmentPotential:
		name += "-w" + strconv.FormatFloat(spec.ImplicitWeight, 'g', -1, 64)
	case metric.Random:
		name += "-seed" + strconv.FormatInt(spec.Seed, 10)
	}
	return name
}

// lengthSuffix names a residual length control in a reselection's folder.
func lengthSuffix(control string) string {
	if control == string(metric.LengthResidual) {
		return "-length_residual"
	}
	return ""
}

// writeAtomic writes a file atomically (internal/atomicfile) and returns
// the content's sha256.
func writeAtomic(path string, fill func(io.Writer) error) (string, error) {
	h := sha256.New()
	err := atomicfile.Write(path, func(w io.Writer) error { return fill(io.MultiWriter(w, h)) })
	if err != nil {
		return "", err
	}
	return hexSum(h), nil
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

const exportQuery = `
SELECT p.id, p.prompt_id, pr.messages, c.content, x.content, c.reward, x.reward,
       p.explicit_margin, p.implicit_margin, coalesce(p.alignment_potential, 'NaN'),
       c.ref_logprob_sum, x.ref_logprob_sum, p.selected
FROM pairs p
JOIN prompts pr ON pr.id = p.prompt_id
JOIN responses c ON c.id = p.chosen_id
JOIN responses x ON x.id = p.rejected_id
WHERE p.iteration_id = $1 AND p.selected
ORDER BY p.rank NULLS LAST, p.id`

// reselectQuery reads the pairs of a reselection, in its own rank order.
const reselectQuery = `
SELECT p.id, p.prompt_id, pr.messages, c.content, x.content, c.reward, x.reward,
       p.explicit_margin, p.implicit_margin, coalesce(p.alignment_potential, 'NaN'),
       c.ref_logprob_sum, x.ref_logprob_sum, true
FROM unnest($2::bigint[]) WITH ORDINALITY AS s(id, rnk)
JOIN pairs p ON p.id = s.id AND p.iteration_id = $1
JOIN prompts pr ON pr.id = p.prompt_id
JOIN responses c ON c.id = p.chosen_id
JOIN responses x ON x.id = p.rejected_id
ORDER BY s.rnk`

// writeRows streams the selected pairs as JSON lines, best first. With sel
// (a reselection's pair ids in its rank order), the rows are those, in that
// order, instead of the stored selection.
func writeRows(ctx context.Context, pool *pgxpool.Pool, iterationID int64, sel []int64, w io.Writer) (int64, error) {
	query, args := exportQuery, []any{iterationID}
	if sel != nil {
		query, args = reselectQuery, append(args, sel)
	}
	rows, err := pool.Query(ctx, query, args...)
	if err != nil {
		return 0, fmt.Errorf("read selected pairs: %w", err)
	}
	defer rows.Close()
	enc := json.NewEncoder(w)
	var n int64
	for rows.Next() {
		var (
			pairID   int64
			r        Row
			chosen   string
			rejected string
			cr, xr   *float64
			selected bool
		)
		if err := rows.Scan(&pairID, &r.PromptID, &r.Prompt, &chosen, &rejected, &cr, &xr,
			&r.ExplicitMargin, &r.ImplicitMargin, &r.AlignmentPotential, &r.RefChosenLogps, &r.RefRejectedLogps, &selected); err != nil {
			return n, err
		}
		r.Chosen = []prompt.Message{{Role: "assistant", Content: chosen}}
		r.Rejected = []prompt.Message{{Role: "assistant", Content: rejected}}
		if cr != nil {
			r.ScoreChosen = *cr
		}
		if xr != nil {
			r.ScoreRejected = *xr
		}
		if err := enc.Encode(r); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func countOutcomes(ctx context.Context, pool *pgxpool.Pool, iterationID int64) (Counts, error) {
	c := Counts{NoPair: map[string]int64{}}
	err := pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM iteration_prompts WHERE iteration_id = $1),
		(SELECT count(*) FROM tasks WHERE iteration_id = $1 AND kind = 'generate' AND status = 'done'),
		(SELECT count(*) FROM tasks WHERE iteration_id = $1 AND kind = 'generate' AND status = 'failed'),
		(SELECT count(*) FROM pairs WHERE iteration_id = $1)`, iterationID).
		Scan(&c.Prompts, &c.TasksDone, &c.TasksFailed, &c.Pairs)
	if err != nil {
		return c, err
	}
	rows, err := pool.Query(ctx, `SELECT outcome, count(*) FROM tasks
		WHERE iteration_id = $1 AND kind = 'generate' AND status = 'done' AND outcome <> 'paired'
		GROUP BY outcome`, iterationID)
	if err != nil {
		return c, err
	}
	var reason string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&reason, &n}, func() error { c.NoPair[reason] = n; return nil })
	return c, err
}

// pairStats summarises all pairs, or only the selected ones: the stored
// selection, or sel when it is given.
func pairStats(ctx context.Context, pool *pgxpool.Pool, iterationID int64, onlySelected bool, sel []int64) (Stats, error) {
	filter, args := "true", []any{iterationID}
	switch {
	case onlySelected && sel != nil:
		filter, args = "p.id = ANY($2)", append(args, sel)
	case onlySelected:
		filter = "p.selected"
	}
	var s Stats
	err := pool.QueryRow(ctx, `SELECT count(*), avg(p.explicit_margin), avg(abs(p.implicit_margin)),
		avg(p.alignment_potential), avg(c.reward)
		FROM pairs p JOIN responses c ON c.id = p.chosen_id
		WHERE p.iteration_id = $1 AND `+filter, args...).
		Scan(&s.N, &s.MeanExplicitMargin, &s.MeanAbsImplicitMargin, &s.MeanAlignmentPotential, &s.MeanChosenReward)
	return s, err
}

// reselect computes in Go which pairs spec would select over the stored
// margins, leaving the stored selection alone, and returns their ids in the
// reselection's rank order. With the residual length control the explicit
// margins are metric.ResidualMargin with the iteration's stored slope, as
// store.ScorePairs takes them in SQL.
func reselect(ctx context.Context, pool *pgxpool.Pool, iterationID int64, spec metric.Spec, implicit, lengthControl string) ([]int64, error) {
	col := "implicit_margin"
	if implicit == "dpo" {
		col = "dpo_margin"
	}
	var slope *float64
	if lengthControl == string(metric.LengthResidual) {
		fit, _, err := store.IterationLength(ctx, pool, iterationID)
		if err != nil {
			return nil, fmt.Errorf("residual length control: %w (the iteration has no stored length fit)", err)
		}
		if fit.Defined {
			slope = &fit.Slope
		}
	}
	rows, err := pool.Query(ctx, `SELECT id, explicit_margin, `+col+`, chosen_tokens, rejected_tokens FROM pairs
		WHERE iteration_id = $1 AND `+col+` IS NOT NULL ORDER BY id`, iterationID)
	if err != nil {
		return nil, err
	}
	var items []metric.Item
	var it metric.Item
	var chosen, rejected int
	if _, err := pgx.ForEachRow(rows, []any{&it.ID, &it.ExplicitMargin, &it.ImplicitMargin, &chosen, &rejected}, func() error {
		if slope != nil {
			it.ExplicitMargin = metric.ResidualMargin(it.ExplicitMargin, *slope, chosen, rejected)
		}
		items = append(items, it)
		return nil
	}); err != nil {
		return nil, err
	}
	scored, err := metric.Score(items, spec)
	if err != nil {
		return nil, err
	}
	if err := metric.Select(scored, spec); err != nil {
		return nil, err
	}
	rankOf := make(map[int64]int, len(scored))
	for _, s := range scored {
		rankOf[s.ID] = s.Rank
	}
	sel := make([]int64, 0, len(scored))
	for _, s := range scored {
		if s.Selected {
			sel = append(sel, s.ID)
		}
	}
	slices.SortFunc(sel, func(a, b int64) int { return rankOf[a] - rankOf[b] })
	return sel, nil
}
