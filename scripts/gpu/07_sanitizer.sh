#!/usr/bin/env bash
# Step 7 (with what time is left; 2.5 min for all of it): compute-sanitizer over
# scripts/exercise_cuda_kernels.py, which runs every kernel once per launch shape and compares it with
# the reference: memcheck and racecheck on the CUDA kernels, memcheck on the Triton kernels; more with
# TOOLS / TRITON_TOOLS, e.g. TOOLS="memcheck racecheck synccheck initcheck". compute-sanitizer needs a
# runtime that supports it (Firecracker yes, gVisor no: "Device not supported"): a probe first.
# Usage: scripts/gpu/07_sanitizer.sh RESULTS_DIR
DEFAULT_LIMIT=150
source "$(dirname "$0")/common.sh"
gpu_only sanitizer "compute-sanitizer needs a GPU"
probe='import torch; x = torch.ones(4, device="cuda"); torch.cuda.synchronize(); print(float(x.sum()))'
if ! check sanitizer-probe 40 compute-sanitizer --tool memcheck --error-exitcode 9 $PY -c "$probe"; then
  log "compute-sanitizer does not run on this machine (see sanitizer-probe.log): no sanitizer results"
  exit 1
fi
rc=0
run() {  # run BACKEND TOOL [lengths...]
  local backend=$1 tool=$2
  shift 2
  check "sanitizer-$backend-$tool" "$(left 2)" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    $PY scripts/exercise_cuda_kernels.py --backend "$backend" ${1:+--lengths "$@"} || rc=1
}
for tool in ${TOOLS:-memcheck racecheck}; do run cuda "$tool"; done
# Triton: the whole-row kernels (up to 2048) and the long-row ones (beyond).
for tool in ${TRITON_TOOLS:-memcheck}; do run triton "$tool" ${TRITON_LENGTHS:-1 37 300 700 1500 3000 9001}; done
exit $rc
