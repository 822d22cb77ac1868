#!/usr/bin/env bash
# Step 4 (about 1-2 min): `fastmask pretrain` on the GPU with --sync-debug (any host synchronisation
# outside a logging step is an error), eagerly and under --compile. Tiny preset by default; PRETRAIN_FLAGS
# adds any flag, e.g. PRETRAIN_FLAGS="--preset base --seq-len 128 --batch-size 256".
# Usage: scripts/gpu/04_pretrain_sync_debug.sh RESULTS_DIR
source "$(dirname "$0")/common.sh"
build || exit 1
rc=0
flags=(--device cuda --steps 20 --log-interval 10 --eval-interval 20 --no-progress --sync-debug ${PRETRAIN_FLAGS:-})
step pretrain-eager timeout "${EAGER_TIMEOUT:-30}" $PY -m fastmask pretrain "${flags[@]}" --out "$RESULTS/runs/eager" || rc=1
step pretrain-compile timeout "${COMPILE_TIMEOUT:-50}" $PY -m fastmask pretrain "${flags[@]}" --compile \
  --out "$RESULTS/runs/compile" || rc=1
exit $rc
