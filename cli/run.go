package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/orchestrator"
)

func newRunCmd() *cobra.Command {
	var path string
	var retryFailed bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Drive every iteration of the schedule to done (the orchestrator; resumes where it stopped)",
		Args:  cobra.NoArgs,
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&retryFailed, "retry-failed", false, "start failed iterations over (their failed tasks run again)")
	newLogger := logFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		log := newLogger(os.Stderr)
		cfg, err := loadConfig(path)
		if err != nil {
			return err
		}
		pool, err := openStore(ctx, cfg, true)
		if err != nil {
			return err
		}
		defer pool.Close()
		nc, js, err := bus.Connect(cfg.NATS, "selfplay-orchestrator", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		if _, err := bus.EnsureStream(ctx, js, bus.StreamOptions{
			Name: cfg.NATS.Stream, AckWait: cfg.Worker.AckWait, MaxDeliver: cfg.Worker.MaxDeliver,
		}); err != nil {
			return err
		}
		o := orchestrator.New(cfg, pool, bus.NewPublisher(js, cfg.NATS.Stream), orchestrator.Options{RetryFailed: retryFailed}, log)
		return o.Run(ctx)
	}
	return cmd
}
