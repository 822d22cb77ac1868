#!/usr/bin/env bash
# Step 1 (about 1.5-2 min): the toolchain record (before building: the link-related environment,
# Python's sysconfig link flags, where g++ finds libstdc++), the build (sm_90), the extension's
# NEEDED libraries, `fastmask info`. The 2026-11-30 H200 build carried a private static libstdc++
# and segfaulted on every error message holding a number (docs/gpu-sessions/2026-11-30-nvidia-h200.md):
# toolchain.txt and linkage.log say why, next time. Usage: scripts/gpu/01_build.sh RESULTS_DIR
DEFAULT_LIMIT=130
source "$(dirname "$0")/common.sh"
toolchain() {
  echo "## link-related environment, before the build"
  for var in CXX CC LDFLAGS CFLAGS CXXFLAGS LIBRARY_PATH LD_LIBRARY_PATH CPATH; do
    echo "$var=${!var-(unset)}"
  done
  echo "## python sysconfig"
  $PY -c "import sysconfig; [print(f'{k}={sysconfig.get_config_var(k)}') for k in ('LDSHARED', 'LDFLAGS', 'CC', 'CXX')]"
  for cxx in g++ ${CXX:+"$CXX"}; do
    echo "## $cxx"
    echo "$cxx -print-file-name=libstdc++.so: $($cxx -print-file-name=libstdc++.so)"
    echo "$cxx -print-file-name=libstdc++.a: $($cxx -print-file-name=libstdc++.a)"
    $cxx --version | head -1
  done
}
export PY
export -f toolchain
check toolchain 20 bash -c toolchain
mv "$RESULTS/toolchain.log" "$RESULTS/toolchain.txt"
if [ "$DRY_RUN" = 1 ]; then
  dry_skip build "the package is installed already"
else
  build force || exit 1
fi
check linkage 10 bash -c 'readelf -d fastmask/_C*.so | grep NEEDED'
check info 30 $PY -m fastmask info
