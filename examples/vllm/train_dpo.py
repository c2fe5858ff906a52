"""Train the next policy on a selfplay export with TRL, as a LoRA adapter, and load it into vLLM.

  python3 train_dpo.py --base-model Qwen/Qwen2.5-1.5B-Instruct \\
      --dataset exports/vllm-dpo/iter0/train.jsonl --output /adapters/policy-1 \\
      --load-into http://127.0.0.1:8000 --name policy-1 [--loss dpo|simpo|epsilon-dpo]

The export (train.jsonl or train.parquet) is TRL's conversational preference
format: prompt, chosen and rejected as message lists, and, when the schedule
names a reference model, ref_chosen_logps and ref_rejected_logps, log
π_ref(y|x) summed over the response's tokens, the end-of-turn token included,
as TRL sums them. With lp(y) the policy's log π_θ(y|x) the same way:

  dpo          −log σ(β·h), h = [lp(y_w) − ref(y_w)] − [lp(y_l) − ref(y_l)]
               TRL's DPOTrainer (loss_type sigmoid), ref(·) the export's
  simpo        −log σ(β·[lp(y_w)/|y_w| − lp(y_l)/|y_l|] − γ), no reference
               TRL's CPOTrainer (loss_type simpo, cpo_alpha 0)
  epsilon-dpo  −log σ(β_i·h), β_i = β/(1 + ε·s_i) (epsilon_dpo.py, Lee et al.)
               h as for dpo; s_i from the policy's and the frozen reference's
               logits, the reference being the base model (the adapter off)

The export's reference log-probs are used as they are, never computed again:
TRL (since 0.29, its DPO refactor) reads them from the batch only on its
precompute_ref_log_probs path, whose first step computes them with its own
reference; ExportReferenceDPOTrainer replaces that step with a check that the
export has them. (Without it TRL's reference is the base model with the
adapter off, or with --init-adapter a frozen copy of the starting adapter:
the previous policy, not the reference selfplay scored against.)

After training, the adapter is saved to --output and, with --load-into,
loaded into the vLLM policy server through POST /v1/load_lora_adapter (the
server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); /v1/models then
lists --name, which the orchestrator waits for. Tested versions and the
oldest TRL supported: docs/production.md.
"""

import argparse
import json
import math
import sys
import urllib.error
import urllib.request
from pathlib import Path

LOSSES = ("dpo", "simpo", "epsilon-dpo")
# β when --beta is not given: TRL's DPO default; Meng et al.'s SimPO setting
# (its β scales a per-token average); Lee et al.'s ε-DPO default. The same
# as `selfplay lm train`.
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0, "epsilon-dpo": 0.01}
MESSAGES = ("prompt", "chosen", "rejected")
REFERENCE = ("ref_chosen_logps", "ref_rejected_logps")
# The oldest TRL whose DPOTrainer has the precompute hook this trainer uses.
MIN_TRL = "0.29.0"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-model", required=True, help="the base (SFT) model the policy server serves")
    p.add_argument("--dataset", required=True, help="the export's train.jsonl or train.parquet")
    p.add_argument("--output", required=True, help="folder for the trained LoRA adapter")
    p.add_argument("--init-adapter", help="continue training this adapter (the current policy's)")
    p.add_argument("--loss", choices=LOSSES, default="dpo", help="training objective (default dpo)")
    p.add_argument("--beta", type=float,
                   help="KL weight β (dpo: match scoring.beta); default 0.1 for dpo, 2.0 for simpo, "
                        "0.01 for epsilon-dpo (its starting base β)")
    p.add_argument("--epsilon", type=float, default=0.01, help="ε of epsilon-dpo, in (0, 1)")
    p.add_argument("--simpo-gamma", type=float, default=0.5, help="SimPO's target reward margin γ")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--learning-rate", type=float, default=5e-6)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--lora-rank", type=int, default=16, help="at most the server's --max-lora-rank")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--dtype", choices=("auto", "bfloat16", "float32"), default="auto",
                   help="weights and compute (auto: bfloat16 on a GPU, float32 on the CPU)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--logging-steps", type=int, default=10)
    p.add_argument("--load-into", help="vLLM policy server URL to load the adapter into")
    p.add_argument("--name", help="served name of the adapter (the next policy model)")
    args = p.parse_args(argv)
    if args.load_into and not args.name:
        p.error("--load-into needs --name")
    if args.beta is None:
        args.beta = DEFAULT_BETA[args.loss]
    if not (args.beta > 0 and math.isfinite(args.beta)):
        p.error(f"--beta {args.beta} must be a positive finite number")
    if not 0 < args.epsilon < 1:
        p.error(f"--epsilon {args.epsilon} must be in (0, 1)")
    return args


