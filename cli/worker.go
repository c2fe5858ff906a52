package cli

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/store"
	"github.com/selfplay/selfplay/telemetry"
	"github.com/selfplay/selfplay/worker"
)

func newWorkerCmd() *cobra.Command {
	var path, metricsAddr string
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Pull generate, evolve and learn tasks from NATS JetStream and do them (run any number)",
		Args:  cobra.NoArgs,
	}
	configFlag(cmd, &path)
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. :9464 (default: off)")
	newLogger := logFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		log := newLogger(os.Stderr)
		cfg, pool, err := configuredWaiting(ctx, path, log)
		if err != nil {
			return err
		}
		defer pool.Close()
		nc, js, err := bus.Connect(cfg.NATS, "selfplay-worker", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		reg := telemetry.NewRegistry()
		metrics := telemetry.NewWorkerMetrics(reg)
		clients, err := buildClients(cfg, log, metrics.LLMHooks())
		if err != nil {
			return err
		}
		if err := checkRewardTemplate(ctx, clients.Reward, log); err != nil {
			return err
		}
		if err := probeReference(ctx, cfg, clients, log); err != nil {
			return err
		}
		if err := probePolicyScorer(ctx, cfg, log); err != nil {
			return err
		}
		if err := checkReferenceContext(ctx, cfg, clients, log); err != nil {
			return err
		}
		dep, err := store.DeploymentToken(ctx, pool)
		if err != nil {
			return err
		}
		clients.Policy = metrics.Sampler("generate", clients.Policy)
		clients.Evolver = metrics.Sampler("evolve", clients.Evolver)
		if metricsAddr != "" {
			if _, err := telemetry.Serve(ctx, metricsAddr, reg, log); err != nil {
				return err
			}
		}
		w := worker.New(pool, bus.NewQueues(js, cfg.NATS.Stream, dep), clients, worker.Options{
			Concurrency: cfg.Worker.Concurrency, MaxDeliver: cfg.Worker.MaxDeliver, AckWait: cfg.Worker.AckWait,
			OnTask: metrics.OnTask, OnInFlight: metrics.OnInFlight,
		}, log)
		return w.Run(ctx)
	}
	return cmd
}
