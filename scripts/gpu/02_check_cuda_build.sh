#!/usr/bin/env bash
# Step 2 (seconds): scripts/check_cuda_build.py, CI stage 2's check, on the GPU build: the extension
# loads, every op has a CUDA kernel registered, `fastmask info` lists the cuda backend available.
# Usage: scripts/gpu/02_check_cuda_build.sh RESULTS_DIR
DEFAULT_LIMIT=15
source "$(dirname "$0")/common.sh"
gpu_only check_cuda_build "a CPU torch has no CUDA build to check"
check check_cuda_build "$(left 2)" $PY scripts/check_cuda_build.py