def load_export(path, need_reference):
    """The export's pairs as a datasets.Dataset of the columns the loss uses:
    the messages, and the reference log-probs when need_reference. Exits
    with a message naming the file (and row) on bad input."""
    from datasets import load_dataset

    kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(Path(path).suffix)
    if kind is None:
        sys.exit(f"{path}: not an export file (want train.jsonl or train.parquet)")
    if not Path(path).is_file():
        sys.exit(f"{path}: no such file")
    if Path(path).stat().st_size == 0:
        sys.exit(f"{path}: no preference pairs to train on")
    try:
        ds = load_dataset(kind, data_files=str(path), split="train")
    except Exception as e:  # datasets' errors vary by format and version
        sys.exit(f"{path}: cannot read it as {kind}: {type(e).__name__}: {e}")
    if len(ds) == 0:
        sys.exit(f"{path}: no preference pairs to train on")
    columns = list(MESSAGES)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        sys.exit(f"{path}: no {', '.join(missing)} column; is it a selfplay export?")
    if need_reference:
        missing = [c for c in REFERENCE if c not in ds.column_names]
        if missing:
            sys.exit(f"{path}: no {', '.join(missing)} column: dpo and epsilon-dpo need the reference's "
                     "log-probs; name a reference model in the schedule (iterations[].reference_model), "
                     "or train with --loss simpo")
        for c in REFERENCE:
            for i, v in enumerate(ds[c]):
                if v is None or not math.isfinite(v):
                    sys.exit(f"{path}: row {i + 1}: {c} is {v}; score every pair with the reference")
        columns += REFERENCE
    return ds.select_columns(columns)


def check_trl():
    import trl
    from packaging.version import Version

    if Version(trl.__version__) < Version(MIN_TRL):
        sys.exit(f"trl {trl.__version__} is too old: train_dpo.py needs trl>={MIN_TRL} "
                 "(examples/vllm/requirements-cpu.txt has the tested versions)")


def export_reference_trainer():
    """ExportReferenceDPOTrainer and EpsilonDPOTrainer, defined once TRL is
    imported."""
    import torch
    from transformers import TrainerCallback
    from trl import DPOTrainer
    from trl.trainer.utils import use_adapter

    import epsilon_dpo

    class ExportReferenceDPOTrainer(DPOTrainer):
        """TRL's DPOTrainer with the export's reference log-probs.

        With precompute_ref_log_probs TRL's loss reads ref_chosen_logps and
        ref_rejected_logps from the batch (DPOTrainer._compute_loss); the
        step that would compute them first, _precompute_ref_logps, checks
        here that the dataset has them instead."""

        def __init__(self, *args, **kwargs):
            if not kwargs["args"].precompute_ref_log_probs:
                raise ValueError("ExportReferenceDPOTrainer needs precompute_ref_log_probs=True: "
                                 "only then does TRL read the reference log-probs from the batch")
            super().__init__(*args, **kwargs)
            # TRL copies a starting adapter into a frozen "ref" adapter to be
            # its reference; here the export is, and the copy would only take
            # memory and be saved beside the adapter.
            model = self.accelerator.unwrap_model(self.model)
            if "ref" in getattr(model, "peft_config", {}):
                model.delete_adapter("ref")

        def _precompute_ref_logps(self, dataset, name, batch_size):
            missing = [c for c in REFERENCE if c not in dataset.column_names]
            if missing:
                raise ValueError(f"the {name} dataset has no {', '.join(missing)}: the reference log-probs "
                                 "come from the export")
            return dataset

    class EpsilonDPOTrainer(ExportReferenceDPOTrainer):
        """ε-DPO on TRL's data pipeline: TRL tokenizes and collates (chosen
        rows first, then rejected), the loss is epsilon_dpo's. The reference
        logits are the base model's (the adapter switched off); h uses the
        export's reference log-probs."""

        def __init__(self, *args, epsilon, **kwargs):
            super().__init__(*args, **kwargs)
            epsilon_dpo.check_epsilon(epsilon)
            if not hasattr(self.accelerator.unwrap_model(self.model), "disable_adapter"):
                raise ValueError("epsilon-dpo takes the reference logits from the base model with the "
                                 "adapter switched off, so it trains a LoRA adapter")
            self.epsilon = epsilon
            self.pair_betas = []
            self.add_callback(NextBeta(self))

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mode = "train" if self.model.training else "eval"
            forward = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"],
                       "use_cache": False}
            # Row t of the logits predicts token t+1.
            tokens = inputs["input_ids"][:, 1:]
            mask = inputs["completion_mask"][:, 1:]
            policy = model(**forward).logits[:, :-1].float()
            with torch.no_grad(), use_adapter(self.accelerator.unwrap_model(model), None):
                reference = model(**forward).logits[:, :-1].float()
            lps = epsilon_dpo.sequence_logps(policy, reference, tokens, mask, self.epsilon)
            chosen, rejected = epsilon_dpo.split_pairs(lps)
            ratio = (inputs["ref_chosen_logps"] - inputs["ref_rejected_logps"]).to(chosen.policy.dtype)
            st = epsilon_dpo.epsilon_dpo_step(chosen, rejected, self.beta, self.epsilon, reference_ratio=ratio)
            loss = epsilon_dpo.epsilon_dpo_loss(st).mean()

            betas = self.accelerator.gather_for_metrics(st.beta)
            steps = self.accelerator.gather_for_metrics(st.step)
            if mode == "train":
                self.pair_betas.extend(betas.tolist())
            m = self._metrics[mode]
            m["epsilon_dpo/base_beta"].append(self.beta)
            m["epsilon_dpo/relaxed"].append((steps == 1).float().mean().item())
            m["epsilon_dpo/tightened"].append((steps == -1).float().mean().item())
            m["rewards/accuracies"].append(self.accelerator.gather_for_metrics(st.logit.detach() > 0)
                                           .float().mean().item())
            m["rewards/margins"].append(self.accelerator.gather_for_metrics(st.beta * st.logit.detach())
                                        .mean().item())
            return (loss, {}) if return_outputs else loss

    class NextBeta(TrainerCallback):
        """Moves the base β after every optimiser step to the mean of the
        step's β_i (epsilon_dpo.next_beta)."""

        def __init__(self, trainer):
            self.trainer = trainer

        def on_step_end(self, args, state, control, **kwargs):
            t = self.trainer
            t.beta = epsilon_dpo.next_beta(t.beta, t.pair_betas)
            t.pair_betas = []

    return ExportReferenceDPOTrainer, EpsilonDPOTrainer


