# Sourced by scripts/gpu/0*.sh: the results folder ($1, else $OUT, else gpu-results), the environment,
# and the build. Venv-free: on the lent GPU machine `python3` already holds torch (CUDA), Triton,
# transformers, pytest, hypothesis and pytest-xdist.
set -uo pipefail
RESULTS=${1:-${OUT:-gpu-results}}
mkdir -p "$RESULTS" && RESULTS=$(cd "$RESULTS" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16} TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} FASTMASK_CUDA=1
PY=${PYTHON:-python3}

# log MESSAGE: to the terminal and to $RESULTS/summary.txt (one line per check, with its outcome).
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$RESULTS/summary.txt"; }

# step NAME COMMAND...: runs COMMAND with its output teed to $RESULTS/NAME.log; logs the exit status and time.
step() {
  local name=$1 start=$SECONDS rc
  shift
  "$@" 2>&1 | tee "$RESULTS/$name.log"
  rc=${PIPESTATUS[0]}
  log "$name: exit $rc in $((SECONDS - start)) s"
  return "$rc"
}

cuda_kernels_loaded() {
  $PY -c "from fastmask import backends; import sys; sys.exit(backends.why_unavailable('cuda', 'cuda') is not None)" \
    2>/dev/null
}

# build [force]: the README's install command with the CUDA kernels required (FASTMASK_CUDA=1);
# skipped when the kernels already load (a warm machine), unless forced.
build() {
  if [ "${1:-}" != force ] && cuda_kernels_loaded; then
    log "build: CUDA kernels already built"
    return 0
  fi
  step build $PY -m pip install -v --no-build-isolation --no-deps -e . || { tail -40 "$RESULTS/build.log"; return 1; }
  cuda_kernels_loaded || { log "build: fastmask._C has no working CUDA kernels"; return 1; }
}
