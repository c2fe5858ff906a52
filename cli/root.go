// Package cli holds the cobra commands of the selfplay binary. Each command
// lives in its own file and is registered in NewRoot; the commands parse
// flags, load configuration and hand off to the packages that do the work.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// NewRoot builds the selfplay command tree.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "selfplay",
		Short: "Self-play preference data generation selected by alignment potential",
		Long: `selfplay samples responses from the current policy through any OpenAI-compatible server,
rewards them, pairs best against worst, selects the pairs by alignment potential, evolves
the most useful prompts and exports a dataset per iteration; every row is kept in PostgreSQL
and work travels over NATS JetStream to any number of workers.

Start with the README. Every command and flag: docs/operations.md ("Commands");
every schedule key with its default: docs/configuration.md.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		// commands: one line each, kept sorted
		newConfigCmd(),
		newExportCmd(),
		newHealthCmd(),
		newLMCmd(),
		newMigrateCmd(),
		newReportCmd(),
		newRunCmd(),
		newWorkerCmd(),
		newScoreCmd(),
		newStatusCmd(),
	)
	return root
}

// Execute runs the command line and returns the process exit code. SIGINT and
// SIGTERM cancel the command's context so long-running commands drain cleanly.
func Execute() int {
	note, err := runAsOwner()
	if err != nil {
		fmt.Fprintln(os.Stderr, "selfplay:", err)
		return 1
	}
	if note != "" {
		fmt.Fprintln(os.Stderr, "selfplay:", note)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := NewRoot().ExecuteContext(ctx); err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		fmt.Fprintln(os.Stderr, "selfplay:", err)
		return 1
	}
	return 0
}
