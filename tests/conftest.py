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


def kernel_op(name: str, backend: str):
    """The registered op that runs `backend`'s kernel (cpu and cuda share the C++ op)."""
    return getattr(torch.ops.fastmask, name + ("_triton" if backend == "triton" else ""))


def op_variant_params():
    """pytest params for the three registered variants of an op ("", "_triton", "_torch"), each
    skipped with the reason when its kernels cannot run on this machine."""
    params = []
    for suffix, backend in (("", DEVICE.type), ("_triton", "triton"), ("_torch", "torch")):
        reason = backends.why_unavailable(backend, DEVICE.type)
        params.append(pytest.param(suffix, marks=[pytest.mark.skip(reason=reason)] if reason else [],
                                   id=suffix or "native"))
    return params


def backend_params(device: torch.device = DEVICE):
    """pytest params for every kernel backend, the unavailable ones skipped with the reason."""
    params = []
    for b in ("cpu", "cuda", "triton"):
        reason = backends.why_unavailable(b, device.type)
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(b, marks=marks, id=b))
    return params


SENTENCES = [
    "the quick brown fox jumps over the lazy dog",
    "a masked language model predicts the missing words of a sentence",
    "gradient variance falls when masks do not overlap",
    "the proposal network learns which positions are hard to predict",
]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """A small text corpus (one document per line) for pretraining tests."""
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(f"{s} number {i}" for i in range(150) for s in SENTENCES))
    return str(path)
