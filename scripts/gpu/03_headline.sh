#!/usr/bin/env bash
# Step 3 (about 3 min): the headline comparison (bench/bench_headline.py): fastmask pretrain's step
# (eager, then --compile) against --masking hf, and a Trainer-shaped step with apply_fastmask against
# transformers' collator + dense head; BERT-base at seq 128 and 512, bf16 autocast, under
# set_sync_debug_mode("error"). Rows go to RESULTS_DIR/bench/headline-<device>.jsonl as each is
# measured; a --budget inside the step's limit leaves out what would not finish (the compiled runs
# first). Usage: scripts/gpu/03_headline.sh RESULTS_DIR
DEFAULT_LIMIT=175
source "$(dirname "$0")/common.sh"
build || exit 1
check headline "$(left 3)" $PY -m fastmask bench headline --profile "$PROFILE" --device "$DEVICE" \
  --results-dir "$RESULTS/bench" --budget "$(left 15)"
