package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/llm"
	"github.com/selfplay/selfplay/worker"
)

func newWorkerCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Pull generate and evolve tasks from NATS JetStream and do them (run any number)",
		Args:  cobra.NoArgs,
	}
	configFlag(cmd, &path)
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
		nc, js, err := bus.Connect(cfg.NATS, "selfplay-worker", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		cons, err := bus.EnsureStream(ctx, js, bus.StreamOptions{
			Name: cfg.NATS.Stream, AckWait: cfg.Worker.AckWait, MaxDeliver: cfg.Worker.MaxDeliver,
		})
		if err != nil {
			return err
		}
		clients, err := buildClients(cfg, log, llm.Hooks{})
		if err != nil {
			return err
		}
		w := worker.New(pool, cons, clients, worker.Options{
			Concurrency: cfg.Worker.Concurrency, MaxDeliver: cfg.Worker.MaxDeliver, AckWait: cfg.Worker.AckWait,
		}, log)
		return w.Run(ctx)
	}
	return cmd
}
