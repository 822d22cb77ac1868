"""Test set-up: Triton kernels run on CPU tensors under the interpreter where no GPU is present.

TRITON_INTERPRET must be set before Triton (and so fastmask's Triton backend) is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from fastmask import backends  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def concrete_backends(device: torch.device = DEVICE) -> list[str]:
    """The kernel backends (not the reference) that can run here; listed in skip reasons otherwise."""
    return [b for b in ("cpu", "cuda", "triton") if backends.why_unavailable(b, device.type) is None]


def backend_params(device: torch.device = DEVICE):
    """pytest params for every kernel backend, the unavailable ones skipped with the reason."""
    params = []
    for b in ("cpu", "cuda", "triton"):
        reason = backends.why_unavailable(b, device.type)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(b, marks=marks, id=b))
    return params
