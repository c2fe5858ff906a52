package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/tinylm"
)

// newLMCmd is `selfplay lm`, the built-in language model.
func newLMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lm",
		Short: "The built-in tiny language model (tinylm)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newLMServeCmd(), newLMTrainCmd(), newLMEvalCmd())
	return cmd
}

// newLMServeCmd is `selfplay lm serve`: a vLLM-compatible server of tinylm
// models and the reward function.
func newLMServeCmd() *cobra.Command {
	var (
		addr        string
		modelSpecs  []string
		rewardModel string
		lengthBonus float64
		modelsDir   string
		rescan      time.Duration
		shutdown    time.Duration
		maxModelLen int
		f           tinylm.Faults
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve tinylm models over a vLLM-compatible OpenAI API",
		Long: `Serve tinylm models over a vLLM-compatible OpenAI API: /v1/models,
/v1/chat/completions, /v1/completions, /tokenize, /detokenize, /classify
(the reward function) and /health.

Models are given as NAME=PATH, PATH "builtin" being the embedded model; the
default is tiny-0=builtin. With --models-dir DIR every DIR/NAME.bin.gz is
served as NAME too: the directory is rescanned every --rescan-interval and on
POST /v1/load, so models that lm train writes there (a train hook) are served
within a second, replaced files are reloaded and removed ones dropped. The
fault flags inject latency and errors into the model endpoints, for testing
clients.

With VLLM_ALLOW_RUNTIME_LORA_UPDATING=true (or 1) in the environment, as for
vLLM, POST /v1/load_lora_adapter {"lora_name": NAME, "lora_path": FILE,
"load_inplace": BOOL} serves the tinylm weights file FILE as NAME, in place
of a LoRA adapter, and POST /v1/unload_lora_adapter {"lora_name":
NAME} stops serving it; without the variable the routes answer 404.`,
		Example: `  selfplay lm serve --addr 127.0.0.1:8000 --model tiny-0=builtin --model tiny-1=runs/tiny-1.bin.gz
  selfplay lm serve --addr 0.0.0.0:8000 --models-dir /models
  selfplay lm serve --error-rate 0.1 --rate-limit-rate 0.05 --retry-after 1s --fault-seed 7
  selfplay lm serve --bad-reply no_logprobs --bad-reply-match BADREPLY`,
		Args: cobra.NoArgs,
	}
	newLogger := logFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		log := newLogger(cmd.ErrOrStderr())
		if len(modelSpecs) == 0 {
			modelSpecs = []string{"tiny-0=builtin"}
		}
		models := map[string]*tinylm.Model{}
		for _, spec := range modelSpecs {
			name, path, ok := strings.Cut(spec, "=")
			if !ok || name == "" || path == "" {
				return fmt.Errorf("--model %q: want NAME=PATH (PATH \"builtin\" for the embedded model)", spec)
			}
			if _, dup := models[name]; dup {
				return fmt.Errorf("--model: model name %q given twice", name)
			}
			m, err := tinylm.LoadSpec(path)
			if err != nil {
				return fmt.Errorf("--model %s: %w", spec, err)
			}
			models[name] = m
		}
		if modelsDir != "" && rescan < 0 {
			return fmt.Errorf("--rescan-interval %s: want 0 (only on POST /v1/load) or a positive duration", rescan)
		}
		lora := tinylm.RuntimeLoRAUpdating(os.Getenv(tinylm.RuntimeLoRAUpdatingEnv))
		srv, err := tinylm.NewServer(tinylm.ServerOptions{Models: models, RewardModel: rewardModel, Faults: f, Logger: log,
			ModelsDir: modelsDir, MaxModelLen: maxModelLen, RuntimeLoRAUpdating: lora, RewardLengthBonus: lengthBonus})
		if err != nil {
			return err
		}
		if modelsDir != "" && rescan > 0 {
			go srv.Watch(cmd.Context(), rescan)
		}
		return serveHTTP(cmd.Context(), log, addr, srv, shutdown, srv.ModelNames(), rewardModel)
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", "127.0.0.1:8000", "listen address")
	fl.StringArrayVar(&modelSpecs, "model", nil, "a model to serve as NAME=PATH (repeatable; PATH builtin = embedded; default tiny-0=builtin)")
	fl.StringVar(&rewardModel, "reward-model", tinylm.DefaultRewardModel, "model name of the reward function served by /classify")
	fl.Float64Var(&lengthBonus, "reward-length-bonus", 0, "add this much reward per reply word to /classify (a length-biased reward model, for docs/length.md; 0 = none)")
	fl.StringVar(&modelsDir, "models-dir", "", "also serve every DIR/NAME.bin.gz as NAME, rescanned (see --rescan-interval, POST /v1/load)")
	fl.DurationVar(&rescan, "rescan-interval", time.Second, "how often --models-dir is rescanned (0 = only on POST /v1/load)")
	fl.IntVar(&maxModelLen, "max-model-len", tinylm.DefaultMaxModelLen, "context length in tokens (prompt plus generated), enforced and reported as max_model_len, as vLLM's --max-model-len")
	fl.DurationVar(&shutdown, "shutdown-timeout", 10*time.Second, "how long to let in-flight requests finish on SIGTERM")
	fl.DurationVar(&f.Latency, "latency", 0, "fault: fixed latency added to model requests")
	fl.DurationVar(&f.LatencyJitter, "latency-jitter", 0, "fault: upper bound of a uniform random extra latency")
	fl.DurationVar(&f.ResponseTime, "response-time", 0, "fault: every served model request takes at least this long, its own compute included")
	fl.Float64Var(&f.ErrorRate, "error-rate", 0, "fault: fraction of model requests answered 500")
	fl.Float64Var(&f.RateLimitRate, "rate-limit-rate", 0, "fault: fraction answered 429 with Retry-After")
	fl.DurationVar(&f.RetryAfter, "retry-after", time.Second, "fault: Retry-After of injected 429s (whole seconds, rounded up)")
	fl.Float64Var(&f.HangRate, "hang-rate", 0, "fault: fraction of requests that hang until the client gives up")
	fl.DurationVar(&f.HangMax, "hang-max", 0, "fault: longest hang before a 504 (0 = until the client gives up)")
	fl.Float64Var(&f.MalformedRate, "malformed-rate", 0, "fault: fraction answered 200 with a cut-off JSON body or an HTML page")
	fl.Int64Var(&f.Seed, "fault-seed", 0, "fault: seed of the fault draws")
	fl.BoolVar(&f.IncludeModels, "fault-models", false, "fault: also inject faults into GET /v1/models")
	fl.StringVar(&f.BadReply, "bad-reply", "", "fault: answer 200 with a body wrong in this way: "+strings.Join(tinylm.BadReplyKinds, ", "))
	fl.StringVar(&f.BadReplyMatch, "bad-reply-match", "", "fault: only spoil replies to requests whose JSON body contains this text (default: every request)")
	return cmd
}

// serveHTTP serves h on addr until ctx ends, then shuts down gracefully,
// giving in-flight requests up to grace to finish.
func serveHTTP(ctx context.Context, log *slog.Logger, addr string, h http.Handler, grace time.Duration, models []string, reward string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.InfoContext(ctx, "tinylm serving", "addr", ln.Addr().String(), "models", strings.Join(models, ","), "reward_model", reward)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	log.InfoContext(sctx, "tinylm shutting down", "grace", grace.String())
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}
