#!/usr/bin/env bash
# Step 5 (about 1.5 min): no host synchronisation in a training step. A masking + gather step captured
# in a CUDA graph, seed and epoch on the device, replayed (scripts/gpu/graph_replay.py: fresh masks per
# replay, each bit-exact with the reference); then `fastmask pretrain --sync-debug` (tiny preset)
# eagerly and with --compile. PRETRAIN_FLAGS adds flags, e.g. PRETRAIN_FLAGS="--masking mapnet".
# Usage: scripts/gpu/05_sync_debug.sh RESULTS_DIR
DEFAULT_LIMIT=90
source "$(dirname "$0")/common.sh"
build || exit 1
rc=0
check graph-replay 20 $PY scripts/gpu/graph_replay.py --device "$DEVICE" --out "$RESULTS/graph_replay.json" || rc=1
[ "$DRY_RUN" = 1 ] && steps=(--steps 4 --log-interval 2 --eval-interval 4) || steps=(--steps 20 --log-interval 10 --eval-interval 20)
flags=(--device "$DEVICE" "${steps[@]}" --no-progress --sync-debug --cache-dir "$WORK/cache" ${PRETRAIN_FLAGS:-})
for run in eager compile; do
  rm -rf "$WORK/runs/$run"
  extra=()
  [ $run = compile ] && extra=(--compile)
  limit=$([ $run = compile ] && echo 45 || echo 25)
  check "pretrain-$run" "$limit" $PY -m fastmask pretrain "${flags[@]}" "${extra[@]}" --out "$WORK/runs/$run" || rc=1
  cp "$WORK/runs/$run/metrics.jsonl" "$RESULTS/pretrain-$run-metrics.jsonl" 2>/dev/null
done
exit $rc
