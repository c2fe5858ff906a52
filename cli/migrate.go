package cli

import (
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/store"
)

func newMigrateCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply the embedded database migrations (safe to run concurrently and repeatedly)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			pool, err := openStore(cmd.Context(), cfg, false)
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
			return nil
		},
	}
	configFlag(cmd, &path)
	return cmd
}
