package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/selfplay/selfplay/metric"
	"github.com/selfplay/selfplay/tinylm"
)

// newLMTrainCmd is `selfplay lm train`: preference training of a tinylm
// model on an export.
func newLMTrainCmd() *cobra.Command {
	var (
		data, init, ref, out, final, loss string
		names                             modelNames
		opts                              tinylm.PreferenceOptions
	)
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Train a tinylm model on preference pairs (DPO, SimPO, ε-DPO)",
		Long: `Train a tinylm model on a preference dataset (train.jsonl of an export,
or any TRL-format preference JSONL) with exact gradients of the chosen loss:

  dpo          −log σ(β·[(lp_w − ref_w) − (lp_l − ref_l)])              default β 0.1
  simpo        −log σ(β·[lp_w/|y_w| − lp_l/|y_l|] − γ), no reference    default β 2, γ 0.5
  epsilon-dpo  DPO with a per-pair β_i = β/(1 + ε·s_i) from the exact
               perturbation step over full-vocabulary logits; the base β
               moves to the mean β_i of every batch                      default β 0.01, ε 0.01

lp is the summed token log-probability of a reply (its <|end|> included)
under the model being trained, ref the same under the frozen reference
(default: the initial model). Adam on shuffled batches; the same data,
models and --seed give the same weights. Every epoch prints the loss and
the reward accuracy (the share of pairs whose implicit reward prefers the
chosen reply), measured on each batch before its update. The model is
written atomically (temporary file, then rename).

--init, --ref and --out take "builtin", a weights file, or a model name:
--model NAME=PATH names files (default tiny-0=builtin, as lm serve), and
with --models-dir DIR a bare NAME is DIR/NAME.bin.gz — the files
lm serve --models-dir serves as NAME. After the schedule's last iteration
the orchestrator passes hooks.final_model as {next_model}, or an empty one
when that is unset; --final-model names the model trained then.`,
		Example: `  selfplay lm train --data exports/demo/iter0/train.jsonl --init builtin --out tiny-1.bin.gz
  selfplay lm train --data train.jsonl --init tiny-1.bin.gz --ref builtin --loss epsilon-dpo --beta 0.1 --out tiny-2.bin.gz
  # as a train hook, next to lm serve --models-dir /models:
  selfplay lm train --models-dir /models --data {dataset} --init {policy_model} --out {next_model}`,
		Args: cobra.NoArgs,
	}
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		fl := cmd.Flags()
		w := cmd.OutOrStdout()
		var err error
		if opts.Loss, err = tinylm.ParseLoss(loss); err != nil {
			return fmt.Errorf("--loss: %w", err)
		}
		if fl.Changed("gamma") && opts.Loss != tinylm.LossSimPO {
			return fmt.Errorf("--gamma is SimPO's margin; it has no effect with --loss %s", opts.Loss)
		}
		if opts.Loss != tinylm.LossSimPO {
			opts.Gamma = 0 // unused; keeps the printed options honest
		}
		if fl.Changed("epsilon") && opts.Loss != tinylm.LossEpsilonDPO {
			return fmt.Errorf("--epsilon belongs to ε-DPO; it has no effect with --loss %s", opts.Loss)
		}
		if fl.Changed("ref") && opts.Loss == tinylm.LossSimPO {
			return errors.New("--ref has no effect with --loss simpo, which needs no reference model")
		}
		switch {
		case opts.Epochs < 1:
			return fmt.Errorf("--epochs %d: want at least 1", opts.Epochs)
		case opts.BatchSize < 1:
			return fmt.Errorf("--batch-size %d: want at least 1", opts.BatchSize)
		case !(opts.LearningRate > 0):
			return fmt.Errorf("--lr %g: want a positive learning rate", opts.LearningRate)
		case fl.Changed("beta") && !(opts.Beta > 0):
			return fmt.Errorf("--beta %g: want a positive number", opts.Beta)
		}
		if data == "" {
			return errors.New("--data is required: the preference JSONL (an export's train.jsonl)")
		}
		if out == "" {
			if final == "" {
				return errors.New("--out is empty (the orchestrator passes an empty {next_model} after the last iteration): set hooks.final_model in the schedule, or give --final-model NAME, to name the model trained then")
			}
			out = final
		}
		outPath := names.outPath(out)
		prefs, err := tinylm.ReadPreferencesFile(data)
		if err != nil {
			return err
		}
		policy, initSpec, err := names.load("--init", init)
		if err != nil {
			return err
		}
		var refModel *tinylm.Model
		refSpec := "none"
		if opts.Loss != tinylm.LossSimPO {
			if ref == "" {
				ref = init
			}
			if refModel, refSpec, err = names.load("--ref", ref); err != nil {
				return err
			}
		}
		pairs := make([]tinylm.PreferencePair, len(prefs))
		for i, p := range prefs {
			if pairs[i], err = policy.Tok.EncodePreference(p); err != nil {
				return fmt.Errorf("%s: pair %d: %w", data, i+1, err)
			}
		}
		before, err := tinylm.PreferenceLoss(policy, refModel, pairs, opts)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "lm train: %d pairs from %s; loss %s, beta %g%s; init %s, ref %s\n",
			len(pairs), data, opts.Loss, before.Beta, lossExtras(opts), initSpec, refSpec)
		opts.Progress = func(s tinylm.EpochStats) {
			fmt.Fprintf(w, "epoch %d/%d  loss %.4f  reward_accuracy %.3f  reward_margin %.4f", s.Epoch, opts.Epochs, s.Loss, s.RewardAccuracy, s.RewardMargin)
			if opts.Loss == tinylm.LossEpsilonDPO {
				fmt.Fprintf(w, "  beta %.5f  relaxed %d  tightened %d", s.Beta, s.Relaxed, s.Tightened)
			}
			fmt.Fprintln(w)
		}
		start := time.Now()
		if _, err := tinylm.TrainPreference(policy, refModel, pairs, opts); err != nil {
			return err
		}
		if dir := filepath.Dir(outPath); dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return fmt.Errorf("--out: %w", err)
			}
		}
		if err := policy.Save(outPath); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote %s in %s\n", outPath, time.Since(start).Round(time.Millisecond))
		return nil
	}
	fl := cmd.Flags()
	fl.StringVar(&data, "data", "", "preference JSONL to train on (required): an export's train.jsonl or TRL-format rows")
	fl.StringVar(&init, "init", "", "model to start from (required): builtin, a weights file or a model name")
	fl.StringVar(&ref, "ref", "", "frozen reference model for dpo and epsilon-dpo (default: --init)")
	fl.StringVar(&out, "out", "", "where to write the trained model: a weights file or, with --models-dir, a model name")
	fl.StringVar(&final, "final-model", "", "model name (or file) used when --out is empty, i.e. after the schedule's last iteration")
	fl.StringVar(&loss, "loss", string(tinylm.LossDPO), "dpo, simpo or epsilon-dpo")
	fl.Float64Var(&opts.Beta, "beta", 0, "β (epsilon-dpo: the initial base β); default 0.1 for dpo, 2 for simpo, 0.01 for epsilon-dpo")
	fl.Float64Var(&opts.Epsilon, "epsilon", metric.DefaultEpsilon, "ε of epsilon-dpo, in (0, 1)")
	fl.Float64Var(&opts.Gamma, "gamma", 0.5, "SimPO's target margin γ ≥ 0")
	fl.IntVar(&opts.Epochs, "epochs", 3, "passes over the pairs")
	fl.Float64Var(&opts.LearningRate, "lr", tinylm.DefaultPreferenceLearningRate, "Adam learning rate")
	fl.IntVar(&opts.BatchSize, "batch-size", 8, "pairs per optimiser step")
	fl.Uint64Var(&opts.Seed, "seed", 1, "seed of the batch shuffling")
	names.flags(cmd)
	return cmd
}

func lossExtras(o tinylm.PreferenceOptions) string {
	switch o.Loss {
	case tinylm.LossSimPO:
		return fmt.Sprintf(", gamma %g", o.Gamma)
	case tinylm.LossEpsilonDPO:
		return fmt.Sprintf(", epsilon %g", o.Epsilon)
	}
	return ""
}
