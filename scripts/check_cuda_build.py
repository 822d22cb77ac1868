"""Checks a CUDA build of fastmask on a machine without a GPU (the second stage of .ci/run):
fastmask._C loads, every op of the op table has a CUDA kernel registered with the dispatcher,
and `fastmask info` reports the CUDA kernels built. Only registrations are checked: no op is
called, so the check holds whatever the ops' argument types.

    python scripts/check_cuda_build.py
"""

from __future__ import annotations

import subprocess
import sys

import torch


def main() -> int:
    assert torch.version.cuda is not None, f"torch {torch.__version__} is not a CUDA build"
    import fastmask._C  # noqa: F401  (fails loudly, with the loader's message, if the extension is broken)

    from fastmask import backends, library

    assert backends.availability().extension_error is None, backends.availability().extension_error
    missing = [name for name in library.OPS
               if not torch._C._dispatch_has_kernel_for_dispatch_key(f"fastmask::{name}_cuda", "CUDA")]
    assert not missing, f"no CUDA kernel registered for fastmask::<op>_cuda of {missing}"
    info = subprocess.run([sys.executable, "-m", "fastmask", "info"], capture_output=True, text=True, check=True).stdout
    print(info)
    if torch.cuda.is_available():  # `info` lists the cuda backend per device type instead
        assert "  cuda      available" in info, info
    else:
        assert "cuda kernels: built" in info, info
    print(f"CUDA build OK: torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{len(library.OPS)} ops with CUDA kernels: {', '.join(library.OPS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
