#!/usr/bin/env bash
# The schedule's train hook (hooks.train in selfplay.yaml), run by the
# orchestrator after each export — on a GPU host; it cannot run on the
# CPU-only CI machines:
#
#   train-hook.sh DATASET POLICY_MODEL NEXT_MODEL
#
# trains NEXT_MODEL with TRL on DATASET (the iteration's train.jsonl) as a
# LoRA adapter on the base model — LOSS dpo (the default; the export's
# ref_chosen_logps / ref_rejected_logps are its reference), simpo or
# epsilon-dpo, BETA the KL weight (default 0.1, scoring.beta; simpo wants
# about 2.0) — continuing from
# POLICY_MODEL's adapter when POLICY_MODEL is one — saves it under
# $ADAPTERS_DIR/NEXT_MODEL, a folder the policy server reads too, and loads
# it into the policy server with POST /v1/load_lora_adapter. The adapter is
# then listed on /v1/models, where the orchestrator waits for NEXT_MODEL
# before the next iteration samples from it.
set -euo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 DATASET POLICY_MODEL NEXT_MODEL" >&2
  exit 2
fi
dataset=$1 policy_model=$2 next_model=$3
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
ADAPTERS_DIR=${ADAPTERS_DIR:-/adapters}
POLICY_URL=${POLICY_URL:-http://127.0.0.1:8000}

args=(--base-model "$BASE_MODEL" --dataset "$dataset" --output "$ADAPTERS_DIR/$next_model"
      --loss "${LOSS:-dpo}" --beta "${BETA:-0.1}" --load-into "$POLICY_URL" --name "$next_model")
if [ -d "$ADAPTERS_DIR/$policy_model" ]; then
  args+=(--init-adapter "$ADAPTERS_DIR/$policy_model")
fi
exec python3 "$(dirname "$0")/train_dpo.py" "${args[@]}"
