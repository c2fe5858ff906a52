package cli

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/config"
	"github.com/selfplay/selfplay/store"
)

func newMigrateCmd() *cobra.Command {
	var path, readerRole, readerPasswordEnv string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded database migrations (safe to run concurrently and repeatedly)",
		Long: `Apply the embedded database migrations (safe to run concurrently and repeatedly).

With --reader-role NAME it then creates (or brings back to read-only) a
login role for analysts with SELECT on every table and view of the schema,
and on those later migrations add; its password, if any, comes from the
environment variable named by --reader-password-env.

Only the database is needed: SELFPLAY_DATABASE_URL, or database.url in the
schedule (which may hold nothing else).`,
		Example: `  SELFPLAY_DATABASE_URL=postgres://… selfplay migrate
  selfplay migrate -c selfplay.yaml
  ANALYST_PASSWORD=… selfplay migrate -c selfplay.yaml --reader-role analyst --reader-password-env ANALYST_PASSWORD`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if readerPasswordEnv != "" && readerRole == "" {
				return fmt.Errorf("--reader-password-env needs --reader-role")
			}
			password, err := config.Secret("--reader-password-env", readerPasswordEnv)
			if err != nil {
				return err
			}
			// compose starts migrate alongside PostgreSQL: wait for it.
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			_, pool, err := databaseOnlyWaiting(cmd, path, false, log)
			if err != nil {
				return err
			}
			defer pool.Close()
			applied, err := store.Migrate(cmd.Context(), pool)
			if err != nil {
				return err
			}
			v, err := store.SchemaVersion(cmd.Context(), pool)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				printf(cmd, "schema is up to date at version %d\n", v)
			} else {
				printf(cmd, "applied %d migration(s); schema is at version %d\n", len(applied), v)
			}
			if readerRole == "" {
				return nil
			}
			g, err := store.EnsureReaderRole(cmd.Context(), pool, readerRole, password)
			if err != nil {
				return err
			}
			verb := "updated"
			if g.Created {
				verb = "created"
			}
			pw := "password unchanged"
			if password != "" {
				pw = "password set from " + readerPasswordEnv
			}
			printf(cmd, "%s read-only role %s (%s): SELECT on %d tables and views of schema %s (%s) and on those added later\n",
				verb, g.Role, pw, len(g.Objects), g.Schema, strings.Join(g.Objects, ", "))
			for _, n := range g.Notes {
				printf(cmd, "note: %s\n", n)
			}
			return nil
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&readerRole, "reader-role", "", "also create or update this read-only login role for analysts")
	cmd.Flags().StringVar(&readerPasswordEnv, "reader-password-env", "", "environment variable holding the reader role's password (default: leave the password alone)")
	return cmd
}
