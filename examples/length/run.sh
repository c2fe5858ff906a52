#!/usr/bin/env bash
# The length study of docs/length.md: three self-play iterations with DPO
# training between them on the built-in model, its reward given a bonus of
# 0.05 per reply word (lm serve --reward-length-bonus), selected by
# alignment potential with scoring.length_control none and residual, seeds
# 1-5. Needs PostgreSQL and NATS (scripts/start-services); run from the
# repository root. Prints the Markdown table of docs/length.md and writes
# one JSON line per run to examples/length/results.jsonl.
set -euo pipefail
exec go run ./examples/ablation \
    -metrics alignment_potential -losses dpo \
    -length-controls none,residual -reward-length-bonus "${BONUS:-0.05}" -eval-each \
    -seeds "${SEEDS:-1,2,3,4,5}" \
    -results "${RESULTS:-examples/length/results.jsonl}" "$@"
