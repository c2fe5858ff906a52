package cli

import (
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/report"
)

func newReportCmd() *cobra.Command {
	var path, run, iteration, out string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write an iteration's HTML report (charts of rewards, margins, AP, outcomes, evolution)",
		Long: "Writes a single self-contained HTML file (no network needed to open it) with charts of one\n" +
			"iteration, every number read from PostgreSQL. The orchestrator also writes report.html next\n" +
			"to each export.",
		Args: cobra.NoArgs,
	}
	configFlag(cmd, &path)
	runIterationFlags(cmd, &run, &iteration)
	cmd.Flags().StringVar(&out, "out", "report.html", "the HTML file to write")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		_, pool, err := configuredRun(ctx, path, &run)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := report.WriteFile(ctx, pool, run, iteration, out); err != nil {
			return err
		}
		printf(cmd, "wrote the report of %s/%s to %s\n", run, iteration, out)
		return nil
	}
	return cmd
}
