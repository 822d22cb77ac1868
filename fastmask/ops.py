"""fastmask's custom ops: schemas, fake implementations, backend choice and typed public wrappers.

Every op family ``name`` has one schema and three registered ops sharing it:

* ``fastmask::name``         the C++ kernels (CPU and, in a CUDA build, CUDA), from ``fastmask._C``
* ``fastmask::name_triton``  the Triton kernels (CUDA tensors, or CPU under TRITON_INTERPRET=1)
* ``fastmask::name_torch``   the reference in :mod:`fastmask.reference`

The public wrappers validate arguments (metadata only: no host sync), quantise probabilities to
multiples of 2**-24 so that every backend compares integers, pick the backend, and call the op.

Adding an op: write the reference, add the schema and fake below, implement the C++/CUDA kernels
(``TORCH_LIBRARY_IMPL``) and the Triton kernel, register the latter two here, add a typed
wrapper, then a test file comparing every backend to the reference (see tests/).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch

from fastmask import backends, reference

_lib = torch.library.Library("fastmask", "DEF")

_SCHEMAS = {
    "maskable_mask": "(Tensor input_ids, Tensor? attention_mask, Tensor special_ids) -> Tensor",
    "mask_tokens": (
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, int seed, int epoch, int select_threshold, "
        "int mask_threshold, int random_threshold, int mask_token_id, int vocab_size, bool exact) "
        "-> (Tensor, Tensor)"
    ),
    "fully_explored_mask": (
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, int seed, int epoch, int num_segments, "
        "bool contiguous, int mask_threshold, int random_threshold, int mask_token_id, int vocab_size) "
        "-> (Tensor, Tensor)"
    ),
    "masked_positions": "(Tensor labels, int capacity) -> (Tensor, Tensor, Tensor)",
    "gather_masked": "(Tensor hidden, Tensor index) -> Tensor",
    "scatter_masked": "(Tensor values, Tensor index, int length) -> Tensor",
    "proposal_mask": (
        "(Tensor input_ids, Tensor scores, Tensor maskable, Tensor row_ids, int seed, int epoch, "
        "int select_threshold, float uniform_mix, float temperature, bool poisson, bool sequence_weights, "
        "int mask_threshold, int random_threshold, int mask_token_id, int vocab_size) -> (Tensor, Tensor, Tensor)"
    ),
}
# The Triton module of each op family.
_TRITON_MODULES = {
    "maskable_mask": "masking", "mask_tokens": "masking", "fully_explored_mask": "masking",
    "masked_positions": "gather", "gather_masked": "gather", "scatter_masked": "gather",
    "proposal_mask": "proposal",
}


def _maskable_mask_fake(input_ids, attention_mask, special_ids):
    return torch.empty_like(input_ids, dtype=torch.bool)


def _mask_tokens_fake(input_ids, maskable, row_ids, *args):
    return torch.empty_like(input_ids), torch.empty_like(input_ids, dtype=torch.int64)


def _fully_explored_mask_fake(input_ids, maskable, row_ids, seed, epoch, num_segments, *args):
    shape = (num_segments, *input_ids.shape)
    return input_ids.new_empty(shape), input_ids.new_empty(shape, dtype=torch.int64)


def _masked_positions_fake(labels, capacity):
    slots = labels.new_empty(labels.shape[0], capacity)
    return slots, torch.empty_like(slots), labels.new_empty(labels.shape[0])


def _gather_masked_fake(hidden, index):
    return hidden.new_empty(hidden.shape[0], index.shape[1], hidden.shape[2])


def _scatter_masked_fake(values, index, length):
    return values.new_empty(values.shape[0], length, values.shape[2])


def _proposal_mask_fake(input_ids, *args):
    return (torch.empty_like(input_ids), torch.empty_like(input_ids, dtype=torch.int64),
            torch.empty_like(input_ids, dtype=torch.float32))


_FAKES = {
    "maskable_mask": _maskable_mask_fake,
    "mask_tokens": _mask_tokens_fake,
    "fully_explored_mask": _fully_explored_mask_fake,
    "masked_positions": _masked_positions_fake,
    "gather_masked": _gather_masked_fake,
    "scatter_masked": _scatter_masked_fake,
    "proposal_mask": _proposal_mask_fake,
}


def _triton_kernel(name: str) -> Callable:
    def run(*args):
        import importlib  # the Triton modules are imported on first use: Triton is optional

        module = importlib.import_module(f"fastmask.triton.{_TRITON_MODULES[name]}")
        return getattr(module, name)(*args)

    return run


def _reference_kernel(name: str) -> Callable:
    fn = getattr(reference, name)

    def run(*args):
        # An op's outputs must not alias its inputs; the reference may return views (e.g. K = 1).
        out = fn(*args)
        return tuple(t.clone() for t in out) if isinstance(out, tuple) else out.clone()

    return run


for _name, _schema in _SCHEMAS.items():
    for _suffix, _kernel in (("", None), ("_triton", _triton_kernel(_name)), ("_torch", _reference_kernel(_name))):
        _lib.define(_name + _suffix + _schema)
        torch.library.register_fake(f"fastmask::{_name}{_suffix}", _FAKES[_name], lib=_lib)
        if _kernel is not None:
            torch.library.impl(f"fastmask::{_name}{_suffix}", ("cpu", "cuda"), _kernel, lib=_lib)


# Gather and scatter are each other's adjoint, on the same backend.
def _gather_setup_context(ctx, inputs, output):
    hidden, index = inputs
    ctx.save_for_backward(index)
    ctx.length = hidden.shape[1]


def _scatter_setup_context(ctx, inputs, output):
    _, index, _ = inputs
    ctx.save_for_backward(index)


for _suffix in ("", "_triton", "_torch"):
    _gather = getattr(torch.ops.fastmask, "gather_masked" + _suffix).default
    _scatter = getattr(torch.ops.fastmask, "scatter_masked" + _suffix).default

    def _gather_backward(ctx, grad, scatter=_scatter):
        (index,) = ctx.saved_tensors
        return scatter(grad.contiguous(), index, ctx.length), None

    def _scatter_backward(ctx, grad, gather=_gather):
        (index,) = ctx.saved_tensors
        return gather(grad.contiguous(), index), None, None

    torch.library.register_autograd(_gather, _gather_backward, setup_context=_gather_setup_context, lib=_lib)
    torch.library.register_autograd(_scatter, _scatter_backward, setup_context=_scatter_setup_context, lib=_lib)

backends.availability()  # load the C++ kernels now that their schemas exist


# Rows longer than this are ranked by Triton or the reference: the CUDA kernel sorts a row in one
# thread block (csrc/cuda/masking.cuh, kMaxRankedLength).
CUDA_MAX_RANKED_LENGTH = 8192


def _ranked_skip(input_ids: torch.Tensor, ranked: bool) -> tuple[str, ...]:
    return ("cuda",) if ranked and input_ids.shape[1] > CUDA_MAX_RANKED_LENGTH else ()


def _op(name: str, backend: str):
    suffix = {"cpu": "", "cuda": "", "triton": "_triton", "torch": "_torch"}[backend]
    return getattr(torch.ops.fastmask, name + suffix).default


# --------------------------------------------------------------------------------------------
# Argument checks: each names the argument, and reads tensor metadata only (no host sync).

_ANY_INT_OR_BOOL = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def _check_ids(input_ids: torch.Tensor) -> None:
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor, got {type(input_ids).__name__}")
    if input_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"input_ids must be int32 or int64, got {input_ids.dtype}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be 2-D (batch, length), got shape {tuple(input_ids.shape)}")


def _check_companion(name: str, t: torch.Tensor, input_ids: torch.Tensor, dtypes: Sequence[torch.dtype]) -> None:
    """Checks a (B, L) tensor that travels with input_ids."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if t.shape != input_ids.shape:
        raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")
    if t.device != input_ids.device:
        raise ValueError(f"{name} must be on the device of input_ids ({input_ids.device}), got {t.device}")


