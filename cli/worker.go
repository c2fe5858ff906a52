package cli

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

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
		Short: "Pull generate and evolve tasks from NATS JetStream and do them (run any number)",
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
		if err := checkReferenceContext(ctx, cfg, clients, log); err != nil {
			return err
		}
		// The reference is probed first: a worker that could never score
		// refuses to start at once, without waiting for an orchestrator.
		cons, err := bindConsumer(ctx, cfg.NATS.Stream, pool, js, log)
		if err != nil && ctx.Err() != nil {
			// Stopped (SIGTERM, SIGINT) while waiting for an orchestrator:
			// nothing was taken, so this is a clean stop like any other.
			log.InfoContext(ctx, "worker stopped before its deployment's consumer existed")
			return nil
		}
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
		w := worker.New(pool, cons, clients, worker.Options{
			Concurrency: cfg.Worker.Concurrency, MaxDeliver: cfg.Worker.MaxDeliver, AckWait: cfg.Worker.AckWait,
			OnTask: metrics.OnTask, OnInFlight: metrics.OnInFlight,
		}, log)
		return w.Run(ctx)
	}
	return cmd
}

// bindConsumer binds to the consumer of this database's deployment, which
// the orchestrator creates: a worker started first waits for it.
func bindConsumer(ctx context.Context, stream string, pool *pgxpool.Pool, js jetstream.JetStream, log *slog.Logger) (jetstream.Consumer, error) {
	dep, err := store.DeploymentToken(ctx, pool)
	if err != nil {
		return nil, err
	}
	logged := false
	for {
		cons, err := bus.BindConsumer(ctx, js, stream, dep)
		if err == nil {
			return cons, nil
		}
		if !errors.Is(err, bus.ErrNoConsumer) {
			return nil, err
		}
		if !logged {
			log.InfoContext(ctx, "waiting for the orchestrator to create this deployment's consumer", "stream", stream,
				"consumer", bus.ConsumerName(dep))
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
