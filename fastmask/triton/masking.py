"""Triton kernels of the masking ops; bit-exact twins of :mod:`fastmask.reference`.

Every token gets one Philox4x32-10 draw, computed in registers from (seed, epoch, row id,
position), so nothing random is read from or written to memory (see ``_token_draw``).

* ``maskable_mask`` and Bernoulli ``mask_tokens`` are elementwise: a 2-D grid over (row, block
  of positions).
* Exact-count ``mask_tokens`` and ``fully_explored_mask`` need per-row ranks, so they run one
  program per row over the whole row (BLOCK = next power of two >= L). Ranks come from
  ``tl.sort`` of packed keys ``(rank_key << 32) | position``: unsigned order of the packed key
  is the reference's (r0 >> 1, position) order, and all keys are distinct.
  - Exact count: the k-th smallest packed key T is a threshold, chosen = maskable & key <= T,
    so no scatter of ranks back to positions is needed.
  - Random partition: after the sort, lane j holds the position of rank j, so that program
    works in rank order: it gathers the ids of those positions and redraws r1/r2 there (a
    second Philox evaluation is far cheaper than the sort).
  - Contiguous partition: the index among maskable positions is a cumsum, no sort.
  The K views of ``fully_explored_mask`` are written by the same program, so the draws and the
  sort happen once per row, not once per view.

Scalars that vary from call to call are not specialised on, so changing the seed or an epoch
does not trigger a recompilation on GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Philox4x32 constants (Salmon et al., 2011), as in fastmask.reference.
_PHILOX_M0 = tl.constexpr(0xD2511F53)
_PHILOX_M1 = tl.constexpr(0xCD9E8D57)
_PHILOX_W0 = tl.constexpr(0x9E3779B9)
_PHILOX_W1 = tl.constexpr(0xBB67AE85)
_IGNORE_INDEX = tl.constexpr(-100)
# Ranking key of non-maskable positions: above every maskable key r0 >> 1 < 2**31.
_UNRANKED_KEY = tl.constexpr(1 << 31)
# Packed key of padding lanes (positions >= L): sorts after every real position.
_PAD_KEY = tl.constexpr(0xFFFFFFFFFFFFFFFF)
_LOW32 = tl.constexpr(0xFFFFFFFF)
_MASK32 = 0xFFFFFFFF

# Per-call values: specialising on them (== 1, divisible by 16) would only cost recompilations.
_CORRUPT_ARGS = ["mask_threshold", "random_threshold", "mask_token_id", "vocab_size"]
_DRAW_ARGS = ["seed_lo", "seed_hi", "epoch"]
_ELEMENTWISE_BLOCK = 1024


# --------------------------------------------------------------------------------------------
# Shared device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint32 values; uint32 multiplication and addition wrap mod 2**32."""
    for _ in tl.static_range(10):
        hi0 = tl.umulhi(c0, _PHILOX_M0)
        lo0 = c0 * _PHILOX_M0
        hi1 = tl.umulhi(c2, _PHILOX_M1)
        lo1 = c2 * _PHILOX_M1
        c0 = hi1 ^ c1 ^ k0
        c1 = lo1
        c2 = hi0 ^ c3 ^ k1
        c3 = lo0
        k0 = k0 + _PHILOX_W0
        k1 = k1 + _PHILOX_W1
    return c0, c1, c2, c3


@triton.jit
def _token_draw(pos, row_id, seed_lo, seed_hi, epoch):
    """The four words (r0, r1, r2, r3) of the tokens at `pos` (int32 block) of row `row_id`."""
    c0 = pos.to(tl.uint32)
    zero = tl.zeros_like(c0)
    # Truncating casts: row ids are taken as their 64-bit two's complement, scalars mod 2**32.
    c1 = zero + row_id.to(tl.uint32)
    c2 = zero + (row_id >> 32).to(tl.uint32)
    c3 = zero + epoch.to(tl.uint32)
    return _philox4x32_10(c0, c1, c2, c3, seed_lo.to(tl.uint32), seed_hi.to(tl.uint32))


@triton.jit
def _replacement(ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size):
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
def _corrupt(ids, chosen, replaced):
    """Corrupted ids and labels (original id where chosen, else the ignore index); int64."""
    return tl.where(chosen, replaced, ids), tl.where(chosen, ids, _IGNORE_INDEX)


@triton.jit
def _sorted_rank_keys(r0, maskable, offs, in_row):
    """Packed keys (rank_key << 32) | position, and the same keys sorted ascending.

    Lane j of the sorted keys holds the position of rank j in its low 32 bits.
    """
    rank_key = tl.where(maskable, r0 >> 1, _UNRANKED_KEY).to(tl.uint64)
    packed = (rank_key << 32) | offs.to(tl.uint64)
    packed = tl.where(in_row, packed, _PAD_KEY)
    return packed, tl.sort(packed)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=["num_special"])
