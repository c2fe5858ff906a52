package cli

import (
	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	var path string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the schedule and print it resolved, with defaults and secrets redacted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			out, err := cfg.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	configFlag(check, &path)
	cmd.AddCommand(check)
	return cmd
}