def resolve_dtype(name):
    import torch

    if name == "auto":
        name = "bfloat16" if torch.cuda.is_available() else "float32"
    return getattr(torch, name)


def train(args):
    """Trains and saves the adapter; returns the TRL trainer (its
    state.log_history has the loss of every logged step)."""
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_trl()
    ds = load_export(args.dataset, need_reference=args.loss != "simpo")
    dtype = resolve_dtype(args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    model = AutoModelForCausalLM.from_pretrained(args.base_model, dtype=dtype)
    peft_config = None
    if args.init_adapter:
        model = PeftModel.from_pretrained(model, args.init_adapter, is_trainable=True)
    else:
        peft_config = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(
        output_dir=args.output + ".run",
        beta=args.beta,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        bf16=dtype == torch.bfloat16,
        logging_steps=args.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=args.seed,
    )
    if args.loss == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        config = CPOConfig(loss_type="simpo", cpo_alpha=0.0, simpo_gamma=args.simpo_gamma, **common)
        trainer = CPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tokenizer,
                             peft_config=peft_config)
    else:
        from trl import DPOConfig

        export_dpo, epsilon = export_reference_trainer()
        config = DPOConfig(loss_type=["sigmoid"], precompute_ref_log_probs=True, **common)
        kwargs = dict(model=model, args=config, train_dataset=ds, processing_class=tokenizer,
                      peft_config=peft_config)
        trainer = epsilon(epsilon=args.epsilon, **kwargs) if args.loss == "epsilon-dpo" else export_dpo(**kwargs)
    print(f"training on {len(ds)} pairs with {args.loss}, beta {args.beta}", flush=True)
    trainer.train()
    trainer.save_model(args.output)
    return trainer


def load_adapter(url, name, path):
    # load_inplace: the orchestrator re-runs the train stage after a crash,
    # and vLLM answers a second load of a name with 400 unless told to
    # replace it.
    body = json.dumps({"lora_name": name, "lora_path": path, "load_inplace": True}).encode()
    req = urllib.request.Request(url.rstrip("/") + "/v1/load_lora_adapter", data=body,
                                 headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            print(f"loaded adapter {name} from {path}: {resp.status}", flush=True)
    except urllib.error.HTTPError as e:
        sys.exit(f"POST {req.full_url}: {e.code} {e.read().decode(errors='replace')}")


def main(argv):
    args = parse_args(argv)
    train(args)
    if args.load_into:
        load_adapter(args.load_into, args.name, args.output)


if __name__ == "__main__":
    main(sys.argv[1:])
