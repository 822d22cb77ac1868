"""What every Triton kernel of fastmask shares; the Triton twin of csrc/include/fastmask/.

Constants come from :mod:`fastmask.reference` (the specification), never restated. Device helpers:
Philox4x32-10 and the per-token draw, the 80/10/10 replacement, the exact count, the packed
ranking keys, the radix select of long rows. Host helpers: launch shapes of per-row kernels,
argument conversions.

Ranked rows (exact count, random partition, top-k) of up to ``LONG_ROW`` tokens are held whole in
registers and sorted there. Longer rows would spill (kilobytes per thread at 16384 lanes), so they
run long-row kernels (``_*_long_row_kernel``) that walk the row in chunks of ``LONG_ROW_BLOCK``
lanes (or, for pairwise ranks, in tiles): the k-th smallest 32-bit key is found by a radix select
(one histogram pass over the row per ``RADIX_BITS`` digit), then a last pass takes the keys below
it and, in position order, as many ties as are missing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from fastmask import reference

PHILOX_M0 = tl.constexpr(reference.PHILOX_M0)
PHILOX_M1 = tl.constexpr(reference.PHILOX_M1)
PHILOX_W0 = tl.constexpr(reference.PHILOX_W0)
PHILOX_W1 = tl.constexpr(reference.PHILOX_W1)
PHILOX_ROUNDS = tl.constexpr(reference.PHILOX_ROUNDS)
IGNORE_INDEX = tl.constexpr(reference.IGNORE_INDEX)
# Ranking key of non-maskable positions: above every maskable key r0 >> 1 < 2**31.
UNRANKED_KEY = tl.constexpr(reference.UNRANKED_KEY)
# Packed key of padding lanes (positions >= L): sorts after every real position.
PAD_KEY = tl.constexpr(0xFFFFFFFFFFFFFFFF)
LOW32 = tl.constexpr(reference.MASK32)
RADIX_BITS = tl.constexpr(8)
RADIX = tl.constexpr(1 << 8)

# Per-call values: specialising on them (== 1, divisible by 16) would only cost recompilations.
CORRUPT_ARGS = ["mask_threshold", "random_threshold", "mask_token_id", "vocab_size"]
PHILOX_KEY_ARGS = ["seed", "epoch"]  # the Philox key: seed and the mask counter
COUNT_ARGS = ["count_num", "count_den"]
RATE_ONE = tl.constexpr(reference.PROB_ONE)  # the largest Bernoulli threshold: p = 1
RATE_MAX_DEN = tl.constexpr(2**31 - 1)  # count fractions keep den below 2**31


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 values; uint32 multiplication and addition wrap mod 2**32."""
    for _ in tl.static_range(PHILOX_ROUNDS):
        hi0 = tl.umulhi(c0, PHILOX_M0)
        lo0 = c0 * PHILOX_M0
        hi1 = tl.umulhi(c2, PHILOX_M1)
        lo1 = c2 * PHILOX_M1
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + PHILOX_W0
        k1 = k1 + PHILOX_W1
    return c0, c1, c2, c3


@triton.jit
def philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr):
    """The Philox key of the op's draws: the seed words (seed_lo, seed_hi) and the mask counter word
    (the op's `epoch`), read from memory when the op got them as tensors on its device (so a
    captured graph reads the current values)."""
    if SEED_IN_MEMORY:
        seed = tl.load(seed_ptr)
    if EPOCH_IN_MEMORY:
        epoch = tl.load(epoch_ptr)
    seed = seed.to(tl.int64)  # a small scalar argument arrives as int32
    return seed.to(tl.uint32), (seed >> 32).to(tl.uint32), epoch.to(tl.uint32)


@triton.jit
def read_threshold(rate_ptr, select_threshold, RATE_IN_MEMORY: tl.constexpr):
    """The Bernoulli threshold: from the op's rate tensor when it is on the kernel's device (so a
    rate schedule changes it in place), clamped as the CUDA kernels clamp it; else the argument."""
    if RATE_IN_MEMORY:
        select_threshold = tl.minimum(tl.maximum(tl.load(rate_ptr), 0), RATE_ONE)
    return select_threshold.to(tl.int64)


