#!/usr/bin/env bash
# The reference server (GPU host; cannot run on the CPU-only CI machines):
# the frozen SFT model that teacher-forces log π_ref(y|x) through /tokenize
# and /v1/completions with prompt_logprobs, for the DPO margin and the
# export's ref_chosen_logps / ref_rejected_logps. It must be the same base
# model (and tokenizer) as the policy's, and vLLM: llama.cpp's llama-server
# and Ollama lack vLLM's /tokenize and prompt_logprobs, and a worker refuses
# to start with them (docs/production.md, "llama.cpp and Ollama").
#
#   BASE_MODEL=Qwen/Qwen2.5-1.5B-Instruct PORT=8002 examples/vllm/serve-reference.sh
#
# On one GPU the policy server can be the reference too: point
# endpoints.reference at it and set reference_model: policy-0 (the base
# weights, without an adapter).
set -euo pipefail
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
PORT=${PORT:-8002}
exec vllm serve "$BASE_MODEL" \
  --served-model-name reference \
  --host 0.0.0.0 --port "$PORT" \
  --max-model-len 4096 \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.85}" \
  --generation-config vllm \
  "$@"
