package cli

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/bus"
	"github.com/selfplay/selfplay/orchestrator"
	"github.com/selfplay/selfplay/telemetry"
)

func newRunCmd() *cobra.Command {
	var path, metricsAddr string
	var retryFailed bool
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Drive every iteration of the schedule to done (the orchestrator; resumes where it stopped)",
		Args:  cobra.NoArgs,
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&retryFailed, "retry-failed", false, "start failed iterations over (their failed tasks run again)")
	var stageDelay map[string]string
	cmd.Flags().StringToStringVar(&stageDelay, "debug-stage-delay", nil, "fault injection: pause after entering a stage, e.g. scoring=2s")
	_ = cmd.Flags().MarkHidden("debug-stage-delay")
	cmd.Flags().StringVar(&metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. :9464 (default: off)")
	newLogger := logFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx := cmd.Context()
		log := newLogger(os.Stderr)
		if orchestrator.IsTerminal(os.Stderr) {
			// A live progress bar below the log lines.
			log = slog.New(orchestrator.NewTerminal(os.Stderr, log.Handler()))
		}
		delays := map[string]time.Duration{}
		for stage, d := range stageDelay {
			v, err := time.ParseDuration(d)
			if err != nil {
				return fmt.Errorf("--debug-stage-delay %s=%s: %w", stage, d, err)
			}
			delays[stage] = v
		}
		cfg, pool, err := configuredWaiting(ctx, path, log)
		if err != nil {
			return err
		}
		defer pool.Close()
		if err := checkExportDir(cfg.Export.Dir); err != nil {
			return err
		}
		if err := probePolicyScorer(ctx, cfg, log); err != nil {
			return err
		}
		if metricsAddr != "" {
			reg := telemetry.NewRegistry()
			reg.MustRegister(telemetry.NewRunCollector(pool, cfg.Run, log), telemetry.NewLengthCollector(pool, cfg.Run, log))
			if _, err := telemetry.Serve(ctx, metricsAddr, reg, log); err != nil {
				return err
			}
		}
		nc, js, err := bus.Connect(cfg.NATS, "selfplay-orchestrator", log)
		if err != nil {
			return err
		}
		defer nc.Close()
		o := orchestrator.New(cfg, pool, js, orchestrator.Options{RetryFailed: retryFailed, StageDelay: delays}, log)
		return o.Run(ctx)
	}
	return cmd
}