def _row_ids(row_ids: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
    batch = input_ids.shape[0]
    if row_ids is None:
        return torch.arange(batch, device=input_ids.device, dtype=torch.int64)
    if not isinstance(row_ids, torch.Tensor) or row_ids.dtype != torch.int64 or row_ids.shape != (batch,):
        got = f"{row_ids.dtype} {tuple(row_ids.shape)}" if isinstance(row_ids, torch.Tensor) else type(row_ids).__name__
        raise ValueError(f"row_ids must be an int64 tensor of shape ({batch},), got {got}")
    if row_ids.device != input_ids.device:
        raise ValueError(f"row_ids must be on the device of input_ids ({input_ids.device}), got {row_ids.device}")
    return row_ids


def _check_int(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value < high:
        raise ValueError(f"{name} must be in [{low}, {high}), got {value}")
    return value


def probability_threshold(name: str, p: float) -> int:
    """The op-level threshold of a probability: round(p * 2**24)."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return round(p * reference.PROB_ONE)


def _replacement_thresholds(mask_replace_prob: float, random_replace_prob: float) -> tuple[int, int]:
    t_mask = probability_threshold("mask_replace_prob", mask_replace_prob)
    t_random = probability_threshold("random_replace_prob", random_replace_prob)
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            "mask_replace_prob + random_replace_prob must be at most 1, got "
            f"{mask_replace_prob} + {random_replace_prob}"
        )
    return t_mask, min(t_random, reference.PROB_ONE - t_mask)


def _check_vocab(mask_token_id: int, vocab_size: int) -> None:
    _check_int("vocab_size", vocab_size, 1, 2**31)
    _check_int("mask_token_id", mask_token_id, 0, vocab_size)


# --------------------------------------------------------------------------------------------
# Public wrappers.


class MaskedBatch(NamedTuple):
    """Corrupted ids (dtype of the input) and int64 labels, -100 where nothing was masked."""

    input_ids: torch.Tensor
    labels: torch.Tensor


def maskable_mask(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    special_ids: Sequence[int] | torch.Tensor = (),
    backend: str = "auto",
) -> torch.Tensor:
    """Bool (B, L): True where a token may be masked (attended and not a special id). One pass."""
    _check_ids(input_ids)
    if attention_mask is not None:
        _check_companion("attention_mask", attention_mask, input_ids, _ANY_INT_OR_BOOL)
        if attention_mask.dtype not in (torch.bool, torch.int32, torch.int64):
            attention_mask = attention_mask != 0
    if isinstance(special_ids, torch.Tensor):
        if special_ids.dim() > 1 or special_ids.is_floating_point() or special_ids.is_complex():
            raise ValueError(f"special_ids must be a 1-D integer tensor, got {special_ids.dtype} {tuple(special_ids.shape)}")
        special = special_ids.to(device=input_ids.device, dtype=torch.int64).reshape(-1)
    else:
        values = list(special_ids)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"special_ids must be a sequence of ints, got {special_ids!r}")
        special = torch.tensor(values, dtype=torch.int64, device=input_ids.device)
    chosen = backends.resolve(backend, input_ids.device)
    return _op("maskable_mask", chosen)(input_ids, attention_mask, special)


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    exact_count: bool = False,
    seed: int = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int = 0,
    backend: str = "auto",
) -> MaskedBatch:
    """Standard MLM masking with the 80/10/10 rule, fused in one kernel.

    ``exact_count=False`` chooses each maskable token with probability ``mlm_probability``
    (Hugging Face semantics); ``exact_count=True`` chooses exactly
    k = min(n, max(1, floor(p n + 1/2))) of the n maskable tokens of each row, uniformly.
    Randomness is Philox keyed by (seed, epoch, row id, position): a row's masks depend only on
    its row id (default: its index), identically on every backend. No host sync.
    """
    _check_ids(input_ids)
    _check_companion("maskable", maskable, input_ids, (torch.bool,))
    _check_vocab(mask_token_id, vocab_size)
    t_select = probability_threshold("mlm_probability", mlm_probability)
    t_mask, t_random = _replacement_thresholds(mask_replace_prob, random_replace_prob)
    rows = _row_ids(row_ids, input_ids)
    chosen = backends.resolve(backend, input_ids.device, _ranked_skip(input_ids, exact_count))
    ids, labels = _op("mask_tokens", chosen)(
        input_ids, maskable, rows, _check_int("seed", seed, 0, 2**63), _check_int("epoch", epoch, 0, 2**32),
        t_select, t_mask, t_random, mask_token_id, vocab_size, bool(exact_count),
    )
    return MaskedBatch(ids, labels)


PARTITIONS = ("random", "contiguous")


def fully_explored_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    num_segments: int = 7,
    partition: str = "random",
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int = 0,
    backend: str = "auto",
) -> MaskedBatch:
    """Fully-explored masking: K = ``num_segments`` views, outputs shaped (K, B, L).

    The maskable positions of each row are split into K disjoint segments whose sizes differ by
    at most one (``partition="random"``: a uniformly random partition, rank of a random key mod K;
    ``"contiguous"``: K contiguous blocks); view k masks exactly segment k with the 80/10/10 rule,
    so every maskable token is masked in exactly one view. Rows with fewer than K maskable tokens
    leave some views of that row unmasked. No host sync.
    """
    _check_ids(input_ids)
    _check_companion("maskable", maskable, input_ids, (torch.bool,))
    _check_vocab(mask_token_id, vocab_size)
    _check_int("num_segments", num_segments, 1, 2**31)
    if partition not in PARTITIONS:
        raise ValueError(f"partition must be one of {PARTITIONS}, got {partition!r}")
    t_mask, t_random = _replacement_thresholds(mask_replace_prob, random_replace_prob)
    rows = _row_ids(row_ids, input_ids)
    chosen = backends.resolve(backend, input_ids.device, _ranked_skip(input_ids, partition == "random"))
    ids, labels = _op("fully_explored_mask", chosen)(
        input_ids, maskable, rows, _check_int("seed", seed, 0, 2**63), _check_int("epoch", epoch, 0, 2**32),
        num_segments, partition == "contiguous", t_mask, t_random, mask_token_id, vocab_size,
    )
    return MaskedBatch(ids, labels)


# --------------------------------------------------------------------------------------------
# Sparse masked-token gathering.


class MaskedPositions(NamedTuple):
    """Per row, the positions of labelled tokens in `capacity` slots.

    index (B, C) int64: ascending positions, -1 in unused slots; labels (B, C) int64: their
    labels, -100 in unused slots; count (B,) int64: the row's labelled tokens, on the device.
    count > C means the row overflowed and its last count - C labelled tokens were dropped:
    read it at log time (:func:`check_capacity`), not every step.
    """

    index: torch.Tensor
    labels: torch.Tensor
    count: torch.Tensor


def masked_positions(labels: torch.Tensor, capacity: int | None = None, backend: str = "auto") -> MaskedPositions:
    """Compacts the labelled positions of each row into `capacity` slots, with static shapes.

    With `capacity=None` the capacity is the largest number of labels in a row, which reads a
    value back from the device: this synchronises with the host. Give a capacity in a training
    step (exact-count masking: C = max(1, round(p * L)) is exact).
    """
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.dim() != 2:
        got = f"{labels.dtype} {tuple(labels.shape)}" if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be a 2-D int64 tensor (batch, length), got {got}")
    if capacity is None:
        capacity = max(1, int((labels != reference.IGNORE_INDEX).sum(1).max().item()) if labels.numel() else 1)
    _check_int("capacity", capacity, 1, 2**31)
    chosen = backends.resolve(backend, labels.device)
    return MaskedPositions(*_op("masked_positions", chosen)(labels, capacity))


def check_capacity(positions: MaskedPositions) -> None:
    """Raises if any row had more labelled tokens than slots. Reads from the device: a host sync."""
    capacity = positions.index.shape[1]
    worst = int(positions.count.max().item()) if positions.count.numel() else 0
    if worst > capacity:
        raise RuntimeError(
            f"masked_positions: a row has {worst} labelled tokens but capacity is {capacity}; "
            f"{worst - capacity} were dropped from the loss. Raise capacity (or use exact-count masking)."
        )


def _check_index(index: torch.Tensor, batch: int, device: torch.device) -> None:
    if not isinstance(index, torch.Tensor) or index.dtype != torch.int64 or index.dim() != 2:
        got = f"{index.dtype} {tuple(index.shape)}" if isinstance(index, torch.Tensor) else type(index).__name__
        raise ValueError(f"index must be a 2-D int64 tensor (batch, capacity), got {got}")
    if index.shape[0] != batch:
        raise ValueError(f"index must have batch size {batch}, got {index.shape[0]}")
    if index.device != device:
        raise ValueError(f"index must be on {device}, got {index.device}")


def gather_masked(hidden: torch.Tensor, index: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """(B, L, H) -> (B, C, H): the hidden states at `index` (zeros in slots holding -1).

    Differentiable: the backward scatters into zeros of the hidden's shape (positions are
    unique per row: no atomics, deterministic). Indices are not validated on the host (that
    would sync); the kernels treat an index outside [0, L) as an unused slot.
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or not hidden.is_floating_point():
        got = f"{hidden.dtype} {tuple(hidden.shape)}" if isinstance(hidden, torch.Tensor) else type(hidden).__name__
        raise ValueError(f"hidden must be a 3-D floating-point tensor (batch, length, width), got {got}")
    _check_index(index, hidden.shape[0], hidden.device)
    chosen = backends.resolve(backend, hidden.device)
    return _op("gather_masked", chosen)(hidden, index)


# --------------------------------------------------------------------------------------------
# MAPNet proposal sampling.


class ProposedBatch(NamedTuple):
    """Corrupted ids, int64 labels (-100 where not masked) and float32 importance weights (0 there)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor


SAMPLINGS = ("topk", "poisson")
WEIGHTINGS = ("token", "sequence")


def proposal_mask(
    input_ids: torch.Tensor,
    scores: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    uniform_mix: float = 0.1,
    temperature: float = 1.0,
    sampling: str = "topk",
    weighting: str = "token",
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int = 0,
    backend: str = "auto",
) -> ProposedBatch:
    """Masks drawn from a proposal q over each row's maskable positions, with importance weights.

    q = (1 - uniform_mix) softmax(scores / temperature) + uniform_mix / n over the n maskable
    positions (0 elsewhere). ``sampling="topk"``: exactly k = min(n, max(1, floor(p n + 1/2)))
    positions without replacement (Gumbel-top-k on log q); ``"poisson"``: each position
    independently with pi_i = min(1, k q_i). Then the 80/10/10 rule.

    ``weighting="token"``: w_i = (k / n) / pi_i on sampled positions, so that E[sum w_i l_i] is the
    uniform-masking expectation: exact for Poisson; for top-k, pi_i = min(1, k q_i) approximates
    the inclusion probability (well for k q_i << 1). ``"sequence"``: the paper author's variant,
    one weight per row, prod over sampled i of 1 / (n q_i), clipped to [0.8, 1.2] and divided by
    the batch mean. uniform_mix = 1 is uniform masking with weights 1.

    A row with a non-finite score (nan, inf) is sampled uniformly (as with uniform_mix = 1)
    rather than from a garbage distribution; checking for them on the host would sync.
    Integer outputs are bit-identical on every backend; no host sync.
    """
    _check_ids(input_ids)
    _check_companion("maskable", maskable, input_ids, (torch.bool,))
    _check_companion("scores", scores, input_ids, (torch.float32, torch.float16, torch.bfloat16))
    _check_vocab(mask_token_id, vocab_size)
    t_select = probability_threshold("mlm_probability", mlm_probability)
    t_mask, t_random = _replacement_thresholds(mask_replace_prob, random_replace_prob)
    if isinstance(uniform_mix, bool) or not isinstance(uniform_mix, (int, float)) or not 0 <= uniform_mix <= 1:
        raise ValueError(f"uniform_mix must be in [0, 1], got {uniform_mix!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    rows = _row_ids(row_ids, input_ids)
    chosen = backends.resolve(backend, input_ids.device, _ranked_skip(input_ids, sampling == "topk"))
    ids, labels, weights = _op("proposal_mask", chosen)(
        input_ids, scores, maskable, rows, _check_int("seed", seed, 0, 2**63), _check_int("epoch", epoch, 0, 2**32),
        t_select, float(uniform_mix), float(temperature), sampling == "poisson", weighting == "sequence",
        t_mask, t_random, mask_token_id, vocab_size,
    )
    if weighting == "sequence":  # divide by the batch mean of the rows' weights (rows with a mask)
        row_weight = weights.amax(1) if weights.shape[1] else weights.new_zeros(weights.shape[0])
        has_mask = row_weight > 0
        mean = (row_weight * has_mask).sum() / has_mask.sum().clamp(min=1)
        weights = weights / torch.where(mean > 0, mean, torch.ones_like(mean))
    return ProposedBatch(ids, labels, weights)
