#!/usr/bin/env bash
# The policy server (GPU host; cannot run on the CPU-only CI machines).
# Serves the base (SFT) model as policy-0 and accepts LoRA adapters loaded
# at run time through POST /v1/load_lora_adapter — the train hook loads each
# iteration's adapter under the next policy's name, which then appears on
# /v1/models, where the orchestrator waits for it.
#
#   BASE_MODEL=Qwen/Qwen2.5-1.5B-Instruct PORT=8000 examples/vllm/serve-policy.sh
# --generation-config vllm: vLLM's neutral sampling defaults rather than the
# model's generation_config.json (top_k, repetition_penalty, …), so samples
# are drawn at the schedule's temperature and top_p alone.
# POLICY_MAX_MODEL_LEN (default 4096) is the policy's context, prompt plus
# reply; serve-reference.sh reads it too and serves one token more.
set -euo pipefail
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
PORT=${PORT:-8000}
# Runtime loading of adapters is off unless this is set (vLLM envs.py).
export VLLM_ALLOW_RUNTIME_LORA_UPDATING=True
exec vllm serve "$BASE_MODEL" \
  --served-model-name policy-0 \
  --host 0.0.0.0 --port "$PORT" \
  --enable-lora --max-loras 4 --max-lora-rank 16 \
  --max-model-len "${POLICY_MAX_MODEL_LEN:-4096}" \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.85}" \
  --generation-config vllm \
  "$@"
