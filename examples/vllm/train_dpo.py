"""DPO with TRL on a selfplay export, as a LoRA adapter, then served by vLLM.

Runs on a GPU host with torch, transformers, peft, datasets and trl
(examples/vllm/Dockerfile.trainer builds such an image); it cannot run on
the CPU-only CI machines, where a test only compiles it.

  python3 train_dpo.py --base-model Qwen/Qwen2.5-1.5B-Instruct \
      --dataset exports/vllm-dpo/iter0/train.jsonl --output /adapters/policy-1 \
      --load-into http://127.0.0.1:8000 --name policy-1

The export is TRL's conversational preference format (prompt, chosen,
rejected as message lists). When it carries ref_chosen_logps and
ref_rejected_logps (the schedule named a reference model), TRL's DPO trainer
takes the reference log-probs from the batch instead of running a reference
model (DPOTrainer.get_batch_loss_metrics: "if ref_chosen_logps and
ref_rejected_logps in batch use them"), so no second copy of the model is
loaded. They are sums over the response tokens, the end-of-turn token
included, as TRL's are; a chat template that puts a newline after the
end-of-turn token gives TRL one more, near-certain, token.

After training, the adapter is saved to --output and, with --load-into,
loaded into the vLLM policy server through POST /v1/load_lora_adapter
(the server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True); /v1/models
then lists --name, which the orchestrator waits for.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base-model", required=True, help="the base (SFT) model the policy server serves")
    p.add_argument("--dataset", required=True, help="the export's train.jsonl")
    p.add_argument("--output", required=True, help="folder for the trained LoRA adapter")
    p.add_argument("--init-adapter", help="continue training this adapter (the current policy's)")
    p.add_argument("--beta", type=float, default=0.1, help="DPO beta (match scoring.beta)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--learning-rate", type=float, default=5e-6)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=8)
    p.add_argument("--lora-rank", type=int, default=16, help="at most the server's --max-lora-rank")
    p.add_argument("--max-length", type=int, default=4096)
    p.add_argument("--load-into", help="vLLM policy server URL to load the adapter into")
    p.add_argument("--name", help="served name of the adapter (the next policy model)")
    args = p.parse_args(argv)
    if args.load_into and not args.name:
        p.error("--load-into needs --name")
    return args


def load_dataset_with_refs(path):
    from datasets import load_dataset

    ds = load_dataset("json", data_files=path, split="train")
    if len(ds) == 0:
        sys.exit(f"{path}: no preference pairs to train on")
    columns = ["prompt", "chosen", "rejected"]
    refs = ["ref_chosen_logps", "ref_rejected_logps"]
    if all(c in ds.column_names for c in refs):
        for c in refs:
            if any(v is None for v in ds[c]):
                sys.exit(f"{path}: {c} is missing on some rows; score every pair with the reference or none")
        columns += refs
    return ds.select_columns(columns), columns[3:] == refs


def train(args):
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    ds, has_refs = load_dataset_with_refs(args.dataset)
    tokenizer = AutoTokenizer.from_pretrained(args.base_model)
    model = AutoModelForCausalLM.from_pretrained(args.base_model, torch_dtype=torch.bfloat16)
    peft_config = None
    if args.init_adapter:
        model = PeftModel.from_pretrained(model, args.init_adapter, is_trainable=True)
    else:
        peft_config = LoraConfig(r=args.lora_rank, lora_alpha=2 * args.lora_rank, lora_dropout=0.0,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    config = DPOConfig(
        output_dir=args.output + ".run",
        beta=args.beta,
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        max_length=args.max_length,
        bf16=True,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        # The export's reference log-probs are used as they are; without
        # them TRL runs the reference (the adapter switched off) itself.
        precompute_ref_log_probs=False,
    )
    trainer = DPOTrainer(model=model, args=config, train_dataset=ds, processing_class=tokenizer,
                         peft_config=peft_config)
    print(f"training on {len(ds)} pairs, reference log-probs from the export: {has_refs}", flush=True)
    trainer.train()
    trainer.save_model(args.output)


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
