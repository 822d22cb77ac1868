"""Triton kernel of MAPNet proposal sampling; bit-exact twin of ``reference.proposal_mask``.

One program per row. Rows of up to ``common.LONG_ROW`` tokens are held whole in registers
(BLOCK = next power of two >= L):

* softmax of score / temperature over the maskable positions, with the canonical exp below and
  the normaliser summed exactly in 40-bit fixed point (int64), so the reduction order is free;
* q (proposal) and pi = min(1, k q) from the same formulas, in the same order, as the reference;
* top-k: packed keys (bits of -log(U) / q << 32) | position are sorted with ``tl.sort`` and the
  k-th smallest is a threshold (as the exact-count kernel of :mod:`fastmask.triton.masking`);
  Poisson: U < pi elementwise;
* systematic: integer weights W = max(1, floor(q 2**24)) (int64); capping by rounds of the rule
  "cap every uncapped i with (k - m) W_i >= A" (one row reduction each, until a round caps
  nothing), so the capped set is "W >= its smallest weight" and A the uncapped total; then lanes
  become ranks: the exact-count packed keys (r0 >> 1 << 32) | position are sorted, ``tl.gather``
  moves each position's uncapped weight (-1 if capped) to its rank's lane, and a ``tl.cumsum``
  there is the cumulative weight C. Lane j then decides (one offset U from the r3 word of
  position 0; points U + t A against [r (C - W), r C)) and writes the position of rank j, with
  r1/r2 redrawn there, as the random partitions of :mod:`fastmask.triton.masking` do;
* the 80/10/10 corruption, the Philox draws, the exact count and the packed keys are
  :mod:`fastmask.triton.common`'s; weights are written per token (token mode) or from a row sum
  of canonical logs (sequence mode), then divided by their batch mean after the kernel.

Longer rows run a long-row kernel with the same helpers, never holding the row in registers: a pass
for n, the non-finite check and the maximum, one for the fixed-point normaliser, then (top-k) one
radix-select pass per digit of the k-th smallest key (see :mod:`fastmask.triton.common`), (sequence
weights) one for the log sum, and a last one that writes; each recomputes its chunk's q and pi.
Systematic long rows instead run their own long-row kernel, in tiles: grid (row, block of
``common.PAIR_BLOCK_I`` positions); each program makes the row passes above, one for A and one per capping round, then
sums the cumulative weight of its positions pair by pair (the uncapped weight of every position
at or before it by (r0 >> 1, position), ``common.PAIR_BLOCK_J // 2`` at a time, as the long rows'
random partitions rank). No program sees the whole row's choices, so in sequence mode each writes
1 where chosen and its share of the log sum, and a second kernel writes the row's weight there.

Every float that feeds a decision is float32 with correctly rounded +, -, *, / only: division is
``tl.math.div_rn`` (plain ``/`` may be approximate on GPUs) and the kernel is launched with
``enable_fp_fusion=False`` (no mul+add contraction into FMA). Systematic sampling decides on
integers only; its pi = float32(r W) / float32(A) is for the weights.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmask import reference
from fastmask.triton import common
from fastmask.triton.common import (
    CORRUPT_ARGS,
    COUNT_ARGS,
    PHILOX_KEY_ARGS,
    LOW32,
    RADIX,
    RADIX_BITS,
    UNRANKED_KEY,
    as_bytes,
    corrupt,
    exact_count,
    kth_smallest,
    radix_histogram,
    radix_narrow,
    ranked_launch,
    replacement,
    philox_key_args,
    philox_key,
    rate_args,
    read_count_fraction,
    sorted_rank_keys,
    take_first,
    token_draw,
)


def _f32_rounded(value: float) -> float:
    """The float32 rounding of `value`, as a Python float (exact, so no later rounding differs)."""
    return float(torch.tensor(value, dtype=torch.float32))


# The reference's float32 constants (fastmask.reference: LN2_HI, ..., the Taylor coefficients).
_LN2_HI = tl.constexpr(_f32_rounded(reference.LN2_HI))
_LN2_LO = tl.constexpr(_f32_rounded(reference.LN2_LO))
_LOG2E = tl.constexpr(_f32_rounded(reference.LOG2E))
_EXP_CUTOFF = tl.constexpr(_f32_rounded(reference.EXP_CUTOFF))
_SQRT2 = tl.constexpr(_f32_rounded(reference.SQRT2))
_FIXED_ONE = tl.constexpr(_f32_rounded(reference.FIXED_ONE))
_INV_FIXED_ONE = tl.constexpr(_f32_rounded(1.0 / reference.FIXED_ONE))
_EXP_C720 = tl.constexpr(_f32_rounded(1.0 / 720))
_EXP_C120 = tl.constexpr(_f32_rounded(1.0 / 120))
_EXP_C24 = tl.constexpr(_f32_rounded(1.0 / 24))
_EXP_C6 = tl.constexpr(_f32_rounded(1.0 / 6))
_LOG_C9 = tl.constexpr(_f32_rounded(1.0 / 9))
_LOG_C7 = tl.constexpr(_f32_rounded(1.0 / 7))
_LOG_C5 = tl.constexpr(_f32_rounded(1.0 / 5))
_LOG_C3 = tl.constexpr(_f32_rounded(1.0 / 3))
_TWO_M23 = tl.constexpr(_f32_rounded(2.0**-23))
_TWO_M24 = tl.constexpr(_f32_rounded(2.0**-24))
_WEIGHT_MIN = tl.constexpr(_f32_rounded(0.8))
_WEIGHT_MAX = tl.constexpr(_f32_rounded(1.2))
_EXP_FIELD = tl.constexpr(0x7F800000)  # float32 exponent bits: all set means inf or nan
_INT32_TILE = tl.constexpr(2**31 >> reference.SYSTEMATIC_BITS)  # weights W <= 2**24 whose sum surely fits int32: fewer
_SYSTEMATIC_ONE = tl.constexpr(float(1 << reference.SYSTEMATIC_BITS))  # W = floor(q * 2**24): exact scaling
_UNCAPPED = tl.constexpr(1 << 62)  # capping threshold before anything is capped: above every weight
SAMPLING_TOPK = tl.constexpr(reference.SAMPLING_TOPK)
SAMPLING_POISSON = tl.constexpr(reference.SAMPLING_POISSON)
SAMPLING_SYSTEMATIC = tl.constexpr(reference.SAMPLING_SYSTEMATIC)


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _div(a, b):
    """Correctly rounded a / b; div_rn does not broadcast a scalar against a block by itself."""
    a, b = tl.broadcast(a, b)
    return tl.math.div_rn(a, b)


@triton.jit
def _canonical_exp(x):
    """reference.canonical_exp: exp for float32 x < 88 from +, -, *, floor and exponent bits."""
    k = tl.floor(x * _LOG2E + 0.5)
    r = (x - k * _LN2_HI) - k * _LN2_LO
    p = _EXP_C720 * r + _EXP_C120
    p = p * r + _EXP_C24
    p = p * r + _EXP_C6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    # 2**k from its exponent bits (k clamped so the field stays >= 1; x < -64 is 0 anyway).
    scale = ((tl.maximum(k, -126.0).to(tl.int32) + 127) << 23).to(tl.float32, bitcast=True)
    return tl.where(x < _EXP_CUTOFF, 0.0, p * scale)


@triton.jit
def _canonical_log(u):
    """reference.canonical_log: log for positive normal u from +, -, *, / and exponent bits."""
    bits = u.to(tl.int32, bitcast=True)
    e = ((bits >> 23) & 0xFF) - 127
    m = ((bits & 0x7FFFFF) | (127 << 23)).to(tl.float32, bitcast=True)  # mantissa in [1, 2)
    big = m > _SQRT2
    m = tl.where(big, m * 0.5, m)
    ef = (e + big.to(tl.int32)).to(tl.float32)
    s = _div(m - 1.0, m + 1.0)
    s2 = s * s
    t = _LOG_C9 * s2 + _LOG_C7
    t = t * s2 + _LOG_C5
    t = t * s2 + _LOG_C3
    t = t * s2 + 1.0
    return (ef * _LN2_LO + (s + s) * t) + ef * _LN2_HI


@triton.jit
def _scaled_scores(score, temperature):
    """Scores / temperature (temperature splatted to a block: the interpreter passes float
    arguments as Python floats)."""
    return _div(score, tl.zeros_like(score) + temperature)


@triton.jit
def _non_finite(x):
    return (x.to(tl.int32, bitcast=True) & _EXP_FIELD) == _EXP_FIELD


@triton.jit
def _softmax_terms(x, use, row_max):
    """exp(x - row max) where used, else 0: the softmax numerators."""
    return tl.where(use, _canonical_exp(tl.where(use, x - row_max, 0.0)), 0.0)


@triton.jit
def _fixed_sum(term):
    """The block's share of the exact normaliser (int64 sum: any order gives the same Z)."""
    return tl.sum(tl.floor(term * _FIXED_ONE).to(tl.int64), axis=0)