def _maskable_mask_kernel(
    ids_ptr, attn_ptr, special_ptr, num_special, out_ptr, L,
    HAS_ATTN: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_row = offs < L
    base = row * L
    # Compared in int64 like the reference, so a large special id never wraps onto a real id.
    ids = tl.load(ids_ptr + base + offs, mask=in_row, other=0).to(tl.int64)
    keep = offs >= 0
    for i in range(num_special):
        keep = keep & (ids != tl.load(special_ptr + i).to(tl.int64))
    if HAS_ATTN:
        attn = tl.load(attn_ptr + base + offs, mask=in_row, other=0)
        keep = keep & (attn != 0)
    tl.store(out_ptr + base + offs, keep.to(tl.uint8), mask=in_row)


@triton.jit(do_not_specialize=_DRAW_ARGS + ["select_threshold"] + _CORRUPT_ARGS)
def _mask_tokens_kernel(
    ids_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, L,
    seed_lo, seed_hi, epoch, select_threshold, mask_threshold, random_threshold,
    mask_token_id, vocab_size,
    EXACT: tl.constexpr, BLOCK: tl.constexpr,
):
    # Bernoulli: grid (B, cdiv(L, BLOCK)); exact count: grid (B, 1) with BLOCK >= L.
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_row = offs < L
    base = row * L
    ids = tl.load(ids_ptr + base + offs, mask=in_row, other=0)
    maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
    r0, r1, r2, _ = _token_draw(offs, tl.load(row_ids_ptr + row), seed_lo, seed_hi, epoch)

    if EXACT:
        n = tl.sum(maskable.to(tl.int64), axis=0)
        k = (select_threshold.to(tl.int64) * n + (1 << 23)) >> 24
        k = tl.minimum(tl.maximum(k, 1), n)  # 0 when n == 0
        packed, ordered = _sorted_rank_keys(r0, maskable, offs, in_row)
        # The k-th smallest key; the first k maskable keys are exactly those <= it.
        kth = tl.sum(tl.where(offs == k - 1, ordered, 0), axis=0)
        chosen = maskable & (packed <= kth) & (k > 0)
    else:
        chosen = maskable & ((r0 >> 8).to(tl.int64) < select_threshold.to(tl.int64))

    ids64 = ids.to(tl.int64)
    replaced = _replacement(
        ids64, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    out, labels = _corrupt(ids64, chosen, replaced)
    tl.store(out_ids_ptr + base + offs, out.to(out_ids_ptr.dtype.element_ty), mask=in_row)
    tl.store(labels_ptr + base + offs, labels, mask=in_row)


@triton.jit(do_not_specialize=["B", "num_segments"] + _DRAW_ARGS + _CORRUPT_ARGS)
def _fully_explored_kernel(
    ids_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, B, L, num_segments,
    seed_lo, seed_hi, epoch, mask_threshold, random_threshold, mask_token_id, vocab_size,
    CONTIGUOUS: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= L.
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    in_row = lane < L
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    maskable = (tl.load(maskable_ptr + base + lane, mask=in_row, other=0) != 0) & in_row

    if CONTIGUOUS:
        # Lanes are positions. Segment = (j * K) // n, j = index among maskable positions.
        pos = lane
        r0, r1, r2, _ = _token_draw(pos, row_id, seed_lo, seed_hi, epoch)
        flags = maskable.to(tl.int64)
        n = tl.maximum(tl.sum(flags, axis=0), 1)
        j = tl.cumsum(flags, axis=0) - 1
        segment = (j * num_segments) // n
        in_segments = maskable
    else:
        # Lanes are ranks: lane j handles the position of rank j, in segment j mod K.
        r0, r1, r2, _ = _token_draw(lane, row_id, seed_lo, seed_hi, epoch)
        n = tl.sum(maskable.to(tl.int32), axis=0)
        _, ordered = _sorted_rank_keys(r0, maskable, lane, in_row)
        pos = tl.where(in_row, (ordered & _LOW32).to(tl.int32), 0)
        # r1/r2 of the position now on each lane: redrawn rather than permuted.
        _, r1, r2, _ = _token_draw(pos, row_id, seed_lo, seed_hi, epoch)
        segment = lane % num_segments
        in_segments = lane < n

    ids = tl.load(ids_ptr + base + pos, mask=in_row, other=0).to(tl.int64)
    replaced = _replacement(
        ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    plane = B.to(tl.int64) * L  # elements per view; int64 since K * B * L may exceed 2**31
    for view in range(num_segments):
        out, labels = _corrupt(ids, in_segments & (segment == view), replaced)
        offset = view * plane + base + pos
        tl.store(out_ids_ptr + offset, out.to(out_ids_ptr.dtype.element_ty), mask=in_row)
        tl.store(labels_ptr + offset, labels, mask=in_row)


# --------------------------------------------------------------------------------------------
# Host functions (signatures and return conventions of fastmask.reference)
# --------------------------------------------------------------------------------------------


def _row_block(length: int) -> int:
    return max(16, triton.next_power_of_2(length))


def _row_warps(block: int) -> int:
    # A whole row lives in registers (and is sorted there): spread long rows over more warps.
    return 4 if block <= 1024 else 8 if block <= 4096 else 16


def _as_bytes(t: torch.Tensor) -> torch.Tensor:
    """Bool tensors are passed as uint8 (same storage), which every Triton version loads alike."""
    return t.view(torch.uint8) if t.dtype == torch.bool else t


def _row_ids(row_ids: torch.Tensor, device: torch.device) -> torch.Tensor:
    return row_ids.to(device=device, dtype=torch.int64).contiguous()


def _key(seed: int) -> tuple[int, int]:
    seed = int(seed)
    return seed & _MASK32, (seed >> 32) & _MASK32


def maskable_mask(input_ids, attention_mask, special_ids):
    """True where a token may be masked: attended (if a mask is given) and not a special id."""
    batch, length = input_ids.shape
    out = torch.empty((batch, length), dtype=torch.bool, device=input_ids.device)
    if batch == 0 or length == 0:
        return out
    ids = input_ids.contiguous()
    special = special_ids.to(device=ids.device).reshape(-1).contiguous()
    num_special = special.numel()
    if num_special == 0:
        special = ids  # never read; any valid pointer
    attn = ids if attention_mask is None else _as_bytes(attention_mask.to(ids.device).contiguous())
    block = min(_ELEMENTWISE_BLOCK, _row_block(length))
    _maskable_mask_kernel[(batch, triton.cdiv(length, block))](
        ids, attn, special, num_special, out.view(torch.uint8), length,
        HAS_ATTN=attention_mask is not None, BLOCK=block,
    )
    return out


def mask_tokens(
    input_ids, maskable, row_ids, seed, epoch, select_threshold, mask_threshold,
    random_threshold, mask_token_id, vocab_size, exact,
):
    """Standard MLM masking: Bernoulli per token, or an exact count per row."""
    batch, length = input_ids.shape
    device = input_ids.device
    out_ids = torch.empty((batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((batch, length), dtype=torch.int64, device=device)
    if batch == 0 or length == 0:
        return out_ids, labels
    seed_lo, seed_hi = _key(seed)
    if exact:
        block = _row_block(length)
        grid, warps = (batch, 1), _row_warps(block)
    else:
        block = min(_ELEMENTWISE_BLOCK, _row_block(length))
        grid, warps = (batch, triton.cdiv(length, block)), 4
    _mask_tokens_kernel[grid](
        input_ids.contiguous(), _as_bytes(maskable.contiguous()), _row_ids(row_ids, device),
        out_ids, labels, length,
        seed_lo, seed_hi, int(epoch) & _MASK32, int(select_threshold), int(mask_threshold),
        int(random_threshold), int(mask_token_id), int(vocab_size),
        EXACT=bool(exact), BLOCK=block, num_warps=warps,
    )
    return out_ids, labels


def fully_explored_mask(
    input_ids, maskable, row_ids, seed, epoch, num_segments, contiguous,
    mask_threshold, random_threshold, mask_token_id, vocab_size,
):
    """K views (K, B, L) of the batch; view k masks exactly segment k of every row."""
    batch, length = input_ids.shape
    num_segments = int(num_segments)
    device = input_ids.device
    out_ids = torch.empty((num_segments, batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((num_segments, batch, length), dtype=torch.int64, device=device)
    if batch == 0 or length == 0 or num_segments == 0:
        return out_ids, labels
    seed_lo, seed_hi = _key(seed)
    block = _row_block(length)
    _fully_explored_kernel[(batch,)](
        input_ids.contiguous(), _as_bytes(maskable.contiguous()), _row_ids(row_ids, device),
        out_ids, labels, batch, length, num_segments,
        seed_lo, seed_hi, int(epoch) & _MASK32, int(mask_threshold), int(random_threshold),
        int(mask_token_id), int(vocab_size),
        CONTIGUOUS=bool(contiguous), BLOCK=block, num_warps=_row_warps(block),
    )
    return out_ids, labels
