package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/prompt"
	"github.com/selfplay/selfplay/tinylm"
)

// evalLine is one model's result as `lm eval --json` prints it.
type evalLine struct {
	Model string `json:"model"`
	tinylm.EvalResult
}

// newLMEvalCmd is `selfplay lm eval`: the mean reward of tinylm models on
// a prompt set.
func newLMEvalCmd() *cobra.Command {
	var (
		prompts string
		names   modelNames
		opts    tinylm.EvalOptions
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "eval [flags] MODEL...",
		Short: "Mean reward of tinylm models on a prompt set",
		Long: `Sample --samples replies per prompt from each MODEL and score them with the
built-in reward function (what lm serve's /classify serves): the mean
reward, its standard error over prompts, the mean parts of the reward, the
words per reply and the share of replies that ended before --max-tokens.
Sampling is seeded per reply, so a run gives the same numbers every time.

MODEL is builtin, a weights file, or a model name (see lm train: --model
NAME=PATH, default tiny-0=builtin, and --models-dir DIR for DIR/NAME.bin.gz).
The prompt file is in selfplay's format ({"prompt": …} or {"messages": […]}
lines).`,
		Example: `  selfplay lm eval --prompts examples/heldout.jsonl builtin runs/tiny-1.bin.gz
  selfplay lm eval --prompts examples/heldout.jsonl --models-dir /models tiny-0 tiny-1 tiny-2 --json`,
		Args: cobra.ArbitraryArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return errors.New("name at least one MODEL to evaluate (builtin, a weights file or a model name)")
		}
		if prompts == "" {
			return errors.New("--prompts is required: a prompt file in selfplay's format")
		}
		if opts.Samples < 1 {
			return fmt.Errorf("--samples %d: want at least 1", opts.Samples)
		}
		ps, err := prompt.ReadFile(prompts, 0)
		if err != nil {
			return err
		}
		msgs := make([][]tinylm.Message, len(ps))
		for i, p := range ps {
			for _, m := range p.Messages {
				msgs[i] = append(msgs[i], tinylm.Message{Role: m.Role, Content: m.Content})
			}
		}
		w := cmd.OutOrStdout()
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		if !asJSON {
			fmt.Fprintln(tw, "model\tmean_reward\tstderr\trelevance\tending\trepetition\tlength\twords\tstop_rate\t")
		}
		for _, arg := range args {
			m, _, err := names.load("MODEL", arg)
			if err != nil {
				return err
			}
			res, err := tinylm.Evaluate(m, msgs, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", arg, err)
			}
			if asJSON {
				b, err := json.Marshal(evalLine{Model: arg, EvalResult: res})
				if err != nil {
					return err
				}
				fmt.Fprintln(w, string(b))
				continue
			}
			fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.3f\t\n", arg, res.MeanReward, res.StdErr,
				res.Relevance, res.Ending, res.Repetition, res.Length, res.Words, res.StopRate)
		}
		return tw.Flush()
	}
	fl := cmd.Flags()
	fl.StringVar(&prompts, "prompts", "", "prompt file (required), e.g. examples/heldout.jsonl")
	fl.IntVar(&opts.Samples, "samples", 4, "replies per prompt")
	fl.Float64Var(&opts.Sampling.Temperature, "temperature", 0.8, "sampling temperature (0 = greedy)")
	fl.Float64Var(&opts.Sampling.TopP, "top-p", 0.95, "nucleus mass")
	fl.IntVar(&opts.Sampling.MaxTokens, "max-tokens", 128, "longest reply in tokens")
	fl.Uint64Var(&opts.Seed, "seed", 1, "sampling seed")
	fl.BoolVar(&asJSON, "json", false, "print one JSON object per model instead of a table")
	names.flags(cmd)
	return cmd
}
