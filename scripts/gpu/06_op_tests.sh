#!/usr/bin/env bash
# Step 6 (with what time is left; 2 min for all of it): the op-family tests on cuda tensors
# (tests/conftest.py picks cuda whenever a GPU is visible), then the error-message tests; they passed
# bit-exact on the 2026-11-30 H200, so they come after the figures. Usage: scripts/gpu/06_op_tests.sh RESULTS_DIR
DEFAULT_LIMIT=120
source "$(dirname "$0")/common.sh"
gpu_only op-tests "the op tests run in CI's own pytest; here only on a GPU"
xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n ${PYTEST_WORKERS:-8}")
# --maxfail, not -x: a GPU session is rare, so collect every failure it can show (up to a point).
check op-tests "$(left 2)" $PY -m pytest -q -p no:cacheprovider --maxfail=25 $xdist tests/test_masking.py \
  tests/test_gather.py tests/test_proposal.py tests/test_op_table.py tests/test_error_messages.py
