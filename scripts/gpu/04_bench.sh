#!/usr/bin/env bash
# Step 4 (about 2 min): the benchmark suite's GPU profile (`fastmask bench --profile gpu`): every op
# family against all its baselines in the same run at 256x512, 1024x512 and 32x8192 tokens (gather
# at BERT-base/large widths), compiled-ref compiled once per op with dynamic shapes (its compile
# time in each row's compile_s, never in a timing), then the end-to-end and collator families if
# the budget allows. Rows go to RESULTS_DIR/bench/ as each is measured. Usage: scripts/gpu/04_bench.sh RESULTS_DIR
DEFAULT_LIMIT=130
source "$(dirname "$0")/common.sh"
build || exit 1
check bench "$(left 3)" $PY -m fastmask bench --profile "$PROFILE" --device "$DEVICE" --results-dir "$RESULTS/bench" \
  --budget "$(left 10)"