@triton.jit
def _inclusion(term, maskable, fixed, finite, kf, nf, uniform_mix):
    """reference.proposal_inclusion from the row's softmax terms and normaliser: (q, pi) blocks."""
    z = tl.maximum(fixed.to(tl.float32) * _INV_FIXED_ONE, 1.0)  # int64 -> float32 rounds to nearest
    p = _div(term, z)
    # Divisor for the row constants: where n == 0 nothing is maskable and they are never used.
    nf_div = tl.maximum(nf, 1.0)
    # In the reference's order of operations.
    eps = tl.where(finite, uniform_mix, 1.0)
    one_minus_eps = 1.0 - eps
    q = tl.where(maskable, one_minus_eps * p + _div(eps, nf_div), 0.0)
    pi_a = kf * one_minus_eps
    pi_b = _div(kf * eps, nf_div)
    pi = tl.where(maskable, tl.minimum(pi_a * p + pi_b, 1.0), 0.0)
    return q, pi


@triton.jit
def _poisson_chosen(r0, pi, maskable):
    u = (r0 >> 8).to(tl.float32) * _TWO_M24  # exact: r0 >> 8 < 2**24
    return maskable & (u < pi)


@triton.jit
def _topk_key(r0, q, maskable):
    """The uint32 ranking key: bits of -log(U) / q (positive floats order like their bits);
    non-maskable positions rank after every key."""
    u = ((r0 >> 9).to(tl.float32) + 0.5) * _TWO_M23  # in (0, 1), so -log(u) > 0
    positive = q > 0.0
    key = tl.where(positive, _div(-_canonical_log(u), tl.where(positive, q, 1.0)), float("inf"))
    return tl.where(maskable, key.to(tl.int32, bitcast=True).to(tl.uint32), LOW32)


