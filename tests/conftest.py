"""Test set-up: Triton kernels run on CPU tensors under the interpreter where no GPU is present.

TRITON_INTERPRET must be set before Triton (and so fastmask's Triton backend) is imported.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from fastmask import backends, counts  # noqa: E402

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
# The op-level arguments of BERT's defaults: p = 0.15, then 80% [MASK] and 10% random tokens.
T_SELECT = counts.probability_threshold("mlm_probability", 0.15)
COUNT_NUM, COUNT_DEN = counts.count_fraction(0.15)
T_MASK, T_RANDOM = counts.replacement_thresholds(0.8, 0.1)


def philox_key(seed: int, epoch: int, device: torch.device = DEVICE) -> tuple[torch.Tensor, torch.Tensor]:
    """The Philox key, seed and epoch (the mask counter), as the ops take them: 0-dim int64
    tensors on the inputs' device."""
    return (torch.tensor(seed, dtype=torch.int64, device=device),
            torch.tensor(epoch, dtype=torch.int64, device=device))


class RecordOps(TorchDispatchMode):
    """Records the name of every op dispatched inside the context (``.ops``)."""

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


NATIVE = "cuda" if DEVICE.type == "cuda" else "cpp"  # the compiled kernel for DEVICE's tensors


def _skip_unless_available(backend: str, device: torch.device = DEVICE):
    reason = backends.why_unavailable(backend, device.type)
    return pytest.param(backend, marks=[pytest.mark.skip(reason=reason)] if reason else [], id=backend)


def op_variant_params():
    """pytest params for every registered variant of an op that runs DEVICE's tensors (the
    compiled kernel, Triton, the reference), each skipped with the reason when unavailable."""
    return [_skip_unless_available(b) for b in (NATIVE, "triton", "reference")]


def backend_params(device: torch.device = DEVICE):
    """pytest params for every kernel backend, the unavailable ones skipped with the reason."""
    return [_skip_unless_available(b, device) for b in ("cpp", "cuda", "triton")]


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


@pytest.fixture
def triton_long_rows(monkeypatch):
    """Lowers the row length beyond which Triton's ranking kernels walk rows in chunks, and the
    chunk and tile sizes, so that rows of a few dozen tokens take the long-row kernels under the
    interpreter and span several chunks and tiles."""
    from fastmask.triton import common

    for name, value in (("LONG_ROW", 32), ("LONG_ROW_BLOCK", 32), ("PAIR_BLOCK_I", 32), ("PAIR_BLOCK_J", 16)):
        monkeypatch.setattr(common, name, value)
