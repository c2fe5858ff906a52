package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

// configGiven says whether the user named the schedule (-c or
// SELFPLAY_CONFIG) rather than leaving the default selfplay.yaml.
func configGiven(cmd *cobra.Command) bool {
	return cmd.Flags().Changed("config") || os.Getenv("SELFPLAY_CONFIG") != ""
}

// databaseOnly loads what migrate, status, export and report need: the
// database URL, from the schedule when there is one (only database.url is
// checked) or from SELFPLAY_DATABASE_URL alone. It opens the store, with a
// current schema unless migrating.
func databaseOnly(cmd *cobra.Command, path string, needSchema bool) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.LoadDatabase(path, configGiven(cmd))
	if err != nil {
		return nil, nil, err
	}
	pool, err := openStore(cmd.Context(), cfg, needSchema)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// databaseOnlyWaiting is databaseOnly for migrate, which compose starts
// alongside PostgreSQL: it waits up to database.connect_wait for the
// server, logging to log what it waits for.
func databaseOnlyWaiting(cmd *cobra.Command, path string, needSchema bool, log *slog.Logger) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := config.LoadDatabase(path, configGiven(cmd))
	if err != nil {
		return nil, nil, err
	}
	pool, err := openStoreWaiting(cmd.Context(), cfg, needSchema, log)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// storedRun finds the run export and report work on: --run, else the
// schedule's run when a schedule was read, else the database's only run.
// A run that does not exist is an error listing the runs that do.
func storedRun(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, name string) (store.Run, error) {
	names, err := runNames(ctx, pool)
	if err != nil {
		return store.Run{}, err
	}
	if name == "" {
		switch {
		case cfg.Path != "":
			name = cfg.Run
		case len(names) == 1:
			name = names[0]
		default:
			return store.Run{}, fmt.Errorf("--run is required without a schedule: %s", listRuns(names))
		}
	}
	r, err := store.GetRun(ctx, pool, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Run{}, fmt.Errorf("run %q does not exist in this database: %s", name, listRuns(names))
	}
	return r, err
}

func runNames(ctx context.Context, pool *pgxpool.Pool) ([]string, error) {
	rows, err := pool.Query(ctx, `SELECT name FROM runs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func listRuns(names []string) string {
	if len(names) == 0 {
		return "it has no runs yet"
	}
	return "its runs are " + strings.Join(names, ", ")
}
