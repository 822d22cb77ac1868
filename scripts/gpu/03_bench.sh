#!/usr/bin/env bash
# Step 3 (about 1-2 min): the benchmark suite on the GPU, small sizes (`fastmask bench --quick`), every
# op family against its baselines; result rows (JSON lines) go to RESULTS_DIR/bench/, not bench/results/.
# BENCH_FLAGS="" runs the full sizes (several minutes per family). Usage: scripts/gpu/03_bench.sh RESULTS_DIR
source "$(dirname "$0")/common.sh"
build || exit 1
step bench timeout "${BENCH_TIMEOUT:-50}" $PY -m fastmask bench ${BENCH_FLAGS---quick} --results-dir "$RESULTS/bench"
