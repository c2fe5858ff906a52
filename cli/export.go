package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/report"
	"github.com/selfplay/selfplay/store"
)

func newExportCmd() *cobra.Command {
	var path, run, iteration, out, metricName, lengthControl string
	var ratio, weight float64
	var count int
	var seed int64
	var save bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Re-export an iteration's selected pairs, optionally selected by another metric or ratio",
		Long: "Writes train.jsonl and manifest.json for one iteration whose selection is final (stage exporting,\n" +
			"training or done). With --metric, --ratio, --count or --length-control the selection is recomputed over the stored\n" +
			"margins for this export only, into its own folder (by-METRIC-RATIO inside the iteration's) in its own\n" +
			"rank order; the stored selection and the orchestrator's export are left alone. Only the database is\n" +
			"needed (SELFPLAY_DATABASE_URL or database.url): without a schedule file the export folder and formats\n" +
			"are the run's, from its stored schedule.",
		Args: cobra.NoArgs,
	}
	configFlag(cmd, &path)
	runIterationFlags(cmd, &run, &iteration)
	cmd.Flags().StringVar(&out, "out", "", "folder for the files (default: export.dir/RUN/ITERATION, and for a reselection its own by-METRIC-RATIO folder inside it)")
	cmd.Flags().StringVar(&metricName, "metric", "", "reselect by this metric: alignment_potential, explicit_margin, implicit_margin, random")
	cmd.Flags().Float64Var(&ratio, "ratio", 0, "reselect this fraction of pairs")
	cmd.Flags().IntVar(&count, "count", 0, "reselect this many pairs")
	cmd.Flags().Float64Var(&weight, "implicit-weight", -1, "w of alignment potential when reselecting (default: the iteration's)")
	cmd.Flags().Int64Var(&seed, "seed", -1, "seed of the random metric when reselecting (default: the iteration's)")
	cmd.Flags().StringVar(&lengthControl, "length-control", "", "reselect with this scoring.length_control: none or residual (default: the iteration's)")
	cmd.Flags().BoolVar(&save, "save-selection", false, "store the recomputed selection in the database (replacing the iteration's selection) and record the export")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		cfg, pool, err := databaseOnly(cmd, path, true)
		if err != nil {
			return err
		}
		defer pool.Close()
		r, err := storedRun(ctx, pool, cfg, run)
		if err != nil {
			return err
		}
		run = r.Name
		// The config hash is the run's own, from its stored schedule: no
		// schedule file is needed.
		stored, err := config.FromSnapshot(r.Config)
		if err != nil {
			return fmt.Errorf("run %q: %w", run, err)
		}
		its, err := store.ListIterations(ctx, pool, r.ID)
		if err != nil {
			return err
		}
		var it *store.Iteration
		for i := range its {
			if its[i].Name == iteration {
				it = &its[i]
			}
		}
		if it == nil {
			return fmt.Errorf("run %q has no iteration %q", run, iteration)
		}
		// Before --save-selection rewrites anything.
		if err := orchestrator.Exportable(*it); err != nil {
			return err
		}
		// The export section is each process's own (docs/configuration.md, "One schedule
		// per run"): a schedule given on the command line decides the
		// folder and formats; without one they are the stored schedule's.
		exp := stored.Export
		if cfg.Path != "" {
			exp = cfg.Export
		}
		spec := orchestrator.ExportSpec{Dir: exp.Dir, Run: run, Iteration: iteration, IterationID: it.ID, OutDir: out,
			ConfigHash: stored.Hash(), Formats: exp.Formats}
		if lengthControl != "" && lengthControl != string(metric.LengthNone) && lengthControl != string(metric.LengthResidual) {
			return fmt.Errorf("--length-control %q: want none or residual", lengthControl)
		}
		if metricName != "" || ratio > 0 || count > 0 || lengthControl != "" {
			var settings struct {
				Scoring struct {
					Implicit       string  `json:"implicit"`
					ImplicitWeight float64 `json:"implicit_weight"`
					LengthControl  string  `json:"length_control"`
				} `json:"scoring"`
				Selection struct {
					Metric string  `json:"metric"`
					Ratio  float64 `json:"ratio"`
					Count  int     `json:"count"`
					Seed   int64   `json:"seed"`
				} `json:"selection"`
			}
			if err := json.Unmarshal(it.Config, &settings); err != nil {
				return err
			}
			ms := metric.Spec{Metric: metric.Metric(settings.Selection.Metric), ImplicitWeight: settings.Scoring.ImplicitWeight,
				Ratio: settings.Selection.Ratio, Count: settings.Selection.Count, Seed: settings.Selection.Seed}
			if ms.Count > 0 {
				ms.Ratio = 0
			}
			if metricName != "" {
				m, err := metric.ParseMetric(metricName)
				if err != nil {
					return err
				}
				ms.Metric = m
			}
			if ratio > 0 {
				ms.Ratio, ms.Count = ratio, 0
			}
			if count > 0 {
				ms.Count, ms.Ratio = count, 0
			}
			if weight >= 0 {
				ms.ImplicitWeight = weight
			}
			if seed >= 0 {
				ms.Seed = seed
			}
			if lengthControl == "" {
				lengthControl = settings.Scoring.LengthControl
			}
			spec.Reselect, spec.Implicit, spec.LengthControl = &ms, settings.Scoring.Implicit, lengthControl
			if save {
				n, err := store.ScorePairs(ctx, pool, it.ID, store.ScoreSpec{Metric: string(ms.Metric), ImplicitWeight: ms.ImplicitWeight,
					Ratio: ms.Ratio, Count: ms.Count, Seed: ms.Seed, Implicit: settings.Scoring.Implicit,
					LengthControl: lengthControl}, store.TrainSelection)
				if err != nil {
					return err
				}
				printf(cmd, "stored a new selection of %d pairs by %s\n", n, ms.Metric)
				spec.Reselect, spec.Record = nil, true
			}
		} else if save {
			return fmt.Errorf("--save-selection needs --metric, --ratio, --count or --length-control")
		}
		if spec.Reselect == nil && out == "" {
			// The stored selection into the orchestrator's own folder: its
			// exports rows follow the files they describe.
			spec.Record = true
		}
		res, err := orchestrator.Export(ctx, pool, spec)
		if err != nil {
			return err
		}
		printf(cmd, "wrote %d pairs to %s (manifest %s)\n", res.Rows, res.Dataset, res.Manifest)
		if spec.Reselect == nil {
			// The report shows the stored selection, so it goes only with
			// an export of that selection.
			reportPath := filepath.Join(res.Dir, "report.html")
			if err := report.WriteFile(ctx, pool, run, iteration, reportPath); err != nil {
				return err
			}
			printf(cmd, "wrote the report to %s\n", reportPath)
		}
		return nil
	}
	return cmd
}
