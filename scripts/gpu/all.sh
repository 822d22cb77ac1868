#!/usr/bin/env bash
# The GPU kit: steps 01-07 in order of value per GPU minute, each under its own time limit, the whole
# within KIT_BUDGET seconds (default 540: one device call of 600 s, with room for the machine's own
# overhead). A step starts only with at least KIT_MIN_STEP (20) seconds of the budget left, and runs
# under the smaller of its limit and what is left; a failing or timed-out step does not stop the next.
# Steps 01-05 fill the budget at their limits; 06-07 get what the earlier steps left (the second
# call's plan, scripts/gpu/README.md, runs the rest).
#
#   scripts/gpu/all.sh [--pack DIR] RESULTS_DIR [STEP...]
#
# RESULTS_DIR gets every log, summary.txt (one line per step and check), steps.tsv and checks.tsv
# (the same, for scripts/gpu/publish.py), kit.json, environment.json, toolchain.txt and bench/*.jsonl.
# STEPs (e.g. 01_build 06_op_tests) run only those, in the kit's order. --pack DIR refreshes, after
# every step, DIR/gpu-results.tar.gz (RESULTS_DIR packed) and DIR/summary.txt: two files, so a device
# call's $OUT (at most 8 files come back) holds everything even when the call is cut short.
# FASTMASK_GPU_DRY_RUN=1 rehearses the kit on a CPU (scripts/gpu/common.sh).
set -uo pipefail
dir=$(cd "$(dirname "$0")" && pwd)
pack=
if [ "${1:-}" = --pack ]; then
  pack=${2:?--pack needs a folder}
  shift 2
  mkdir -p "$pack"
fi
results=${1:?usage: scripts/gpu/all.sh [--pack DIR] RESULTS_DIR [STEP...]}
shift
mkdir -p "$results" && results=$(cd "$results" && pwd)
# The kit: step, time limit in seconds (scripts/gpu/README.md gives the plan minute by minute).
KIT="01_build 130
02_check_cuda_build 15
03_headline 175
04_bench 130
05_sync_debug 90
06_op_tests 120
07_sanitizer 150"
budget=${KIT_BUDGET:-540}
min_step=${KIT_MIN_STEP:-20}
requested=" $* "
for step in "$@"; do
  grep -q "^$step " <<< "$KIT" || { echo "all.sh: no step $step in the kit ($(cut -d' ' -f1 <<< "$KIT" | xargs))" >&2; exit 2; }
done
PY=${PYTHON:-python3}
dry=${FASTMASK_GPU_DRY_RUN:-0}
# A rehearsal on a CPU scales every limit and the budget (scripts/gpu/common.sh says why).
export KIT_LIMIT_SCALE=${KIT_LIMIT_SCALE:-$([ "$dry" = 1 ] && echo 4 || echo 1)}
budget=$((budget * KIT_LIMIT_SCALE))
printf '{"date": "%s", "started": "%s", "dry_run": %s, "budget_s": %s, "steps": "%s"}\n' "$(date -u +%F)" \
  "$(date -u +%FT%TZ)" "$([ "$dry" = 1 ] && echo true || echo false)" "$budget" "${*:-all}" > "$results/kit.json"
# The machine, its versions and the code, before anything else.
(cd "$dir/../.." && $PY - > "$results/environment.json" 2> "$results/environment.log") <<'PYEOF'
import json, platform, subprocess, sys
import torch


def run(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def version(name):
    try:
        return __import__(name).__version__
    except ImportError:
        return None


cuda = torch.cuda.is_available()
json.dump(dict(
    device=torch.cuda.get_device_name() if cuda else "cpu", python=platform.python_version(), torch=torch.__version__,
    cuda=torch.version.cuda, triton=version("triton"), transformers=version("transformers"),
    gpu=run("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"),
    nvcc=((run("nvcc", "--version") or "").splitlines() or [None])[-1],
    commit=run("git", "rev-parse", "HEAD"), changed_files=len((run("git", "status", "--porcelain") or "").splitlines()),
), sys.stdout, indent=2)
PYEOF
pack_results() {
  [ -n "$pack" ] || return 0
  tar czf "$pack/gpu-results.tar.gz.tmp" -C "$(dirname "$results")" "$(basename "$results")" &&
    mv "$pack/gpu-results.tar.gz.tmp" "$pack/gpu-results.tar.gz"
  cp "$results/summary.txt" "$pack/summary.txt" 2>/dev/null
}
start=$SECONDS
rc=0
while read -r step limit; do
  [ "$requested" = "  " ] || [[ "$requested" == *" $step "* ]] || continue
  left=$((budget - (SECONDS - start)))
  if [ $left -lt "$min_step" ]; then
    echo "== $step: skipped ($left s of the ${budget} s budget left)" | tee -a "$results/summary.txt"
    printf '%s\t%s\t%s\t%s\t%s\n' "$step" skipped - 0 "$limit" >> "$results/steps.tsv"
    continue
  fi
  limit=$((limit * KIT_LIMIT_SCALE))
  [ $left -lt "$limit" ] && limit=$left
  echo "== $step: starting, limit $limit s" | tee -a "$results/summary.txt"
  t0=$SECONDS
  STEP_LIMIT=$limit timeout --kill-after 10 "$limit" bash "$dir/$step.sh" "$results" < /dev/null
  status=$?
  case $status in
    0) outcome=ok ;;
    124 | 137) outcome="timed out" ;;
    *) outcome=failed ;;
  esac
  echo "== $step: $outcome (exit $status) in $((SECONDS - t0)) s, limit $limit s" | tee -a "$results/summary.txt"
  printf '%s\t%s\t%s\t%s\t%s\n' "$step" "$outcome" "$status" "$((SECONDS - t0))" "$limit" >> "$results/steps.tsv"
  [ $status -eq 0 ] || rc=1
  pack_results
done <<< "$KIT"
echo "== kit: $((SECONDS - start)) s of the ${budget} s budget; results in $results" | tee -a "$results/summary.txt"
pack_results
exit $rc
