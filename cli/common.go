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

// logFlags adds --log-format and --log-level and returns a builder. A
// value outside the accepted ones is refused when the flags are parsed.
func logFlags(cmd *cobra.Command) func(w io.Writer) *slog.Logger {
	format := &choice{value: "text", allowed: []string{"text", "json"}}
	level := &choice{value: "info", allowed: []string{"debug", "info", "warn", "error"}}
	cmd.Flags().Var(format, "log-format", "log format: text or json")
	cmd.Flags().Var(level, "log-level", "log level: debug, info, warn or error")
	return func(w io.Writer) *slog.Logger {
		var lv slog.Level
		_ = lv.UnmarshalText([]byte(level.value)) // one of the allowed names
		opts := &slog.HandlerOptions{Level: lv}
		if format.value == "json" {
			return slog.New(slog.NewJSONHandler(w, opts))
		}
		return slog.New(slog.NewTextHandler(w, opts))
	}
}

// choice is a flag value that must be one of allowed (any case).
type choice struct {
	value   string
	allowed []string
}

func (c *choice) String() string { return c.value }
func (c *choice) Type() string   { return "string" }

func (c *choice) Set(v string) error {
	for _, a := range c.allowed {
		if strings.EqualFold(v, a) {
			c.value = a
			return nil
		}
	}
	return fmt.Errorf("expected one of %s", strings.Join(c.allowed, ", "))
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

func printf(cmd *cobra.Command, format string, args ...any) {
	fmt.Fprintf(cmd.OutOrStdout(), format, args...)
}

// runIterationFlags adds --run (default: the schedule's run, or the
// database's only run when no schedule is read) and the required
// --iteration.
func runIterationFlags(cmd *cobra.Command, run, iteration *string) {
	cmd.Flags().StringVar(run, "run", "", "run name (default: the schedule's run; without a schedule, the database's only run)")
	cmd.Flags().StringVar(iteration, "iteration", "", "iteration name (required)")
	_ = cmd.MarkFlagRequired("iteration")
}
