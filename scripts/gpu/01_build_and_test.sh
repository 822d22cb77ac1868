#!/usr/bin/env bash
# Step 1 (about 4-5 min): build the CUDA extension for sm_90, check its registrations, then the test
# suite on the GPU (tests/conftest.py picks cuda tensors whenever a GPU is visible): the op
# families first, the rest after. Usage: scripts/gpu/01_build_and_test.sh RESULTS_DIR
source "$(dirname "$0")/common.sh"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$RESULTS/device.txt"
$PY -c "import torch, triton, setuptools; print('torch', torch.__version__, 'triton', triton.__version__, \
'setuptools', setuptools.__version__)" | tee -a "$RESULTS/device.txt"
git rev-parse HEAD 2>/dev/null | tee "$RESULTS/commit.txt"
build force || exit 1
step info $PY -m fastmask info
# The 2026-11-30 H200 build lacked libstdc++ among its NEEDED libraries and segfaulted on integer error
# messages (docs/gpu-sessions/2026-11-30-nvidia-h200.md): record the linkage every time.
step linkage bash -c 'readelf -d fastmask/_C*.so | grep NEEDED'
step check_cuda_build $PY scripts/check_cuda_build.py
xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n ${PYTEST_WORKERS:-8}")
# --maxfail, not -x: a GPU session is rare, so collect every failure it can show (up to a point).
pytest=($PY -m pytest -q -p no:cacheprovider --maxfail=25 $xdist)
ops=(tests/test_masking.py tests/test_gather.py tests/test_proposal.py tests/test_op_table.py tests/test_cuda_build.py)
step tests-ops timeout "${OPS_TIMEOUT:-120}" "${pytest[@]}" "${ops[@]}"
rc=$?
step tests-rest timeout "${REST_TIMEOUT:-45}" "${pytest[@]}" tests $(printf -- "--ignore=%s " "${ops[@]}") || rc=1
exit $rc
