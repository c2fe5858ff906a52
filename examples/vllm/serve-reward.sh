#!/usr/bin/env bash
# The reward server (GPU host; cannot run on the CPU-only CI machines): a
# Bradley-Terry sequence classifier (Skywork-Reward-V2, LlamaForSequence-
# Classification with one label) run by vLLM's pooling runner and served on
# /classify, whose raw logit is the reward (selfplay sends use_activation
# false). ArmoRM-style models (a custom head, trust_remote_code) serve the
# same way with --convert classify where vLLM supports their architecture;
# otherwise use endpoints.reward.kind pooling.
#
#   REWARD_MODEL=Skywork/Skywork-Reward-V2-Llama-3.1-8B PORT=8001 examples/vllm/serve-reward.sh
set -euo pipefail
REWARD_MODEL=${REWARD_MODEL:-Skywork/Skywork-Reward-V2-Llama-3.1-8B}
PORT=${PORT:-8001}
exec vllm serve "$REWARD_MODEL" \
  --served-model-name reward \
  --host 0.0.0.0 --port "$PORT" \
  --runner pooling --convert classify \
  --max-model-len 8192 \
  --gpu-memory-utilization "${GPU_MEMORY_UTILIZATION:-0.85}" \
  "$@"
