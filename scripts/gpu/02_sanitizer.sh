#!/usr/bin/env bash
# Step 2 (about 2 min): compute-sanitizer over scripts/exercise_cuda_kernels.py, which runs every
# kernel once per launch shape and compares it with the reference. memcheck and racecheck on the
# CUDA kernels, memcheck on the Triton kernels; more with TOOLS / TRITON_TOOLS, e.g.
#   TOOLS="memcheck racecheck synccheck initcheck" scripts/gpu/02_sanitizer.sh RESULTS_DIR
# compute-sanitizer needs a runtime that supports it (Firecracker yes, gVisor no: "Device not
# supported"); a 20-second probe finds out first and skips the rest when it cannot run.
source "$(dirname "$0")/common.sh"
build || exit 1
probe='import torch; x = torch.ones(4, device="cuda"); torch.cuda.synchronize(); print(float(x.sum()))'
if ! step sanitizer-probe timeout 40 compute-sanitizer --tool memcheck --error-exitcode 9 $PY -c "$probe"; then
  log "compute-sanitizer does not run on this machine (see sanitizer-probe.log): no sanitizer results"
  exit 1
fi
rc=0
run() {  # run BACKEND TOOL [lengths...]
  local backend=$1 tool=$2
  shift 2
  step "sanitizer-$backend-$tool" timeout "${RUN_TIMEOUT:-60}" compute-sanitizer --tool "$tool" --error-exitcode 9 \
    $PY scripts/exercise_cuda_kernels.py --backend "$backend" ${1:+--lengths "$@"} || rc=1
}
for tool in ${TOOLS:-memcheck racecheck}; do run cuda "$tool"; done
# Triton: the whole-row kernels (up to 2048) and the chunked long-row ones (beyond).
for tool in ${TRITON_TOOLS:-memcheck}; do run triton "$tool" ${TRITON_LENGTHS:-1 37 300 700 1500 3000 9001}; done
exit $rc