@triton.jit
def read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY: tl.constexpr):
    """The exact count's fraction (num, den): from the op's rate tensor as read_threshold reads it."""
    if RATE_IN_MEMORY:
        count_den = tl.minimum(tl.maximum(tl.load(rate_ptr + 2), 1), RATE_MAX_DEN)
        count_num = tl.minimum(tl.maximum(tl.load(rate_ptr + 1), 0), count_den)
    return count_num.to(tl.int64), count_den.to(tl.int64)


@triton.jit
def token_draw(pos, row_id, seed_lo, seed_hi, epoch):
    """The four words (r0, r1, r2, r3) of the tokens at `pos` (int32 block) of row `row_id`."""
    c0 = pos.to(tl.uint32)
    zero = tl.zeros_like(c0)
    # Truncating casts: row ids are taken as their 64-bit two's complement, scalars mod 2**32.
    c1 = zero + row_id.to(tl.uint32)
    c2 = zero + (row_id >> 32).to(tl.uint32)
    c3 = zero + epoch.to(tl.uint32)
    return philox4x32_10(c0, c1, c2, c3, seed_lo.to(tl.uint32), seed_hi.to(tl.uint32))


@triton.jit
def exact_count(n, count_num, count_den):
    """reference.exact_count: min(n, max(1, floor(p n + 1/2))) with p = num / den; 0 when n == 0."""
    k = (2 * count_num.to(tl.int64) * n + count_den) // (2 * count_den.to(tl.int64))
    return tl.minimum(tl.maximum(k, 1), n)


@triton.jit
def replacement(ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size):
    """The 80/10/10 rule: what a chosen token becomes ([MASK], a random id, or itself); int64."""
    action = (r1 >> 8).to(tl.int64)
    mask_below = mask_threshold.to(tl.int64)
    random_below = mask_below + random_threshold.to(tl.int64)
    # (r2 * vocab_size) >> 32 is the high word of a 32x32 product (vocab_size < 2**31).
    random_token = tl.umulhi(r2, vocab_size.to(tl.uint32)).to(tl.int64)
    mask_id = tl.zeros_like(ids) + mask_token_id.to(tl.int64)
    replaced = tl.where(action < random_below, random_token, ids)
    return tl.where(action < mask_below, mask_id, replaced)


@triton.jit
def corrupt(ids, chosen, replaced):
    """Corrupted ids and labels (original id where chosen, else the ignore index); int64."""
    return tl.where(chosen, replaced, ids), tl.where(chosen, ids, IGNORE_INDEX)


@triton.jit
def sorted_rank_keys(rank_key, offs, in_row):
    """Packed keys (rank_key << 32) | position, and the same keys sorted ascending.

    `rank_key` is a uint32-valued block; lane j of the sorted keys holds the position of rank j in
    its low 32 bits, and the k-th smallest packed key is a threshold for the first k positions.
    """
    packed = (rank_key.to(tl.uint64) << 32) | offs.to(tl.uint64)
    packed = tl.where(in_row, packed, PAD_KEY)
    return packed, tl.sort(packed)


@triton.jit
def kth_smallest(ordered, offs, k):
    """The k-th smallest of sorted keys (any value when k == 0: callers mask with k > 0)."""
    return tl.sum(tl.where(offs == k - 1, ordered, 0), axis=0)


@triton.jit
def radix_histogram(key, valid, prefix, SHIFT: tl.constexpr):
    """Counts of the digits (key >> SHIFT) & (RADIX - 1) of the valid uint32 keys whose bits above
    the digit equal `prefix`'s (prefix is zero from the digit down)."""
    # key ^ prefix is zero above the digit exactly when the key extends the prefix.
    extends = ((key ^ prefix) >> SHIFT) < RADIX
    digit = ((key >> SHIFT) & (RADIX - 1)).to(tl.int32)
    return tl.histogram(digit, RADIX, mask=valid & extends)


@triton.jit
def radix_narrow(histogram, prefix, rank, SHIFT: tl.constexpr):
    """One radix-select step: the digit at SHIFT of the key of 1-based `rank` among the keys that
    extend `prefix` (counted in `histogram`), and that key's rank among the keys extending the new
    prefix. After the last digit, prefix is the key sought and `rank` is how many keys equal to it
    are among the first k (the others all lie below it)."""
    at_or_below = tl.cumsum(histogram, axis=0)
    digit = tl.sum((at_or_below < rank).to(tl.int32), axis=0)
    below = tl.sum(tl.where(tl.arange(0, RADIX) < digit, histogram, 0), axis=0)
    return prefix | (digit.to(tl.uint32) << SHIFT), rank - below


