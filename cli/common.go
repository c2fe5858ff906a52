package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

// configFlag adds the -c/--config flag; SELFPLAY_CONFIG is its default.
func configFlag(cmd *cobra.Command, path *string) {
	def := os.Getenv("SELFPLAY_CONFIG")
	if def == "" {
		def = "selfplay.yaml"
	}
	cmd.Flags().StringVarP(path, "config", "c", def, "the YAML schedule (env SELFPLAY_CONFIG)")
}

// logFlags adds --log-format and --log-level and returns a builder.
func logFlags(cmd *cobra.Command) func(w io.Writer) *slog.Logger {
	format := cmd.Flags().String("log-format", "text", "log format: text or json")
	level := cmd.Flags().String("log-level", "info", "log level: debug, info, warn or error")
	return func(w io.Writer) *slog.Logger {
		var lv slog.Level
		_ = lv.UnmarshalText([]byte(*level))
		opts := &slog.HandlerOptions{Level: lv}
		if strings.EqualFold(*format, "json") {
			return slog.New(slog.NewJSONHandler(w, opts))
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
}

// openStore connects to the configured database and, unless migrating,
// checks that its schema is current.
func openStore(ctx context.Context, cfg *config.Config, needSchema bool) (*pgxpool.Pool, error) {
	return openStoreWaiting(ctx, cfg, needSchema, nil)
}

// openStoreWaiting is openStore for the services compose starts alongside
// PostgreSQL (migrate, run, worker): with a logger, it waits up to
// database.connect_wait for the server to come up (store.OpenWaiting).
func openStoreWaiting(ctx context.Context, cfg *config.Config, needSchema bool, log *slog.Logger) (*pgxpool.Pool, error) {
	var pool *pgxpool.Pool
	var err error
	if log != nil {
		pool, err = store.OpenWaiting(ctx, cfg.Database.URL, cfg.Database.ConnectWait, log)
	} else {
		pool, err = store.Open(ctx, cfg.Database.URL)
	}
	if err != nil {
		return nil, err
	}
	if needSchema {
		if err := store.CheckSchema(ctx, pool); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// configured loads the configuration and opens the store with a current
// schema, the start of every command that reads or writes runs.
func configured(ctx context.Context, path string) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	pool, err := openStore(ctx, cfg, true)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// configuredWaiting is configured for migrate, run and worker: it waits
// for PostgreSQL to come up (database.connect_wait), logging to log.
func configuredWaiting(ctx context.Context, path string, log *slog.Logger) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	pool, err := openStoreWaiting(ctx, cfg, true, log)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// configuredRun is configured for a command with runIterationFlags: an
// empty --run becomes the configuration's run.
func configuredRun(ctx context.Context, path string, run *string) (*config.Config, *pgxpool.Pool, error) {
	cfg, pool, err := configured(ctx, path)
	if err == nil && *run == "" {
		*run = cfg.Run
	}
	return cfg, pool, err
}

func printf(cmd *cobra.Command, format string, args ...any) {
	fmt.Fprintf(cmd.OutOrStdout(), format, args...)
}

// runIterationFlags adds --run (default: the configuration's run) and the
// required --iteration.
func runIterationFlags(cmd *cobra.Command, run, iteration *string) {
	cmd.Flags().StringVar(run, "run", "", "run name (default: the configuration's run)")
	cmd.Flags().StringVar(iteration, "iteration", "", "iteration name (required)")
	_ = cmd.MarkFlagRequired("iteration")
}
