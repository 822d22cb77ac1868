"""Triton kernel of MAPNet proposal sampling; bit-exact twin of ``reference.proposal_mask``.

One program per row holds the whole row in registers (BLOCK = next power of two >= L):

* softmax of score / temperature over the maskable positions, with the canonical exp below and
  the normaliser summed exactly in 40-bit fixed point (int64), so the reduction order is free;
* q (proposal) and pi = min(1, k q) from the same formulas, in the same order, as the reference;
* top-k: packed keys (bits of -log(U) / q << 32) | position are sorted with ``tl.sort`` and the
  k-th smallest is a threshold (as the exact-count kernel of :mod:`fastmask.triton.masking`);
  Poisson: U < pi elementwise;
* the 80/10/10 corruption, the Philox draws, the exact count and the packed keys are
  :mod:`fastmask.triton.common`'s; weights are written per token (token mode) or from a row sum
  of canonical logs (sequence mode), then divided by their batch mean after the kernel.

Every float that feeds a decision is float32 with correctly rounded +, -, *, / only: division is
``tl.math.div_rn`` (plain ``/`` may be approximate on GPUs) and the kernel is launched with
``enable_fp_fusion=False`` (no mul+add contraction into FMA).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmask import reference
from fastmask.triton.common import (
    CORRUPT_ARGS,
    COUNT_ARGS,
    DRAW_ARGS,
    LOW32,
    as_bytes,
    corrupt,
    exact_count,
    kth_smallest,
    replacement,
    row_block,
    row_warps,
    stream_args,
    stream_key,
    sorted_rank_keys,
    token_draw,
)


def _f32(value: float) -> float:
    """The float32 rounding of `value`, as a Python float (exact, so no later rounding differs)."""
    return float(torch.tensor(value, dtype=torch.float32))


# The reference's float32 constants (fastmask.reference: LN2_HI, ..., the Taylor coefficients).
_LN2_HI = tl.constexpr(_f32(reference.LN2_HI))
_LN2_LO = tl.constexpr(_f32(reference.LN2_LO))
_LOG2E = tl.constexpr(_f32(reference.LOG2E))
_EXP_CUTOFF = tl.constexpr(_f32(reference.EXP_CUTOFF))
_SQRT2 = tl.constexpr(_f32(reference.SQRT2))
_FIXED_ONE = tl.constexpr(_f32(reference.FIXED_ONE))
_INV_FIXED_ONE = tl.constexpr(_f32(1.0 / reference.FIXED_ONE))
_EXP_C720 = tl.constexpr(_f32(1.0 / 720))
_EXP_C120 = tl.constexpr(_f32(1.0 / 120))
_EXP_C24 = tl.constexpr(_f32(1.0 / 24))
_EXP_C6 = tl.constexpr(_f32(1.0 / 6))
_LOG_C9 = tl.constexpr(_f32(1.0 / 9))
_LOG_C7 = tl.constexpr(_f32(1.0 / 7))
_LOG_C5 = tl.constexpr(_f32(1.0 / 5))
_LOG_C3 = tl.constexpr(_f32(1.0 / 3))
_TWO_M23 = tl.constexpr(_f32(2.0**-23))
_TWO_M24 = tl.constexpr(_f32(2.0**-24))
_WEIGHT_MIN = tl.constexpr(_f32(0.8))
_WEIGHT_MAX = tl.constexpr(_f32(1.2))
_EXP_FIELD = tl.constexpr(0x7F800000)  # float32 exponent bits: all set means inf or nan


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
def _proposal_inclusion(score, maskable, count_num, count_den, uniform_mix, temperature):
    """reference.proposal_inclusion of one row: (q block, pi block, k, n as float32)."""
    n = tl.sum(maskable.to(tl.int64), axis=0)
    k = exact_count(n, count_num, count_den)
    kf = k.to(tl.float32)
    nf = n.to(tl.float32)
    # Divisor for the row constants: where n == 0 nothing is maskable and they are never used.
    nf_div = tl.maximum(nf, 1.0)

    # 1. Scaled scores; a non-finite maskable one makes the whole row uniform.
    # (temperature splatted to a block: the interpreter passes float arguments as Python floats)
    x = _div(score, tl.zeros_like(score) + temperature)
    bad = maskable & ((x.to(tl.int32, bitcast=True) & _EXP_FIELD) == _EXP_FIELD)
    finite = tl.sum(bad.to(tl.int32), axis=0) == 0
    use = maskable & finite
    row_max = tl.max(tl.where(use, x, float("-inf")), axis=0)

    # 2. Softmax with the exact fixed-point normaliser (int64 sum: any order gives the same Z).
    term = tl.where(use, _canonical_exp(tl.where(use, x - row_max, 0.0)), 0.0)
    fixed = tl.sum(tl.floor(term * _FIXED_ONE).to(tl.int64), axis=0)
    z = tl.maximum(fixed.to(tl.float32) * _INV_FIXED_ONE, 1.0)  # int64 -> float32 rounds to nearest
    p = _div(term, z)

    # 3. Proposal q and inclusion probability pi, in the reference's order of operations.
    eps = tl.where(finite, uniform_mix, 1.0)
    one_minus_eps = 1.0 - eps
    q = tl.where(maskable, one_minus_eps * p + _div(eps, nf_div), 0.0)
    pi_a = kf * one_minus_eps
    pi_b = _div(kf * eps, nf_div)
    pi = tl.where(maskable, tl.minimum(pi_a * p + pi_b, 1.0), 0.0)
    return q, pi, k, nf


# --------------------------------------------------------------------------------------------
# Kernel
# --------------------------------------------------------------------------------------------


@triton.jit(
    do_not_specialize=DRAW_ARGS + COUNT_ARGS + ["uniform_mix", "temperature"] + CORRUPT_ARGS)
def _proposal_mask_kernel(
    ids_ptr, scores_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, weights_ptr, L,
    count_num, count_den, uniform_mix, temperature, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    POISSON: tl.constexpr, SEQUENCE_WEIGHTS: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= L.
    seed_lo, seed_hi, epoch = stream_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.arange(0, BLOCK)
    in_row = offs < L
    base = row * L
    ids = tl.load(ids_ptr + base + offs, mask=in_row, other=0)
    maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
    score = tl.load(scores_ptr + base + offs, mask=in_row, other=0).to(tl.float32)
    r0, r1, r2, _ = token_draw(offs, tl.load(row_ids_ptr + row), seed_lo, seed_hi, epoch)

    q, pi, k, nf = _proposal_inclusion(score, maskable, count_num, count_den, uniform_mix, temperature)
    kf = k.to(tl.float32)

    # 4. Selection.
    if POISSON:
        u = (r0 >> 8).to(tl.float32) * _TWO_M24  # exact: r0 >> 8 < 2**24
        chosen = maskable & (u < pi)
    else:
        u = ((r0 >> 9).to(tl.float32) + 0.5) * _TWO_M23  # in (0, 1), so -log(u) > 0
        positive = q > 0.0
        key = tl.where(positive, _div(-_canonical_log(u), tl.where(positive, q, 1.0)), float("inf"))
        # Positive floats order like their bits; non-maskable positions rank after every key.
        key_bits = key.to(tl.int32, bitcast=True).to(tl.uint32)
        packed, ordered = sorted_rank_keys(tl.where(maskable, key_bits, LOW32), offs, in_row)
        # The first k maskable positions are exactly those <= the k-th smallest key.
        chosen = maskable & (packed <= kth_smallest(ordered, offs, k)) & (k > 0)

    # 5. Corruption and weights.
    ids64 = ids.to(tl.int64)
    replaced = replacement(ids64, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    out, labels = corrupt(ids64, chosen, replaced)
    if SEQUENCE_WEIGHTS:
        # log 1 = 0 exactly where not chosen; the float sum's order only moves the last bits.
        log_n_q = _canonical_log(tl.where(chosen, nf * q, 1.0))
        log_sum = tl.sum(tl.where(chosen, log_n_q, 0.0), axis=0)
        row_log = tl.minimum(tl.maximum(-log_sum, -1.0), 1.0)
        row_weight = tl.minimum(tl.maximum(_canonical_exp(row_log), _WEIGHT_MIN), _WEIGHT_MAX)
        weights = tl.where(chosen, row_weight, 0.0)
    else:
        k_over_n = _div(kf, tl.maximum(nf, 1.0))  # chosen implies n >= 1
        weights = tl.where(chosen, _div(k_over_n, tl.where(chosen, pi, 1.0)), 0.0)

    tl.store(out_ids_ptr + base + offs, out.to(out_ids_ptr.dtype.element_ty), mask=in_row)
    tl.store(labels_ptr + base + offs, labels, mask=in_row)
    tl.store(weights_ptr + base + offs, weights, mask=in_row)


# --------------------------------------------------------------------------------------------
# Host function (signature and return convention of fastmask.reference.proposal_mask)
# --------------------------------------------------------------------------------------------


def proposal_mask(
    input_ids, scores, maskable, row_ids, seed, epoch, count_num, count_den, uniform_mix, temperature,
    poisson, sequence_weights, mask_threshold, random_threshold, mask_token_id, vocab_size,
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
    block = row_block(length)
    _proposal_mask_kernel[(batch,)](
        input_ids.contiguous(), scores.contiguous(), as_bytes(maskable.contiguous()),
        row_ids.contiguous(), out_ids, labels, weights, length,
        int(count_num), int(count_den),
        # Rounded to float32 here, as the reference does.
        _f32(uniform_mix), _f32(temperature),
        int(mask_threshold), int(random_threshold), int(mask_token_id), int(vocab_size),
        **stream_args(seed, epoch, device),
        POISSON=bool(poisson), SEQUENCE_WEIGHTS=bool(sequence_weights), BLOCK=block,
        num_warps=row_warps(block), enable_fp_fusion=False,
    )
    return out_ids, labels, reference.divide_by_batch_mean(weights) if sequence_weights else weights
