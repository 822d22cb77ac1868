#!/usr/bin/env bash
# Steps 01-04 back to back (about 9 min of GPU time), each under its own time limit; a failing or
# timed-out step does not stop the next. Usage: scripts/gpu/all.sh RESULTS_DIR
# The lent machine runs a command for at most 10 minutes: give all.sh the whole call, or run the
# steps one per call with the same RESULTS_DIR (scripts/gpu/README.md).
dir=$(dirname "$0")
results=${1:-${OUT:-gpu-results}}
mkdir -p "$results"
rc=0
for stage in "01_build_and_test 250" "02_sanitizer 150" "03_bench 55" "04_pretrain_sync_debug 85"; do
  set -- $stage
  start=$SECONDS
  timeout --kill-after 10 "$2" bash "$dir/$1.sh" "$results"
  status=$?
  [ $status -eq 124 ] && what="timed out after $2 s" || what="exit $status"
  echo "== $1: $what ($((SECONDS - start)) s)" | tee -a "$results/summary.txt"
  [ $status -eq 0 ] || rc=1
done
exit $rc
