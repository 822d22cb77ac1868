"""fastmask's public ops: typed wrappers over the op table (:mod:`fastmask.library`).

A wrapper converts user-facing arguments into the op's schema arguments (probabilities into
integer thresholds and exact count fractions, :mod:`fastmask.counts`; default row ids), checks
them with the op's check (:mod:`fastmask.checks`; metadata only, no host sync), picks the backend
(:mod:`fastmask.backends`) and calls the op. Everything the op computes is in the op: the
reference of the same name (:mod:`fastmask.reference`) is the specification of each wrapper.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import torch

from fastmask import backends, checks, library, reference
from fastmask.counts import (count_fraction, probability_threshold, replacement_thresholds, span_length_distribution,
                             span_length_thresholds)


def _ranked_skip(input_ids, ranked: bool) -> tuple[str, ...]:
    """Backends auto must pass over: the CUDA kernels rank rows of a bounded length in one block."""
    limit = backends.availability().cuda_max_ranked_length
    return ("cuda",) if ranked and limit is not None and input_ids.shape[1] > limit else ()


def _row_ids(row_ids: torch.Tensor | None, input_ids) -> torch.Tensor | None:
    """Row ids default to the row index; anything given is checked by the op."""
    if row_ids is not None or not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        return row_ids
    return torch.arange(input_ids.shape[0], device=input_ids.device, dtype=torch.int64)


def _philox_key(op: str, seed, epoch) -> tuple[torch.Tensor, torch.Tensor]:
    """The Philox key, seed and epoch (the mask counter), as the op takes them: tensors as given (the
    op checks them); ints checked, then held in 0-dim CPU tensors, which the kernels read at launch
    (no host-to-device copy)."""
    def word(name: str, value, limit: int) -> torch.Tensor:
        if isinstance(value, torch.Tensor):
            return value
        checks.integer(op, name, value, 0, limit)
        return torch.tensor(value, dtype=torch.int64)

    return word("seed", seed, checks.SEED_LIMIT), word("epoch", epoch, checks.EPOCH_LIMIT)


def _call(name: str, backend: str, args: tuple, ranked: bool = False):
    if not torch.compiler.is_compiling():  # when tracing, the op's fake runs the same check
        library.OPS[name].check(*args)
    chosen = backends.resolve(backend, args[0].device, _ranked_skip(args[0], ranked))
    return library.op(name, chosen)(*args)


def _choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


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
    """Bool (B, L): True where a token may be masked (attended and not a special id). One pass.

    `attention_mask` may have any integer or bool dtype (nonzero = attended). `special_ids` as a
    list is copied to the device once per distinct list and device, then reused: later calls make
    no host-to-device copy (graph-capture safe once warmed up, as a device tensor always is).
    """
    if isinstance(attention_mask, torch.Tensor) and attention_mask.dtype not in (torch.bool, torch.int32, torch.int64) \
            and not attention_mask.is_floating_point() and not attention_mask.is_complex():
        attention_mask = attention_mask != 0
    # A non-tensor input_ids is left to the op's check, which names it.
    device = input_ids.device if isinstance(input_ids, torch.Tensor) else torch.device("cpu")
    if isinstance(special_ids, torch.Tensor):
        if special_ids.dim() > 1 or special_ids.is_floating_point() or special_ids.is_complex():
            raise ValueError(f"special_ids must be a 1-D integer tensor, got {special_ids.dtype} {tuple(special_ids.shape)}")
        # a host-to-device copy when given a host tensor
        special = special_ids.to(device=device, dtype=torch.int64).reshape(-1)
    else:
        values = tuple(special_ids)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise TypeError(f"special_ids must be a sequence of ints, got {special_ids!r}")
        if torch.compiler.is_compiling():
            special = torch.tensor(values, dtype=torch.int64, device=device)  # a constant of the graph
        else:
            special = _special_ids_on(values, device)
    return _call("maskable_mask", backend, (input_ids, attention_mask, special))


@functools.lru_cache(maxsize=64)
def _special_ids_on(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """A list of special ids as a tensor on `device`, copied there once (later calls copy nothing,
    so they are legal during CUDA-graph capture and never wait for the device)."""
    special = torch.tensor(values, dtype=torch.int64)
    if device.type == "cuda":
        special = special.pin_memory()  # a truly asynchronous copy
    return special.to(device, non_blocking=True)


def mask_tokens(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    exact_count: bool = False,
    seed: int | torch.Tensor = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int | torch.Tensor = 0,
    backend: str = "auto",
    rate: torch.Tensor | None = None,
) -> MaskedBatch:
    """Standard MLM masking with the 80/10/10 rule, fused in one kernel.

    ``exact_count=False`` chooses each maskable token with probability ``mlm_probability``
    (Hugging Face semantics; p quantised to a multiple of 2**-24); ``exact_count=True`` chooses
    exactly :func:`fastmask.masked_count` (n, p) = min(n, max(1, floor(p n + 1/2))) of the n
    maskable tokens of each row, uniformly, with p exactly as written.
    Randomness is Philox keyed by (seed, epoch, row id, position): a row's masks depend only on
    its row id (the row key, default: its index), identically on every backend; ``epoch`` is the
    mask counter (any count that changes between calls: a data epoch, a step, a call index). No
    host sync. ``seed`` and ``epoch`` may be 0-dim int64 tensors on the device of ``input_ids``: the kernel reads them
    when it runs, so a compiled or CUDA-graph-captured step that advances them in place
    (``epoch.add_(1)``) gets fresh masks without recompiling; ints give the same masks.

    ``rate``: a masking probability held in an int64 (3,) tensor (:func:`fastmask.mask_rate`) on the
    device of ``input_ids``, read by the kernel when it runs in place of ``mlm_probability``;
    :func:`fastmask.set_mask_rate` rewrites it in place (no host sync), so a rate schedule needs no
    recompilation or re-capture.
    """
    t_select = probability_threshold("mlm_probability", mlm_probability)
    t_mask, t_random = replacement_thresholds(mask_replace_prob, random_replace_prob)
    args = (input_ids, maskable, _row_ids(row_ids, input_ids), *_philox_key("mask_tokens", seed, epoch), t_select,
            *count_fraction(mlm_probability), t_mask, t_random, mask_token_id, vocab_size, bool(exact_count), rate)
    return MaskedBatch(*_call("mask_tokens", backend, args, ranked=bool(exact_count)))


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
    seed: int | torch.Tensor = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int | torch.Tensor = 0,
    backend: str = "auto",
    word_start: torch.Tensor | None = None,
) -> MaskedBatch:
    """Fully-explored masking: K = ``num_segments`` views, outputs shaped (K, B, L).

    The maskable positions of each row are split into K disjoint segments whose sizes differ by
    at most one (``partition="random"``: a uniformly random partition, rank of a random key mod K;
    ``"contiguous"``: K contiguous blocks); view k masks exactly segment k with the 80/10/10 rule,
    so every maskable token is masked in exactly one view. Rows with fewer than K maskable tokens
    leave some views of that row unmasked. No host sync. ``seed``, ``epoch``: as in
    :func:`mask_tokens` (ints, or 0-dim int64 tensors read on the device).

    ``word_start`` (bool, like ``input_ids``; :func:`whole_word_mask`'s words): the row's words are
    partitioned instead of its tokens, so each view masks whole words, every word in exactly one
    view, and the segments' word counts differ by at most one (their token counts follow the words).
    """
    _choice("partition", partition, PARTITIONS)
    t_mask, t_random = replacement_thresholds(mask_replace_prob, random_replace_prob)
    args = (input_ids, maskable, _row_ids(row_ids, input_ids), *_philox_key("fully_explored_mask", seed, epoch),
            num_segments, partition == "contiguous", t_mask, t_random, mask_token_id, vocab_size, word_start)
    return MaskedBatch(*_call("fully_explored_mask", backend, args, ranked=partition == "random"))


# --------------------------------------------------------------------------------------------
# Whole-word and span masking.


def whole_word_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    word_start: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    exact_count: bool = False,
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int | torch.Tensor = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int | torch.Tensor = 0,
    backend: str = "auto",
    rate: torch.Tensor | None = None,
) -> MaskedBatch:
    """Whole-word masking: every word is masked whole or not at all, with the 80/10/10 rule per token.

    A word is a maskable token flagged in ``word_start`` (bool (B, L), e.g.
    ``fastmask.word_start_table(tokenizer)[input_ids]``), or one after a special or padding, and
    the maskable tokens after it up to the next such token. ``exact_count=False``: each word is
    chosen with probability ``mlm_probability`` (transformers' semantics). ``exact_count=True``:
    words in a random order while their tokens fit the row's budget k =
    :func:`fastmask.masked_count` (n, p); the first word that would exceed k ends the row's
    selection (it and every later word stay unmasked), so a row masks at most k tokens (the
    capacity :func:`fastmask.gather_capacity` (L, p) holds) and at least k minus the length of one
    word plus one. Linear work per row after one sort; no host sync. ``seed``, ``epoch``, row ids:
    as in :func:`mask_tokens`.

    ``rate``: a masking probability held in an int64 (3,) tensor (:func:`fastmask.mask_rate`) on the
    device of ``input_ids``, read by the kernel when it runs in place of ``mlm_probability``;
    :func:`fastmask.set_mask_rate` rewrites it in place (no host sync), so a rate schedule needs no
    recompilation or re-capture.
    """
    t_select = probability_threshold("mlm_probability", mlm_probability)
    t_mask, t_random = replacement_thresholds(mask_replace_prob, random_replace_prob)
    args = (input_ids, maskable, word_start, _row_ids(row_ids, input_ids),
            *_philox_key("whole_word_mask", seed, epoch), t_select, *count_fraction(mlm_probability),
            t_mask, t_random, mask_token_id, vocab_size, bool(exact_count), rate)
    return MaskedBatch(*_call("whole_word_mask", backend, args, ranked=bool(exact_count)))


REPLACE_PER = ("span", "token")


def span_mask(
    input_ids: torch.Tensor,
    maskable: torch.Tensor,
    word_start: torch.Tensor,
    mask_token_id: int,
    vocab_size: int,
    mlm_probability: float = 0.15,
    lengths: str = "geometric",
    span_p: float = 0.2,
    max_span: int = 10,
    max_ngram: int = 3,
    replace_per: str = "span",
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int | torch.Tensor = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int | torch.Tensor = 0,
    backend: str = "auto",
    rate: torch.Tensor | None = None,
) -> MaskedBatch:
    """Span masking: spans of whole words, within an exact token budget per row.

    Words as in :func:`whole_word_mask`. Span lengths, in words: ``lengths="geometric"``
    (SpanBERT: P(l) proportional to span_p (1 - span_p)^(l-1), l <= max_span) or ``"ngram"``
    (Megatron-LM: P(n) proportional to 1/n, n <= max_ngram); :func:`fastmask.span_length_distribution`.
    The row's words are cut into consecutive spans of drawn lengths (the last one cut at the row's
    end), and spans are taken in a random order while their tokens fit the budget k =
    :func:`fastmask.masked_count` (n, p); the span that would exceed k is cut to its first words
    that fit, and no later span is taken: at most k tokens, at least k minus one word's length
    plus one. ``replace_per="span"``: the 80/10/10 action is decided once per span (SpanBERT);
    ``"token"``: per token. Where this differs from the sequential originals (spans tile the row
    instead of being placed at random starts and rejected on overlap) is measured in the tests
    and the README. No host sync.

    ``rate``: a masking probability held in an int64 (3,) tensor (:func:`fastmask.mask_rate`) on the
    device of ``input_ids``, read by the kernel when it runs in place of ``mlm_probability``;
    :func:`fastmask.set_mask_rate` rewrites it in place (no host sync), so a rate schedule needs no
    recompilation or re-capture.
    """
    _choice("replace_per", replace_per, REPLACE_PER)
    thresholds = span_length_thresholds(span_length_distribution(lengths, span_p, max_span, max_ngram))
    t_mask, t_random = replacement_thresholds(mask_replace_prob, random_replace_prob)
    args = (input_ids, maskable, word_start, _row_ids(row_ids, input_ids), *_philox_key("span_mask", seed, epoch),
            *count_fraction(mlm_probability), thresholds, replace_per == "span",
            t_mask, t_random, mask_token_id, vocab_size, rate)
    return MaskedBatch(*_call("span_mask", backend, args, ranked=True))


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

    Give the capacity in a training step: :func:`fastmask.gather_capacity` is exact for
    exact-count and fully-explored masks and a stated bound for Bernoulli masks. With
    `capacity=None` it is the largest number of labels in a row, which reads a value back from
    the device: this synchronises with the host.
    """
    if capacity is None and isinstance(labels, torch.Tensor) and labels.dim() == 2:
        capacity = max(1, int((labels != reference.IGNORE_INDEX).sum(1).max().item()) if labels.numel() else 1)
    return MaskedPositions(*_call("masked_positions", backend, (labels, capacity)))


def check_capacity(positions: MaskedPositions) -> None:
    """Raises if any row had more labelled tokens than slots. Reads from the device: a host sync."""
    capacity = positions.index.shape[1]
    worst = int(positions.count.max().item()) if positions.count.numel() else 0
    if worst > capacity:
        raise RuntimeError(
            f"masked_positions: a row has {worst} labelled tokens but capacity is {capacity}; "
            f"{worst - capacity} were dropped from the loss. Raise capacity (or use exact-count masking)."
        )


def gather_masked(hidden: torch.Tensor, index: torch.Tensor, backend: str = "auto") -> torch.Tensor:
    """(B, L, H) -> (B, C, H): the hidden states at `index` (zeros in slots holding -1).

    Differentiable: the backward scatters into zeros of the hidden's shape (positions are
    unique per row: no atomics, deterministic). Indices are not validated on the host (that
    would sync); the kernels treat an index outside [0, L) as an unused slot.
    """
    return _call("gather_masked", backend, (hidden, index))


# --------------------------------------------------------------------------------------------
# The vocabulary head's cross-entropy without its logits.

_CHUNK_LOGITS = 2**24  # logits a default chunk holds: 64 MiB in float32
REDUCTIONS = ("mean", "sum", "none")


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    ignore_index: int = reference.IGNORE_INDEX,
    z_loss: float = 0.0,
    reduction: str = "mean",
    chunk_size: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """``F.cross_entropy(hidden @ weight.T + bias, labels)``, never holding more than one chunk of logits.

    hidden (N, H) and weight (V, H) (a decoder tied to the input embedding), bias (V,), all of one
    float dtype (under autocast, the autocast dtype, as ``F.linear``); labels (N,) int64,
    `ignore_index` on rows that contribute nothing (a gather's unused slots: the kernels skip
    them). Per row, ℓ = logsumexp - logit[label] + z_loss · logsumexp² (NaN for a label outside
    [0, V): nothing is read back to raise). `reduction`: "mean" (Σ wᵢ ℓᵢ over the labelled rows
    divided by their count, a device tensor; 0 when there is none, where F.cross_entropy gives
    NaN), "sum", or "none" (the (N,) losses, times `weights`). `weights` (N,): per-row importance
    weights (1 when None), differentiable. The loss is float32 (float64 for float64 inputs).

    Differentiable in hidden, weight, bias and weights. For "mean" and "sum" the gradients are
    computed in the forward pass, chunk by chunk, as the losses are (backward only scales them);
    "none" recomputes the logits in backward. `chunk_size`: rows per chunk (default: 2^24 logits'
    worth). Sync-free; deterministic on every backend.
    """
    return linear_cross_entropy_and_losses(hidden, weight, labels, bias, weights, ignore_index, z_loss, reduction,
                                           chunk_size, backend)[0]


def linear_cross_entropy_and_losses(hidden, weight, labels, bias=None, weights=None, ignore_index=reference.IGNORE_INDEX,
                                    z_loss=0.0, reduction="mean", chunk_size=None, backend="auto"):
    """:func:`linear_cross_entropy`'s loss and the rows' losses (N,), unweighted and detached (0 on
    ignored rows): what MAPNet's reward and a log of per-token losses read, at no extra cost."""
    _choice("reduction", reduction, REDUCTIONS)
    if isinstance(hidden, torch.Tensor) and torch.is_autocast_enabled(hidden.device.type):
        dtype = torch.get_autocast_dtype(hidden.device.type)
        hidden, weight, bias = (t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() else t
                                for t in (hidden, weight, bias))
    if chunk_size is None and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        chunk_size = max(1, _CHUNK_LOGITS // max(1, weight.shape[0]))
    checks.linear_cross_entropy(hidden, weight, bias, labels, None, ignore_index, z_loss, chunk_size)
    if weights is not None:
        checks.row_weights("linear_cross_entropy", weights, labels, hidden)
    chosen = backends.resolve(backend, hidden.device)
    if reduction == "none":
        losses = _LinearCrossEntropyRows.apply(hidden, weight, bias, labels, ignore_index, z_loss, chunk_size, chosen)
        return (losses if weights is None else losses * weights), losses.detach()
    return _LinearCrossEntropy.apply(hidden, weight, bias, labels, weights, ignore_index, z_loss, chunk_size, chosen,
                                     reduction == "mean")


def _head_kernel(backend: str, hidden: torch.Tensor, *args):
    # The inputs are already in the autocast dtype: the kernels' GEMMs run in it, unchanged by autocast.
    with torch.autocast(hidden.device.type, enabled=False):
        return library.op("linear_cross_entropy", backend)(hidden, *args)


class _LinearCrossEntropy(torch.autograd.Function):
    """The reduced loss Σ cᵢ ℓᵢ (cᵢ = wᵢ, over the labelled count for the mean) and the rows' losses
    (not differentiable); the gradients of hidden, weight and bias computed with the loss (scale
    cᵢ), then scaled by the output's gradient."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, weights, ignore_index, z_loss, chunk_size, backend, mean):
        acc = reference.accumulation_dtype(hidden.dtype)
        labelled = labels != ignore_index
        scale = labelled.to(acc) if weights is None else torch.where(labelled, weights.to(acc), 0)
        count = labelled.sum().clamp(min=1).to(acc) if mean else None  # on the device: no sync
        if mean:
            scale = scale / count
        grads = any(ctx.needs_input_grad[:3])
        losses, grad_hidden, grad_weight, grad_bias = _head_kernel(
            backend, hidden, weight, bias, labels, scale if grads else None, ignore_index, z_loss, chunk_size)
        ctx.has_bias = bias is not None
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias, losses, labelled, count)
        ctx.mark_non_differentiable(losses)
        return (losses * scale).sum(), losses

    @staticmethod
    def backward(ctx, grad, _grad_losses):
        grad_hidden, grad_weight, grad_bias, losses, labelled, count = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_weights = None
        if need[4]:  # d/dwᵢ of Σ wᵢ ℓᵢ / count
            grad_weights = torch.where(labelled, losses, 0) * grad
            if count is not None:
                grad_weights = grad_weights / count
        return (grad_hidden * grad if need[0] else None, grad_weight * grad if need[1] else None,
                grad_bias * grad if need[2] and ctx.has_bias else None, None, grad_weights,
                None, None, None, None, None)


class _LinearCrossEntropyRows(torch.autograd.Function):
    """The (N,) losses; backward recomputes the logits chunk by chunk with the output's gradient as scale."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, ignore_index, z_loss, chunk_size, backend):
        losses, *_ = _head_kernel(backend, hidden, weight, bias, labels, None, ignore_index, z_loss, chunk_size)
        ctx.save_for_backward(hidden, weight, bias, labels)
        ctx.args = (ignore_index, z_loss, chunk_size, backend)
        return losses

    @staticmethod
    def backward(ctx, grad):
        hidden, weight, bias, labels = ctx.saved_tensors
        ignore_index, z_loss, chunk_size, backend = ctx.args
        need = ctx.needs_input_grad
        if not any(need[:3]):
            return (None,) * 8
        _, grad_hidden, grad_weight, grad_bias = _head_kernel(backend, hidden, weight, bias, labels, grad.contiguous(),
                                                              ignore_index, z_loss, chunk_size)
        return (grad_hidden if need[0] else None, grad_weight if need[1] else None,
                grad_bias if need[2] and bias is not None else None, None, None, None, None, None)


# --------------------------------------------------------------------------------------------
# MAPNet proposal sampling.


class ProposalBatch(NamedTuple):
    """Corrupted ids, int64 labels (-100 where not masked) and float32 importance weights (0 there)."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    weights: torch.Tensor


SAMPLINGS = ("topk", "poisson", "systematic")  # index = the op's sampling code (reference.SAMPLING_*)
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
    sampling: str = "systematic",
    weighting: str = "token",
    mask_replace_prob: float = 0.8,
    random_replace_prob: float = 0.1,
    seed: int | torch.Tensor = 0,
    row_ids: torch.Tensor | None = None,
    epoch: int | torch.Tensor = 0,
    backend: str = "auto",
    rate: torch.Tensor | None = None,
) -> ProposalBatch:
    """MAPNet masking: positions drawn from a proposal q over each row's maskable positions, with importance weights.

    q = (1 - uniform_mix) softmax(scores / temperature) + uniform_mix / n over the n maskable
    positions (0 elsewhere); k = :func:`fastmask.masked_count` (n, p). ``sampling``:

    * ``"systematic"`` (default): exactly k positions with inclusion probabilities pi_i = k q_i,
      capped at 1 with the excess spread over the others (sum pi = k), known exactly: integer
      weights W_i = max(1, floor(q_i 2^24)), a random order and one uniform offset per row
      (:func:`fastmask.reference.systematic_selection`); O(n) after the row's ranking.
    * ``"topk"``: exactly k without replacement (Gumbel-top-k on log q); its inclusion
      probabilities have no closed form, and pi_i = min(1, k q_i) misstates them when q is peaked.
    * ``"poisson"``: each position independently with pi_i = min(1, k q_i): k on average.

    Then the 80/10/10 rule. ``weighting="token"``: w_i = (k / n) / pi_i on sampled positions, so
    that E[sum w_i l_i] is the uniform-masking expectation: exact for systematic and Poisson
    sampling, approximate for top-k. ``"sequence"``: the paper author's variant,
    one weight per row, prod over sampled i of 1 / (n q_i), clipped to [0.8, 1.2] and divided by
    the batch mean. uniform_mix = 1 is uniform masking with weights 1.

    A row with a non-finite score (nan, inf) is sampled uniformly (as with uniform_mix = 1)
    rather than from a garbage distribution; checking for them on the host would sync.
    Integer outputs are bit-identical on every backend; no host sync. ``seed``, ``epoch``: as in
    :func:`mask_tokens` (ints, or 0-dim int64 tensors read on the device).

    ``rate``: a masking probability held in an int64 (3,) tensor (:func:`fastmask.mask_rate`) on the
    device of ``input_ids``, read by the kernel when it runs in place of ``mlm_probability``;
    :func:`fastmask.set_mask_rate` rewrites it in place (no host sync), so a rate schedule needs no
    recompilation or re-capture.
    """
    _choice("sampling", sampling, SAMPLINGS)
    _choice("weighting", weighting, WEIGHTINGS)
    t_mask, t_random = replacement_thresholds(mask_replace_prob, random_replace_prob)
    args = (input_ids, scores, maskable, _row_ids(row_ids, input_ids), *_philox_key("proposal_mask", seed, epoch),
            *count_fraction(mlm_probability),
            uniform_mix, temperature, SAMPLINGS.index(sampling), weighting == "sequence",
            t_mask, t_random, mask_token_id, vocab_size, rate)
    return ProposalBatch(*_call("proposal_mask", backend, args, ranked=sampling != "poisson"))


# What `from fastmask.ops import *` (fastmask/__init__.py) exports: the wrapper of every op of the
# table that has one, and the types and helpers around them.
__all__ = [*(spec.name for spec in library.OPS.values() if spec.wrapper),
           "MaskedBatch", "MaskedPositions", "ProposalBatch", "check_capacity"]
