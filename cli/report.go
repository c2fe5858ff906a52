package cli

import (
	"os"
	"path/filepath"
	"strings"

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
			"to each export. Only the database is needed (SELFPLAY_DATABASE_URL or database.url).",
		Args: cobra.NoArgs,
	}
	configFlag(cmd, &path)
	runIterationFlags(cmd, &run, &iteration)
	cmd.Flags().StringVar(&out, "out", "report.html", "the HTML file to write, or a folder to write report.html into")
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
		// A folder (existing, or named with a trailing separator) gets
		// report.html inside it.
		if st, err := os.Stat(out); (err == nil && st.IsDir()) || strings.HasSuffix(out, string(os.PathSeparator)) {
			out = filepath.Join(out, "report.html")
		}
		if err := report.WriteFile(ctx, pool, run, iteration, out); err != nil {
			return err
		}
		printf(cmd, "wrote the report of %s/%s to %s\n", run, iteration, out)
		return nil
	}
	return cmd
}
