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
# Its context is the policy's (POLICY_MAX_MODEL_LEN, default 4096) plus one
# token: the policy takes a prompt when prompt + max_tokens fits its
# context, so prompt + reply can fill it, and the reference scores them as
# one prompt with max_tokens 1, which vLLM refuses unless prompt + 1 fits.
# A worker compares the two at start (/v1/models of the policy, /tokenize
# here) and refuses to start with a reference that is too short. So the
# policy server cannot be its own reference; on one GPU run both servers
# with GPU_MEMORY_UTILIZATION=0.4 each.
set -euo pipefail
BASE_MODEL=${BASE_MODEL:-Qwen/Qwen2.5-1.5B-Instruct}
PORT=${PORT:-8002}
exec vllm serve "$BASE_MODEL" \
  --served-model-name reference \
  --host 0.0.0.0 --port "$PORT" \
  --max-model-len "$(( ${POLICY_MAX_MODEL_LEN:-4096} + 1 ))" \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.85}" \
  --generation-config vllm \
  "$@"