@triton.jit
def take_first(key, valid, kth, ties_to_take, ties_before):
    """The chunk's share of the first k keys by (key, position), given the k-th key `kth`: keys
    below it, and ties with it while fewer than `ties_to_take` precede them in the row
    (`ties_before` in earlier chunks). Returns the choice and the ties up to the chunk's end."""
    tie = valid & (key == kth)
    tie_index = ties_before + tl.cumsum(tie.to(tl.int64), axis=0) - 1
    chosen = valid & ((key < kth) | (tie & (tie_index < ties_to_take)))
    return chosen, ties_before + tl.sum(tie.to(tl.int64), axis=0)


# --------------------------------------------------------------------------------------------
# Host helpers
# --------------------------------------------------------------------------------------------


def row_block(length: int) -> int:
    """Lanes of a program that holds a whole row."""
    return max(16, triton.next_power_of_2(length))


def row_warps(block: int) -> int:
    # A whole row lives in registers (and is sorted there): spread long rows over more warps, so
    # that no thread holds more than 4 lanes (8, at 2048 lanes on 8 warps, spilled for sm_90).
    return 4 if block <= 512 else 8 if block <= 1024 else 16


# Longest row held whole by a ranking kernel; read at launch (the tests lower these to reach the
# long-row kernels under the interpreter).
LONG_ROW = 2048
LONG_ROW_BLOCK = 1024
LONG_ROW_WARPS = 8
# Tiles of the pairwise ranks of long rows' random partitions: PAIR_BLOCK_I positions per program,
# compared with PAIR_BLOCK_J others at a time.
PAIR_BLOCK_I = 64
PAIR_BLOCK_J = 64
PAIR_WARPS = 4


class RowLaunch(NamedTuple):
    """How a ranking kernel walks a row: whole (one block of `block` >= L lanes) or, beyond
    ``LONG_ROW``, with a long-row kernel (chunks of `block` lanes)."""

    long_row: bool
    block: int
    num_warps: int


def ranked_launch(length: int) -> RowLaunch:
    """The launch of a kernel that ranks rows of `length` tokens."""
    if length > LONG_ROW:
        return RowLaunch(True, LONG_ROW_BLOCK, LONG_ROW_WARPS)
    block = row_block(length)
    return RowLaunch(False, block, row_warps(block))


def as_bytes(t: torch.Tensor) -> torch.Tensor:
    """Bool tensors are passed as uint8 (same storage), which every Triton version loads alike."""
    return t.view(torch.uint8) if t.dtype == torch.bool else t


def rate_args(rate: torch.Tensor | None, device: torch.device, select_threshold: int, count_num: int,
              count_den: int) -> tuple[tuple[int, int, int], dict]:
    """((select_threshold, count_num, count_den), the kernel arguments of the op's rate tensor): on
    the kernel's device it is passed by pointer and read by the kernel (read_threshold,
    read_count_fraction); on the CPU it is read here (no device sync), clamped as the kernels clamp."""
    in_memory = rate is not None and rate.device == device
    if rate is not None and not in_memory:
        threshold, count_num, count_den = (int(v) for v in rate.tolist())
        count_den = min(max(count_den, 1), 2**31 - 1)
        select_threshold, count_num = min(max(threshold, 0), reference.PROB_ONE), min(max(count_num, 0), count_den)
    ints = (int(select_threshold), int(count_num), int(count_den))
    return ints, {"rate_ptr": rate if in_memory else None, "RATE_IN_MEMORY": in_memory}


def philox_key_args(seed: torch.Tensor, epoch: torch.Tensor, device: torch.device) -> dict:
    """Kernel arguments of the Philox key (see ``philox_key``) from the op's 0-dim int64 seed and
    epoch (the mask counter): a tensor on the kernel's device is passed by pointer and read by the kernel; a CPU
    tensor is read here (no device sync) and passed by value."""
    args = {}
    for name, t in (("seed", seed), ("epoch", epoch)):
        in_memory = t.device == device
        args[f"{name}_ptr"] = t if in_memory else None
        args[name] = 0 if in_memory else int(t.item())
        args[f"{name.upper()}_IN_MEMORY"] = in_memory
    return args
