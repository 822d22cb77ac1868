# Sourced by scripts/gpu/0*.sh: the results folder ($1), the environment, the checks and the build.
# Venv-free: on the lent GPU machine `python3` already holds torch (CUDA), Triton, transformers,
# pytest, hypothesis and pytest-xdist.
#
# FASTMASK_GPU_DRY_RUN=1: the kit's rehearsal on a machine without a GPU (CI): CPU tensors, tiny
# sizes (--profile quick), Triton under its interpreter, torch.compile off (TORCH_COMPILE_DISABLE:
# --compile is parsed and run eagerly), no build (the package is installed), and the checks that
# need a GPU (check_cuda_build, the op tests, compute-sanitizer) write their result files only.
set -uo pipefail
RESULTS=${1:?usage: $0 RESULTS_DIR}
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FASTMASK_CUDA=1
PY=${PYTHON:-python3}
DRY_RUN=${FASTMASK_GPU_DRY_RUN:-0}
# Large files the checks make (training runs' checkpoints, caches): kept out of the results folder.
WORK=${KIT_WORK:-${TMPDIR:-/tmp}/fastmask-gpu-kit}
mkdir -p "$WORK"
# The step's time limit (all.sh passes it; a step run alone takes its default, $2 of the caller).
LIMIT=${STEP_LIMIT:-${DEFAULT_LIMIT:-600}}
# The limits are a GPU machine's; a rehearsal on a loaded CPU multiplies them (all.sh does the same
# for the steps and the budget), so it checks that every limit is applied, not that a CPU meets it.
LIMIT_SCALE=${KIT_LIMIT_SCALE:-$([ "$DRY_RUN" = 1 ] && echo 4 || echo 1)}
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu PROFILE=quick
  export TRITON_INTERPRET=1 TORCH_COMPILE_DISABLE=1
else
  DEVICE=cuda PROFILE=gpu
fi

# log MESSAGE: to the terminal and to $RESULTS/summary.txt.
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RESULTS/summary.txt"; }

# check NAME LIMIT COMMAND...: COMMAND under LIMIT seconds, its output teed to $RESULTS/NAME.log;
# one line in summary.txt and checks.tsv (name, outcome, exit status, seconds, limit).
check() {
  local name=$1 limit=$(($2 * LIMIT_SCALE)) start=$SECONDS rc outcome
  shift 2
  if [ "$LIMIT_SCALE" != 1 ] && [ $limit -gt $((LIMIT - SECONDS)) ]; then
    limit=$((LIMIT - SECONDS > 1 ? LIMIT - SECONDS : 1))  # never past the step's own (scaled) limit
  fi
  timeout --kill-after 10 "$limit" "$@" 2>&1 | tee "$RESULTS/$name.log"
  rc=${PIPESTATUS[0]}
  case $rc in
    0) outcome=ok ;;
    124 | 137) outcome="timed out" ;;
    *) outcome=failed ;;
  esac
  log "$name: $outcome (exit $rc) in $((SECONDS - start)) s, limit $limit s"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$outcome" "$rc" "$((SECONDS - start))" "$limit" >> "$RESULTS/checks.tsv"
  return "$rc"
}

# dry_skip NAME WHY: a check the dry run cannot make, recorded as such (its log says why).
dry_skip() {
  echo "dry run: not run: $2" > "$RESULTS/$1.log"
  log "$1: dry run (not run: $2)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "dry run" 0 0 0 >> "$RESULTS/checks.tsv"
}

# gpu_only NAME WHY: a step whose check needs a GPU: in a dry run, recorded as not run (dry_skip) and
# the step ends; otherwise the build is made sure of first.
gpu_only() {
  if [ "$DRY_RUN" = 1 ]; then
    dry_skip "$1" "$2"
    exit 0
  fi
  build || exit 1
}

# left MARGIN: seconds of this step's limit left, less MARGIN (for a command's own --budget).
left() { echo $((LIMIT - SECONDS - $1 > 5 ? LIMIT - SECONDS - $1 : 5)); }

cuda_kernels_loaded() {
  $PY -c "from fastmask import backends; import sys; sys.exit(backends.why_unavailable('cuda', 'cuda') is not None)" \
    2>/dev/null
}

# build [force]: the README's install command with the CUDA kernels required (FASTMASK_CUDA=1);
# skipped when the kernels already load (a warm machine), unless forced; never in a dry run. A
# build that failed is not tried again by the later steps of the same results folder.
build() {
  if [ "$DRY_RUN" = 1 ]; then
    return 0
  fi
  if [ "${1:-}" != force ] && cuda_kernels_loaded; then
    log "build: CUDA kernels already built"
    return 0
  fi
  if [ -e "$RESULTS/build.failed" ]; then
    log "build: failed earlier in this kit (build.log): not tried again"
    return 1
  fi
  if ! check build "$(left 10)" $PY -m pip install -v --no-build-isolation --no-deps -e . || ! cuda_kernels_loaded; then
    tail -40 "$RESULTS/build.log"
    log "build: fastmask._C has no working CUDA kernels"
    touch "$RESULTS/build.failed"
    return 1
  fi
}