@triton.jit
def _chosen_log_sum(chosen, q, nf):
    """The block's share of the sum of log(n q) over chosen tokens (log 1 = 0 elsewhere)."""
    log_n_q = _canonical_log(tl.where(chosen, nf * q, 1.0))
    return tl.sum(tl.where(chosen, log_n_q, 0.0), axis=0)


@triton.jit
def _row_weight(log_sum):
    """The row's clipped sequence weight from its sum of log(n q) over the chosen tokens."""
    row_log = tl.minimum(tl.maximum(-log_sum, -1.0), 1.0)
    return tl.minimum(tl.maximum(_canonical_exp(row_log), _WEIGHT_MIN), _WEIGHT_MAX)


@triton.jit
def _weights(chosen, pi, kf, nf, log_sum, SEQUENCE_WEIGHTS: tl.constexpr):
    """Sequence mode: the row's clipped weight from its log sum; token mode: (k / n) / pi."""
    if SEQUENCE_WEIGHTS:
        return tl.where(chosen, _row_weight(log_sum), 0.0)
    k_over_n = _div(kf, tl.maximum(nf, 1.0))  # chosen implies n >= 1
    return tl.where(chosen, _div(k_over_n, tl.where(chosen, pi, 1.0)), 0.0)


@triton.jit
def _write_ids_labels_weights(
    ids_ptrs, out_ids_ptrs, labels_ptrs, weights_ptrs, in_row, chosen, weights, r1, r2,
    mask_threshold, random_threshold, mask_token_id, vocab_size,
):
    """The 80/10/10 corruption of the chosen tokens; stores ids, labels and weights per lane."""
    ids = tl.load(ids_ptrs, mask=in_row, other=0).to(tl.int64)
    replaced = replacement(ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    out, labels = corrupt(ids, chosen, replaced)
    tl.store(out_ids_ptrs, out.to(out_ids_ptrs.dtype.element_ty), mask=in_row)
    tl.store(labels_ptrs, labels, mask=in_row)
    tl.store(weights_ptrs, weights, mask=in_row)


@triton.jit
def _systematic_weights(q, maskable):
    """reference.systematic_weights: W = max(1, floor(q 2**24)) where maskable, else 0 (int64; the
    scaling by a power of two is exact, so W comes from q's bits alone)."""
    return tl.where(maskable, tl.maximum(tl.floor(q * _SYSTEMATIC_ONE).to(tl.int64), 1), 0)


@triton.jit
def _capping_round(w, threshold, k, m, total):
    """One round of the capping rule on a block of weights (capped so far: W >= threshold; m of
    them; A = total): the count, weight sum and smallest weight of the uncapped positions with
    (k - m) W >= A. A round's new caps are all larger than the uncapped rest (the rule depends on
    W alone), so the capped set stays "W >= the smallest capped weight"."""
    new = (w > 0) & (w < threshold) & ((k - m) * w >= total)
    return (tl.sum(new.to(tl.int64), axis=0), tl.sum(tl.where(new, w, 0), axis=0),
            tl.min(tl.where(new, w, _UNCAPPED), axis=0))


@triton.jit
def _capping_start(n, k, total):
    """The capping state before the first round: (threshold, m, A, whether rounds are needed). With
    k = n every round caps the weights >= the uncapped mean, at least one, until all are capped (as
    many rounds as distinct levels): that fixed point is taken at once (every maskable W >= 1)."""
    everything = k == n
    threshold = tl.where(everything, 1, _UNCAPPED).to(tl.int64)
    m = tl.where(everything, n, 0).to(tl.int64)
    return threshold, m, tl.where(everything, 0, total).to(tl.int64), tl.where(everything, 0, 1).to(tl.int64)


@triton.jit
def _systematic_capping(w, n, k):
    """reference.systematic_capped on a row held whole: rounds of the rule until one caps nothing.
    Returns the threshold (capped iff W >= it), their count m and the uncapped total A."""
    threshold, m, total, new_count = _capping_start(n, k, tl.sum(w, axis=0))
    while new_count > 0:
        new_count, new_sum, new_min = _capping_round(w, threshold, k, m, total)
        threshold = tl.minimum(threshold, new_min)
        m += new_count
        total -= new_sum
    return threshold, m, total


@triton.jit
def _systematic_offset(r3, offs, total):
    """The row's offset U = floor(u A / 2**32), u the r3 word of position 0 (u < 2**32, A < 2**27)."""
    u = tl.max(tl.where(offs == 0, r3, 0), axis=0).to(tl.int64)
    return (u * total) >> 32


@triton.jit
def _points_below(x, offset, divisor):
    """#{t >= 0 : U + t A < x} (divisor = max(A, 1))."""
    return tl.where(x > offset, (x - offset + divisor - 1) // divisor, 0)


@triton.jit
def _systematic_draw(w, cumulative, capped, r, offset, total):
    """reference.systematic_selection from the uncapped weights `w` (0 where capped or not
    maskable) and their cumulative sums C in rank order: chosen (capped, or a point U + t A in
    [r (C - W), r C)) and pi (1 where capped, else float32(r W) / float32(max(A, 1)))."""
    divisor = tl.maximum(total, 1)
    drawn = (w > 0) & (_points_below(r * cumulative, offset, divisor) > _points_below(r * (cumulative - w), offset, divisor))
    pi = tl.where(capped, 1.0, _div((r * w).to(tl.float32), divisor.to(tl.float32)))
    return capped | drawn, pi


@triton.jit
def _row_statistics(scores_ptr, maskable_ptr, base, L, temperature, count_num, count_den, BLOCK: tl.constexpr):
    """A long row's statistics in two passes of BLOCK lanes: n, k, whether every maskable scaled
    score is finite, their maximum (used only when all are), and the fixed-point normaliser."""
    lane = tl.arange(0, BLOCK)
    n = tl.zeros((), tl.int64)
    non_finite = tl.zeros((), tl.int32)
    row_max = tl.full((), float("-inf"), tl.float32)
    for start in range(0, L, BLOCK):
        offs = start + lane
        in_row = offs < L
        maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
        x = _scaled_scores(tl.load(scores_ptr + base + offs, mask=in_row, other=0).to(tl.float32), temperature)
        n += tl.sum(maskable.to(tl.int64), axis=0)
        non_finite += tl.sum((maskable & _non_finite(x)).to(tl.int32), axis=0)
        row_max = tl.maximum(row_max, tl.max(tl.where(maskable, x, float("-inf")), axis=0))
    finite = non_finite == 0

    fixed = tl.zeros((), tl.int64)
    for start in range(0, L, BLOCK):
        offs = start + lane
        in_row = offs < L
        maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
        x = _scaled_scores(tl.load(scores_ptr + base + offs, mask=in_row, other=0).to(tl.float32), temperature)
        fixed += _fixed_sum(_softmax_terms(x, maskable & finite, row_max))
    return n, exact_count(n, count_num, count_den), finite, row_max, fixed


@triton.jit
def _chunk_q(scores_ptr, maskable_ptr, base, offs, L, temperature, uniform_mix, row_max, fixed, finite, kf, nf):
    """A chunk of a long row from the row's statistics: in the row, maskable, q, pi."""
    in_row = offs < L
    maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
    x = _scaled_scores(tl.load(scores_ptr + base + offs, mask=in_row, other=0).to(tl.float32), temperature)
    term = _softmax_terms(x, maskable & finite, row_max)
    q, pi = _inclusion(term, maskable, fixed, finite, kf, nf, uniform_mix)
    return in_row, maskable, q, pi


@triton.jit
def _chunk_inclusion(
    scores_ptr, maskable_ptr, base, offs, L, row_id, seed_lo, seed_hi, epoch,
    temperature, uniform_mix, row_max, fixed, finite, kf, nf,
):
    """A chunk of a long row from the row's statistics: in the row, maskable, q, pi, r0, r1, r2."""
    in_row, maskable, q, pi = _chunk_q(
        scores_ptr, maskable_ptr, base, offs, L, temperature, uniform_mix, row_max, fixed, finite, kf, nf)
    r0, r1, r2, _ = token_draw(offs, row_id, seed_lo, seed_hi, epoch)
    return in_row, maskable, q, pi, r0, r1, r2


@triton.jit
def _chunk_systematic_weights(
    scores_ptr, maskable_ptr, base, offs, L, temperature, uniform_mix, row_max, fixed, finite, kf, nf,
):
    """A chunk's weights W (0 where not maskable or outside the row)."""
    _, maskable, q, _ = _chunk_q(scores_ptr, maskable_ptr, base, offs, L, temperature, uniform_mix, row_max, fixed,
                                 finite, kf, nf)
    return _systematic_weights(q, maskable)


@triton.jit
def _chunk_chosen(r0, q, pi, maskable, in_row, k, kth, ties_to_take, ties_before, SAMPLING: tl.constexpr):
    """The chosen tokens of a chunk of a long row, and the top-k ties up to the chunk's end."""
    if SAMPLING == SAMPLING_POISSON:
        return _poisson_chosen(r0, pi, maskable), ties_before
    chosen, ties_before = take_first(_topk_key(r0, q, maskable), in_row, kth, ties_to_take, ties_before)
    return chosen & maskable & (k > 0), ties_before


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(
    do_not_specialize=PHILOX_KEY_ARGS + COUNT_ARGS + ["uniform_mix", "temperature"] + CORRUPT_ARGS)
def _proposal_mask_kernel(
    ids_ptr, scores_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, weights_ptr, L,
    count_num, count_den, uniform_mix, temperature, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    SAMPLING: tl.constexpr, SEQUENCE_WEIGHTS: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= L.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    in_row = offs < L
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
    score = tl.load(scores_ptr + base + offs, mask=in_row, other=0).to(tl.float32)
    r0, r1, r2, r3 = token_draw(offs, row_id, seed_lo, seed_hi, epoch)

    # 1-3. q and pi; a non-finite maskable score makes the whole row uniform.
    n = tl.sum(maskable.to(tl.int64), axis=0)
    k = exact_count(n, count_num, count_den)
    kf = k.to(tl.float32)
    nf = n.to(tl.float32)
    x = _scaled_scores(score, temperature)
    finite = tl.sum((maskable & _non_finite(x)).to(tl.int32), axis=0) == 0
    use = maskable & finite
    row_max = tl.max(tl.where(use, x, float("-inf")), axis=0)
    term = _softmax_terms(x, use, row_max)
    q, pi = _inclusion(term, maskable, _fixed_sum(term), finite, kf, nf, uniform_mix)

    # 4. Selection.
    if SAMPLING == SAMPLING_SYSTEMATIC:
        # Weights and capping in position order; then lanes become ranks (lane j handles the
        # position of rank j, as the random partitions of fastmask.triton.masking do), so the
        # cumulative weights are a cumsum. Capped weights travel through the gather as -1.
        w = _systematic_weights(q, maskable)
        threshold, m, total = _systematic_capping(w, n, k)
        offset = _systematic_offset(r3, offs, total)
        _, ordered = sorted_rank_keys(tl.where(maskable, r0 >> 1, UNRANKED_KEY), offs, in_row)
        pos = tl.where(in_row, (ordered & LOW32).to(tl.int32), 0)
        ranked = offs < n  # the maskable positions have ranks 0..n-1
        moved = tl.gather(tl.where(w >= threshold, -1, w), pos, 0)
        capped = ranked & (moved < 0)
        w = tl.where(ranked, tl.maximum(moved, 0), 0)
        chosen, pi = _systematic_draw(w, tl.cumsum(w, axis=0), capped, k - m, offset, total)
        chosen = chosen & ranked
        if SEQUENCE_WEIGHTS:
            q = tl.gather(q, pos, 0)
        # r1/r2 of the position now on each lane: redrawn rather than permuted.
        _, r1, r2, _ = token_draw(pos, row_id, seed_lo, seed_hi, epoch)
    elif SAMPLING == SAMPLING_POISSON:
        pos = offs
        chosen = _poisson_chosen(r0, pi, maskable)
    else:
        pos = offs
        packed, ordered = sorted_rank_keys(_topk_key(r0, q, maskable), offs, in_row)
        # The first k maskable positions are exactly those <= the k-th smallest key.
        chosen = maskable & (packed <= kth_smallest(ordered, offs, k)) & (k > 0)

    # 5. Corruption and weights (the float sum's order only moves the last bits of the log sum).
    log_sum = _chosen_log_sum(chosen, q, nf) if SEQUENCE_WEIGHTS else 0.0
    _write_ids_labels_weights(ids_ptr + base + pos, out_ids_ptr + base + pos, labels_ptr + base + pos,
                  weights_ptr + base + pos, in_row, chosen, _weights(chosen, pi, kf, nf, log_sum, SEQUENCE_WEIGHTS),
                  r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit(
    do_not_specialize=PHILOX_KEY_ARGS + COUNT_ARGS + ["uniform_mix", "temperature"] + CORRUPT_ARGS)
def _proposal_mask_long_row_kernel(
    ids_ptr, scores_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, weights_ptr, L,
    count_num, count_den, uniform_mix, temperature, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    SAMPLING: tl.constexpr, SEQUENCE_WEIGHTS: tl.constexpr, BLOCK: tl.constexpr,
):
    # Long rows, top-k and Poisson: one program per row, walking it in chunks of BLOCK lanes; every
    # pass recomputes the chunk's q and pi from the row statistics of the first two.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    lane = tl.arange(0, BLOCK)
    n, k, finite, row_max, fixed = _row_statistics(
        scores_ptr, maskable_ptr, base, L, temperature, count_num, count_den, BLOCK)
    kf = k.to(tl.float32)
    nf = n.to(tl.float32)

    # Top-k: the k-th smallest key by radix select (any key when k == 0: nothing is taken).
    kth = tl.zeros((), tl.uint32)
    ties_to_take = k
    if SAMPLING == SAMPLING_TOPK:
        for shift in tl.static_range(32 - RADIX_BITS, -1, -RADIX_BITS):
            histogram = tl.zeros((RADIX,), tl.int32)
            for start in range(0, L, BLOCK):
                in_row, maskable, q, _, r0, _, _ = _chunk_inclusion(
                    scores_ptr, maskable_ptr, base, start + lane, L, row_id, seed_lo, seed_hi, epoch,
                    temperature, uniform_mix, row_max, fixed, finite, kf, nf)
                histogram += radix_histogram(_topk_key(r0, q, maskable), in_row, kth, shift)
            kth, ties_to_take = radix_narrow(histogram, kth, ties_to_take, shift)

    # Sequence weights need the row's sum over the chosen tokens before any weight is written.
    log_sum = tl.zeros((), tl.float32)
    if SEQUENCE_WEIGHTS:
        ties_before = tl.zeros((), tl.int64)
        for start in range(0, L, BLOCK):
            offs = start + lane
            in_row, maskable, q, pi, r0, _, _ = _chunk_inclusion(
                scores_ptr, maskable_ptr, base, offs, L, row_id, seed_lo, seed_hi, epoch,
                temperature, uniform_mix, row_max, fixed, finite, kf, nf)
            chosen, ties_before = _chunk_chosen(r0, q, pi, maskable, in_row, k, kth, ties_to_take, ties_before, SAMPLING)
            log_sum += _chosen_log_sum(chosen, q, nf)

    ties_before = tl.zeros((), tl.int64)
    for start in range(0, L, BLOCK):
        offs = start + lane
        in_row, maskable, q, pi, r0, r1, r2 = _chunk_inclusion(
            scores_ptr, maskable_ptr, base, offs, L, row_id, seed_lo, seed_hi, epoch,
            temperature, uniform_mix, row_max, fixed, finite, kf, nf)
        chosen, ties_before = _chunk_chosen(r0, q, pi, maskable, in_row, k, kth, ties_to_take, ties_before, SAMPLING)
        _write_ids_labels_weights(ids_ptr + base + offs, out_ids_ptr + base + offs, labels_ptr + base + offs,
                      weights_ptr + base + offs, in_row, chosen, _weights(chosen, pi, kf, nf, log_sum, SEQUENCE_WEIGHTS),
                      r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit(
    do_not_specialize=PHILOX_KEY_ARGS + COUNT_ARGS + ["uniform_mix", "temperature"] + CORRUPT_ARGS)
def _proposal_systematic_long_row_kernel(
    ids_ptr, scores_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, weights_ptr, log_sums_ptr, L,
    count_num, count_den, uniform_mix, temperature, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    SEQUENCE_WEIGHTS: tl.constexpr, BLOCK: tl.constexpr, SCAN_BLOCK: tl.constexpr,
):
    # Long rows, systematic: grid (B, cdiv(L, BLOCK)). Each program finds its row's statistics and
    # capping in passes of BLOCK lanes, then the cumulative weights of its BLOCK positions pair by
    # pair, SCAN_BLOCK others at a time (O(L) per position). Sequence mode: it writes 1 where
    # chosen and its share of the row's log sum; _sequence_weights_kernel then writes the weights.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    tile = tl.program_id(1)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    tl.static_assert(SCAN_BLOCK < _INT32_TILE, "a tile's weight sum must fit int32")
    lane = tl.arange(0, BLOCK)
    n, k, finite, row_max, fixed = _row_statistics(
        scores_ptr, maskable_ptr, base, L, temperature, count_num, count_den, BLOCK)
    kf = k.to(tl.float32)
    nf = n.to(tl.float32)

    # Capping: one pass for A, then one per round of the rule until a round caps nothing.
    total = tl.zeros((), tl.int64)
    for start in range(0, L, BLOCK):
        total += tl.sum(_chunk_systematic_weights(scores_ptr, maskable_ptr, base, start + lane, L, temperature,
                                                  uniform_mix, row_max, fixed, finite, kf, nf), axis=0)
    threshold, m, total, new_count = _capping_start(n, k, total)
    while new_count > 0:
        new_count = tl.zeros((), tl.int64)
        new_sum = tl.zeros((), tl.int64)
        new_min = tl.full((), _UNCAPPED, tl.int64)
        for start in range(0, L, BLOCK):
            w = _chunk_systematic_weights(scores_ptr, maskable_ptr, base, start + lane, L, temperature, uniform_mix,
                                          row_max, fixed, finite, kf, nf)
            chunk_count, chunk_sum, chunk_min = _capping_round(w, threshold, k, m, total)
            new_count += chunk_count
            new_sum += chunk_sum
            new_min = tl.minimum(new_min, chunk_min)
        threshold = tl.minimum(threshold, new_min)
        m += new_count
        total -= new_sum

    # The tile's uncapped weights, and their cumulative sums in rank order: the uncapped weight of
    # every position at or before it by (r0 >> 1, position) (non-maskable ones weigh 0).
    offs = tile * BLOCK + lane
    in_row, maskable, q, _, r0, r1, r2 = _chunk_inclusion(
        scores_ptr, maskable_ptr, base, offs, L, row_id, seed_lo, seed_hi, epoch,
        temperature, uniform_mix, row_max, fixed, finite, kf, nf)
    w = _systematic_weights(q, maskable)
    capped = w >= threshold
    w = tl.where(capped, 0, w)
    packed = ((r0 >> 1).to(tl.uint64) << 32) | offs.to(tl.uint64)  # (r0 >> 1, position) in one key
    cumulative = tl.zeros((BLOCK,), tl.int64)
    scan = tl.arange(0, SCAN_BLOCK)
    for start in range(0, L, SCAN_BLOCK):
        other = start + scan
        other_w = _chunk_systematic_weights(scores_ptr, maskable_ptr, base, other, L, temperature, uniform_mix,
                                            row_max, fixed, finite, kf, nf)
        other_w = tl.where(other_w >= threshold, 0, other_w).to(tl.int32)  # W <= 2**24: a tile's sum fits
        # Named, not `_`: a loop may not re-type a variable of the enclosing scope.
        other_r0, other_r1, other_r2, other_r3 = token_draw(other, row_id, seed_lo, seed_hi, epoch)
        other_packed = ((other_r0 >> 1).to(tl.uint64) << 32) | other.to(tl.uint64)
        at_or_before = other_packed[None, :] <= packed[:, None]
        cumulative += tl.sum(tl.where(at_or_before, other_w[None, :], 0), axis=1).to(tl.int64)

    first_r0, first_r1, first_r2, r3 = token_draw(lane * 0, row_id, seed_lo, seed_hi, epoch)
    chosen, pi = _systematic_draw(w, cumulative, capped, k - m, _systematic_offset(r3, lane, total), total)
    chosen = chosen & maskable
    if SEQUENCE_WEIGHTS:
        tl.store(log_sums_ptr + row * tl.num_programs(1) + tile, _chosen_log_sum(chosen, q, nf))
        weights = tl.where(chosen, 1.0, 0.0)
    else:
        weights = _weights(chosen, pi, kf, nf, 0.0, False)
    _write_ids_labels_weights(ids_ptr + base + offs, out_ids_ptr + base + offs, labels_ptr + base + offs,
                  weights_ptr + base + offs, in_row, chosen, weights,
                  r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit
def _sequence_weights_kernel(weights_ptr, log_sums_ptr, L, T, BLOCK: tl.constexpr, T_BLOCK: tl.constexpr):
    # Grid (B, cdiv(L, BLOCK)): the row's clipped weight, from the log sums of its T tiles, on the
    # tokens marked chosen (weight 1) by _proposal_systematic_long_row_kernel.
    row = tl.program_id(0).to(tl.int64)
    log_sum = tl.zeros((), tl.float32)
    for start in range(0, T, T_BLOCK):
        t = start + tl.arange(0, T_BLOCK)
        log_sum += tl.sum(tl.load(log_sums_ptr + row * T + t, mask=t < T, other=0.0), axis=0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_row = offs < L
    chosen = tl.load(weights_ptr + row * L + offs, mask=in_row, other=0.0) != 0.0
    tl.store(weights_ptr + row * L + offs, tl.where(chosen, _row_weight(log_sum), 0.0), mask=in_row)


# --------------------------------------------------------------------------------------------
# Host function (signature and return convention of fastmask.reference.proposal_mask)
# --------------------------------------------------------------------------------------------

_LOG_SUMS_BLOCK = 128  # tiles' log sums read at a time by _sequence_weights_kernel
# The systematic tiles compare PAIR_BLOCK_I positions with PAIR_BLOCK_J / 2 others at a time: each
# of those also needs its Philox word and q in flight, and full-width tiles took 166-253 registers
# for sm_90 (half-width: under 80, so several programs share an SM).


def proposal_mask(
    input_ids, scores, maskable, row_ids, seed, epoch, count_num, count_den, uniform_mix, temperature,
    sampling, sequence_weights, mask_threshold, random_threshold, mask_token_id, vocab_size, rate=None,
):
    """MAPNet masking: positions drawn from the proposal q, with importance weights.

    Returns (ids, labels int64, weights float32), bit-exact to the reference for ids and labels.
    """
    batch, length = input_ids.shape
    device = input_ids.device
    out_ids = torch.empty((batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((batch, length), dtype=torch.int64, device=device)
    weights = torch.empty((batch, length), dtype=torch.float32, device=device)
    if batch == 0 or length == 0:
        return out_ids, labels, weights
    sampling = int(sampling)
    sequence_weights = bool(sequence_weights)
    inputs = (input_ids.contiguous(), scores.contiguous(), as_bytes(maskable.contiguous()), row_ids.contiguous(),
              out_ids, labels, weights)
    (_, count_num, count_den), rate_kwargs = rate_args(rate, device, 0, count_num, count_den)
    scalars = (
        length, count_num, count_den,
        # Rounded to float32 here, as the reference does.
        _f32_rounded(uniform_mix), _f32_rounded(temperature),
        int(mask_threshold), int(random_threshold), int(mask_token_id), int(vocab_size),
    )
    launch = ranked_launch(length)
    if launch.long_row and sampling == reference.SAMPLING_SYSTEMATIC:
        tiles = triton.cdiv(length, common.PAIR_BLOCK_I)
        log_sums = torch.empty((batch, tiles), dtype=torch.float32, device=device) if sequence_weights else weights
        _proposal_systematic_long_row_kernel[(batch, tiles)](
            *inputs, log_sums, *scalars, **philox_key_args(seed, epoch, device), **rate_kwargs,
            SEQUENCE_WEIGHTS=sequence_weights,
            BLOCK=common.PAIR_BLOCK_I, SCAN_BLOCK=max(common.PAIR_BLOCK_J // 2, 1), num_warps=common.PAIR_WARPS,
            enable_fp_fusion=False,
        )
        if sequence_weights:
            _sequence_weights_kernel[(batch, triton.cdiv(length, common.LONG_ROW_BLOCK))](
                weights, log_sums, length, tiles, BLOCK=common.LONG_ROW_BLOCK, T_BLOCK=_LOG_SUMS_BLOCK,
                num_warps=common.LONG_ROW_WARPS, enable_fp_fusion=False,
            )
    else:
        kernel = _proposal_mask_long_row_kernel if launch.long_row else _proposal_mask_kernel
        kernel[(batch,)](
            *inputs, *scalars, **philox_key_args(seed, epoch, device), **rate_kwargs, SAMPLING=sampling,
            SEQUENCE_WEIGHTS=sequence_weights, BLOCK=launch.block, num_warps=launch.num_warps, enable_fp_fusion=False,
        )
    return out_ids, labels, reference.divide_by_batch_mean(weights) if sequence_weights else weights
