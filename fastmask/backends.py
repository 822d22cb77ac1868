"""Which kernels loaded, why not, and which backend serves a call.

Availability is settled when this module is imported, without touching a GPU: the C++ extension
is loaded (a failure is kept and reported, never hidden), Triton is located but imported only
when first used. Settled up front so that no probe ever runs inside a torch.compile trace.

Backends name the kernel that runs: ``cpp`` (C++, CPU tensors), ``cuda`` (CUDA tensors), ``triton``
(CUDA tensors, or CPU tensors under TRITON_INTERPRET=1) and ``reference`` (pure PyTorch, any
device); ``auto`` picks the fastest available one for the tensors' device.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import torch

from fastmask import library  # defines the op schemas that fastmask._C implements: import it first

BACKENDS = ("auto", *library.KERNEL_BACKENDS)
# Preference of backend="auto" per device type. On CUDA the hand-written kernel comes first
# (one block per row, no launch-time compilation), then Triton; on CPU the C++ kernel.
AUTO_ORDER = {"cuda": ("cuda", "triton", "reference"), "cpu": ("cpp", "reference")}
# Backends that run on tensors of one device type only.
DEVICE_OF = {"cpp": "cpu", "cuda": "cuda"}


def _load_extension():
    """Imports fastmask._C (registering its kernels with the dispatcher): (module, None) or (None, why not)."""
    try:
        from fastmask import _C
    except ImportError as exc:
        return None, f"fastmask._C did not load ({exc}); reinstall with `pip install --no-build-isolation -e .`"
    return _C, None


@dataclass(frozen=True)
class Availability:
    extension_error: str | None
    has_cuda_kernels: bool
    # Longest row the CUDA kernels rank (exact count, random partition, top-k); from csrc/include.
    cuda_max_ranked_length: int | None
    triton_error: str | None
    triton_interpret: bool


def _probe() -> Availability:
    extension, extension_error = _load_extension()
    has_cuda_kernels = extension is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        "fastmask::mask_tokens_cuda", "CUDA"
    )
    triton_error = None if importlib.util.find_spec("triton") else "triton is not installed (pip install triton)"
    return Availability(extension_error, has_cuda_kernels, getattr(extension, "CUDA_MAX_RANKED_LENGTH", None),
                        triton_error, os.environ.get("TRITON_INTERPRET") == "1")


AVAILABILITY = _probe()


def availability() -> Availability:
    return AVAILABILITY


def why_unavailable(backend: str, device_type: str) -> str | None:
    """None if `backend` can run on tensors of `device_type`, else the reason it cannot."""
    a = availability()
    if backend == "reference":
        return None
    if backend in DEVICE_OF:
        if device_type != DEVICE_OF[backend]:
            return f"backend {backend!r} runs on {DEVICE_OF[backend]} tensors, got {device_type} tensors"
        if a.extension_error:
            return a.extension_error
        if backend == "cuda" and not a.has_cuda_kernels:
            return ("fastmask._C was built without CUDA kernels (a torch without CUDA, or no usable CUDA toolkit at "
                    "build time; `pip install -v` shows why, FASTMASK_CUDA=1 makes it an error)")
        return None
    if backend == "triton":
        if a.triton_error:
            return a.triton_error
        if device_type == "cpu" and not a.triton_interpret:
            return "Triton runs on CPU tensors only under the interpreter (set TRITON_INTERPRET=1 before start-up)"
        if device_type not in ("cpu", "cuda"):
            return f"Triton kernels need cuda tensors, got {device_type}"
        return None
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve(backend: str, device: torch.device, skip: tuple[str, ...] = ()) -> str:
    """The concrete backend for a call: an explicit one must be available, auto falls back quietly.

    `skip` lists backends that auto must pass over for this call (say, a row too long for them).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        for candidate in AUTO_ORDER.get(device.type, ("reference",)):
            if candidate not in skip and why_unavailable(candidate, device.type) is None:
                return candidate
        return "reference"
    reason = why_unavailable(backend, device.type)
    if reason is not None:
        raise RuntimeError(f"backend={backend!r} is unavailable: {reason}")
    return backend
