"""Triton kernels of the masking ops; bit-exact twins of :mod:`fastmask.reference`.

Every token gets one Philox4x32-10 draw, computed in registers from (seed, epoch, row id,
position), so nothing random is read from or written to memory (see ``common.token_draw``).

* ``maskable_mask`` and Bernoulli ``mask_tokens`` are elementwise: a 2-D grid over (row, block
  of positions).
* Exact-count ``mask_tokens`` and ``fully_explored_mask`` need per-row ranks. Rows of up to
  ``common.LONG_ROW`` tokens run one program per row over the whole row (BLOCK = next power of two
  >= L). Ranks come from ``tl.sort`` of packed keys ``(rank_key << 32) | position``: unsigned order
  of the packed key is the reference's (r0 >> 1, position) order, and all keys are distinct.
  - Exact count: the k-th smallest packed key T is a threshold, chosen = maskable & key <= T,
    so no scatter of ranks back to positions is needed.
  - Random partition: after the sort, lane j holds the position of rank j, so that program
    works in rank order: it gathers the ids of those positions and redraws r1/r2 there (a
    second Philox evaluation is far cheaper than the sort).
  - Contiguous partition: the index among maskable positions is a cumsum, no sort.
  The K views of ``fully_explored_mask`` are written by the same program, so the draws and the
  sort happen once per row, not once per view.
* Longer rows never sit in registers whole; their draws are recomputed on every pass rather than
  kept in memory.
  - Exact count: one program per row finds the k-th smallest key by radix select
    (``common.radix_histogram``), then takes the keys below it and ties in position order.
  - Partitions: one program per block of positions scans the row for what orders it: the
    maskable count before the block (contiguous), or, pair by pair, the maskable positions whose
    (key, position) is smaller (random: O(L^2) compares, done in tiles).

* ``fully_explored_mask`` over words (``word_start`` given; a ``WORDS`` specialisation of the
  same kernels): the units partitioned are the row's words, word w taking the segment of index w
  in a row whose first W positions are the maskable ones (``reference.fully_explored_mask``). Heads
  come from the maskable flags of a position and of its predecessor (a shifted load), word index =
  cumsum(head) - 1. Each token takes its word's segment; r1/r2 stay those of its own position.
  - Contiguous: segment = (w * K) // W, W and (long rows) the heads before the block scanned.
  - Random, rows held whole: lane u < W keys unit u by r0 >> 1 of index u's draw; after the sort,
    lane j holds the unit of rank j and stores its segment j mod K to a per-row int32 scratch
    buffer (allocated by the host; Triton has no gather across lanes), which each token reads at
    its word after a ``tl.debug_barrier()``.
  - Random, long rows: each token's rank is that of its word, counted pairwise over the units
    u < W (their draws recomputed in tiles); no scratch.

Scalars that vary from call to call are not specialised on, so changing the seed or an epoch
does not trigger a recompilation on GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

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
    row_block,
    philox_key_args,
    philox_key,
    rate_args,
    read_count_fraction,
    read_threshold,
    sorted_rank_keys,
    take_first,
    token_draw,
)

_ELEMENTWISE_BLOCK = 1024


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _ranking_keys(row_maskable_ptr, offs, L, row_id, seed_lo, seed_hi, epoch):
    """Of the positions `offs` of a row: in the row, maskable, the ranking key (r0 >> 1, or
    UNRANKED_KEY where not maskable) and the replacement words r1, r2."""
    in_row = offs < L
    maskable = (tl.load(row_maskable_ptr + offs, mask=in_row, other=0) != 0) & in_row
    r0, r1, r2, _ = token_draw(offs, row_id, seed_lo, seed_hi, epoch)
    return in_row, maskable, tl.where(maskable, r0 >> 1, UNRANKED_KEY).to(tl.uint32), r1, r2


@triton.jit
def _word_heads(row_maskable_ptr, row_word_start_ptr, offs, L, heads_before):
    """Of the positions `offs` of a row (the row's heads before them given): maskable, head (a
    maskable position flagged as a word start or after a non-maskable one) and the word index
    (reference.word_index; meaningful where maskable)."""
    in_row = offs < L
    maskable = (tl.load(row_maskable_ptr + offs, mask=in_row, other=0) != 0) & in_row
    previous = tl.load(row_maskable_ptr + offs - 1, mask=in_row & (offs > 0), other=0) != 0
    flagged = tl.load(row_word_start_ptr + offs, mask=in_row, other=0) != 0
    head = maskable & (flagged | ~previous)
    return maskable, head, heads_before + tl.cumsum(head.to(tl.int32), axis=0) - 1


@triton.jit
def _write_ids_labels(
    ids, chosen, r1, r2, out_ids_ptrs, labels_ptrs, in_row, mask_threshold, random_threshold, mask_token_id, vocab_size,
):
    """Stores the corrupted ids and the labels of tokens `ids` (pointers given per lane)."""
    ids64 = ids.to(tl.int64)
    replaced = replacement(ids64, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    out, labels = corrupt(ids64, chosen, replaced)
    tl.store(out_ids_ptrs, out.to(out_ids_ptrs.dtype.element_ty), mask=in_row)
    tl.store(labels_ptrs, labels, mask=in_row)


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


@triton.jit(do_not_specialize=PHILOX_KEY_ARGS + ["select_threshold"] + COUNT_ARGS + CORRUPT_ARGS)
def _mask_tokens_kernel(
    ids_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, L,
    select_threshold, count_num, count_den, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    EXACT: tl.constexpr, BLOCK: tl.constexpr,
):
    # Bernoulli: grid (B, cdiv(L, BLOCK)); exact count: grid (B, 1) with BLOCK >= L.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    select_threshold = read_threshold(rate_ptr, select_threshold, RATE_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    in_row = offs < L
    base = row * L
    ids = tl.load(ids_ptr + base + offs, mask=in_row, other=0)
    maskable = (tl.load(maskable_ptr + base + offs, mask=in_row, other=0) != 0) & in_row
    r0, r1, r2, _ = token_draw(offs, tl.load(row_ids_ptr + row), seed_lo, seed_hi, epoch)

    if EXACT:
        k = exact_count(tl.sum(maskable.to(tl.int64), axis=0), count_num, count_den)
        packed, ordered = sorted_rank_keys(tl.where(maskable, r0 >> 1, UNRANKED_KEY), offs, in_row)
        # The first k maskable keys are exactly those <= the k-th smallest.
        chosen = maskable & (packed <= kth_smallest(ordered, offs, k)) & (k > 0)
    else:
        chosen = maskable & ((r0 >> 8).to(tl.int64) < select_threshold.to(tl.int64))
    _write_ids_labels(ids, chosen, r1, r2, out_ids_ptr + base + offs, labels_ptr + base + offs, in_row,
                  mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit(do_not_specialize=PHILOX_KEY_ARGS + COUNT_ARGS + CORRUPT_ARGS)
def _mask_tokens_long_row_kernel(
    ids_ptr, maskable_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, L,
    count_num, count_den, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # Exact count of long rows: one program per row, walking it in chunks of BLOCK lanes.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    lane = tl.arange(0, BLOCK)

    n = tl.zeros((), tl.int64)
    for start in range(0, L, BLOCK):
        offs = start + lane
        n += tl.sum((tl.load(maskable_ptr + base + offs, mask=offs < L, other=0) != 0).to(tl.int64), axis=0)
    k = exact_count(n, count_num, count_den)

    # The k-th smallest key, most significant digit first (any key when k == 0: nothing is taken).
    kth = tl.zeros((), tl.uint32)
    ties_to_take = k
    for shift in tl.static_range(32 - RADIX_BITS, -1, -RADIX_BITS):
        histogram = tl.zeros((RADIX,), tl.int32)
        for start in range(0, L, BLOCK):
            in_row, _, key, _, _ = _ranking_keys(maskable_ptr + base, start + lane, L, row_id, seed_lo, seed_hi, epoch)
            histogram += radix_histogram(key, in_row, kth, shift)
        kth, ties_to_take = radix_narrow(histogram, kth, ties_to_take, shift)

    ties_before = tl.zeros((), tl.int64)
    for start in range(0, L, BLOCK):
        offs = start + lane
        in_row, maskable, key, r1, r2 = _ranking_keys(maskable_ptr + base, offs, L, row_id, seed_lo, seed_hi, epoch)
        chosen, ties_before = take_first(key, in_row, kth, ties_to_take, ties_before)
        ids = tl.load(ids_ptr + base + offs, mask=in_row, other=0)
        _write_ids_labels(ids, chosen & maskable & (k > 0), r1, r2, out_ids_ptr + base + offs, labels_ptr + base + offs,
                      in_row, mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit(do_not_specialize=["B", "num_segments"] + PHILOX_KEY_ARGS + CORRUPT_ARGS)
def _fully_explored_kernel(
    ids_ptr, maskable_ptr, word_start_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, unit_segments_ptr, B, L,
    num_segments, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    CONTIGUOUS: tl.constexpr, WORDS: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= L.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    lane = tl.arange(0, BLOCK)
    in_row = lane < L
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    maskable = (tl.load(maskable_ptr + base + lane, mask=in_row, other=0) != 0) & in_row

    if WORDS:
        # Lanes are positions (and unit indices: lane u draws unit u's key). Segment of word w's tokens.
        pos = lane
        maskable, head, word = _word_heads(maskable_ptr + base, word_start_ptr + base, lane, L, 0)
        in_segments = maskable
        words = tl.sum(head.to(tl.int32), axis=0)
        if CONTIGUOUS:
            _, r1, r2, _ = token_draw(pos, row_id, seed_lo, seed_hi, epoch)
            segment = (word.to(tl.int64) * num_segments) // tl.maximum(words, 1).to(tl.int64)
        else:
            r0, _, _, _ = token_draw(lane, row_id, seed_lo, seed_hi, epoch)
            _, ordered = sorted_rank_keys(tl.where(lane < words, r0 >> 1, UNRANKED_KEY), lane, in_row)
            # Sorted lane j < W holds the unit of rank j: its segment j mod K, by unit, to the scratch row.
            unit = tl.where(in_row, (ordered & LOW32).to(tl.int32), 0)
            tl.store(unit_segments_ptr + base + unit, lane % num_segments, mask=lane < words)
            tl.debug_barrier()
            # Reloaded and redrawn rather than held in registers through the sort.
            _, _, word = _word_heads(maskable_ptr + base, word_start_ptr + base, lane, L, 0)
            segment = tl.load(unit_segments_ptr + base + word, mask=in_segments, other=0)
            _, r1, r2, _ = token_draw(pos, row_id, seed_lo, seed_hi, epoch)
    elif CONTIGUOUS:
        # Lanes are positions. Segment = (j * K) // n, j = index among maskable positions.
        pos = lane
        r0, r1, r2, _ = token_draw(pos, row_id, seed_lo, seed_hi, epoch)
        flags = maskable.to(tl.int64)
        n = tl.maximum(tl.sum(flags, axis=0), 1)
        j = tl.cumsum(flags, axis=0) - 1
        segment = (j * num_segments) // n
        in_segments = maskable
    else:
        # Lanes are ranks: lane j handles the position of rank j, in segment j mod K.
        r0, r1, r2, _ = token_draw(lane, row_id, seed_lo, seed_hi, epoch)
        n = tl.sum(maskable.to(tl.int32), axis=0)
        _, ordered = sorted_rank_keys(tl.where(maskable, r0 >> 1, UNRANKED_KEY), lane, in_row)
        pos = tl.where(in_row, (ordered & LOW32).to(tl.int32), 0)
        # r1/r2 of the position now on each lane: redrawn rather than permuted.
        _, r1, r2, _ = token_draw(pos, row_id, seed_lo, seed_hi, epoch)
        segment = lane % num_segments
        in_segments = lane < n

    ids = tl.load(ids_ptr + base + pos, mask=in_row, other=0).to(tl.int64)
    replaced = replacement(ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    plane = B.to(tl.int64) * L  # elements per view; int64 since K * B * L may exceed 2**31
    for view in range(num_segments):
        out, labels = corrupt(ids, in_segments & (segment == view), replaced)
        offset = view * plane + base + pos
        tl.store(out_ids_ptr + offset, out.to(out_ids_ptr.dtype.element_ty), mask=in_row)
        tl.store(labels_ptr + offset, labels, mask=in_row)


@triton.jit(do_not_specialize=["B", "num_segments"] + PHILOX_KEY_ARGS + CORRUPT_ARGS)
def _fully_explored_long_row_kernel(
    ids_ptr, maskable_ptr, word_start_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, unit_segments_ptr, B, L,
    num_segments, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    CONTIGUOUS: tl.constexpr, WORDS: tl.constexpr, BLOCK: tl.constexpr, SCAN_BLOCK: tl.constexpr,
):
    # Long rows: grid (B, cdiv(L, BLOCK)); each program scans its row SCAN_BLOCK lanes at a time.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    first = tl.program_id(1) * BLOCK
    pos = first + tl.arange(0, BLOCK)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    in_row, maskable, key, r1, r2 = _ranking_keys(maskable_ptr + base, pos, L, row_id, seed_lo, seed_hi, epoch)

    if WORDS:
        # The row's words W and the heads before the block, then the word of each position.
        words = tl.zeros((), tl.int32)
        heads_before = tl.zeros((), tl.int32)
        for start in range(0, L, SCAN_BLOCK):
            scan = start + tl.arange(0, SCAN_BLOCK)
            _, head, _ = _word_heads(maskable_ptr + base, word_start_ptr + base, scan, L, 0)
            words += tl.sum(head.to(tl.int32), axis=0)
            heads_before += tl.sum((head & (scan < first)).to(tl.int32), axis=0)
        _, _, word = _word_heads(maskable_ptr + base, word_start_ptr + base, pos, L, heads_before)
        if CONTIGUOUS:
            segment = (word.to(tl.int64) * num_segments) // tl.maximum(words, 1).to(tl.int64)
        else:
            # Rank of each token's word w = number of units u < W whose (key, index) is smaller.
            unit = tl.maximum(word, 0)
            unit_r0, _, _, _ = token_draw(unit, row_id, seed_lo, seed_hi, epoch)
            unit_key = unit_r0 >> 1
            rank = tl.zeros((BLOCK,), tl.int32)
            for start in range(0, words, SCAN_BLOCK):
                other = start + tl.arange(0, SCAN_BLOCK)
                other_r0, _, _, _ = token_draw(other, row_id, seed_lo, seed_hi, epoch)
                other_key = other_r0 >> 1
                precedes = (other_key[None, :] < unit_key[:, None]) | (
                    (other_key[None, :] == unit_key[:, None]) & (other[None, :] < unit[:, None]))
                rank += tl.sum((precedes & (other < words)[None, :]).to(tl.int32), axis=1)
            segment = rank % num_segments
    elif CONTIGUOUS:
        # Segment = (j * K) // n, j = index among maskable positions: counts before the block and in the row.
        n = tl.zeros((), tl.int64)
        before = tl.zeros((), tl.int64)
        for start in range(0, L, SCAN_BLOCK):
            scan = start + tl.arange(0, SCAN_BLOCK)
            flags = (tl.load(maskable_ptr + base + scan, mask=scan < L, other=0) != 0) & (scan < L)
            n += tl.sum(flags.to(tl.int64), axis=0)
            before += tl.sum((flags & (scan < first)).to(tl.int64), axis=0)
        j = before + tl.cumsum(maskable.to(tl.int64), axis=0) - 1
        segment = (j * num_segments) // tl.maximum(n, 1)
    else:
        # Rank = number of maskable positions whose (key, position) is smaller.
        rank = tl.zeros((BLOCK,), tl.int32)
        for start in range(0, L, SCAN_BLOCK):
            other = start + tl.arange(0, SCAN_BLOCK)
            _, other_maskable, other_key, _, _ = _ranking_keys(
                maskable_ptr + base, other, L, row_id, seed_lo, seed_hi, epoch)
            precedes = (other_key[None, :] < key[:, None]) | (
                (other_key[None, :] == key[:, None]) & (other[None, :] < pos[:, None]))
            rank += tl.sum((precedes & other_maskable[None, :]).to(tl.int32), axis=1)
        segment = rank % num_segments

    ids = tl.load(ids_ptr + base + pos, mask=in_row, other=0)
    plane = B.to(tl.int64) * L  # elements per view; int64 since K * B * L may exceed 2**31
    for view in range(num_segments):
        offset = view * plane + base + pos
        _write_ids_labels(ids, maskable & (segment == view), r1, r2, out_ids_ptr + offset, labels_ptr + offset, in_row,
                      mask_threshold, random_threshold, mask_token_id, vocab_size)


# --------------------------------------------------------------------------------------------
# Host functions (signatures and return conventions of fastmask.reference)
# --------------------------------------------------------------------------------------------


def maskable_mask(input_ids, attention_mask, special_ids):
    """True where a token may be masked: attended (if a mask is given) and not a special id."""
    batch, length = input_ids.shape
    out = torch.empty((batch, length), dtype=torch.bool, device=input_ids.device)
    if batch == 0 or length == 0:
        return out
    ids = input_ids.contiguous()
    special = special_ids.contiguous()
    num_special = special.numel()
    if num_special == 0:
        special = ids  # never read; any valid pointer
    attn = ids if attention_mask is None else as_bytes(attention_mask.contiguous())
    block = min(_ELEMENTWISE_BLOCK, row_block(length))
    _maskable_mask_kernel[(batch, triton.cdiv(length, block))](
        ids, attn, special, num_special, out.view(torch.uint8), length,
        HAS_ATTN=attention_mask is not None, BLOCK=block,
    )
    return out


def mask_tokens(
    input_ids, maskable, row_ids, seed, epoch, select_threshold, count_num, count_den, mask_threshold,
    random_threshold, mask_token_id, vocab_size, exact, rate=None,
):
    """Standard MLM masking: Bernoulli per token, or an exact count per row."""
    batch, length = input_ids.shape
    device = input_ids.device
    out_ids = torch.empty((batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((batch, length), dtype=torch.int64, device=device)
    if batch == 0 or length == 0:
        return out_ids, labels
    inputs = (input_ids.contiguous(), as_bytes(maskable.contiguous()), row_ids.contiguous(), out_ids, labels, length)
    corruption = (int(mask_threshold), int(random_threshold), int(mask_token_id), int(vocab_size))
    (select_threshold, count_num, count_den), rate_kwargs = rate_args(rate, device, select_threshold, count_num,
                                                                      count_den)
    launch = ranked_launch(length)
    if exact and launch.long_row:
        _mask_tokens_long_row_kernel[(batch,)](
            *inputs, count_num, count_den, *corruption, **philox_key_args(seed, epoch, device), **rate_kwargs,
            BLOCK=launch.block, num_warps=launch.num_warps,
        )
        return out_ids, labels
    if exact:
        block = launch.block
        grid, warps = (batch, 1), launch.num_warps
    else:
        block = min(_ELEMENTWISE_BLOCK, row_block(length))
        grid, warps = (batch, triton.cdiv(length, block)), 4
    _mask_tokens_kernel[grid](
        *inputs, select_threshold, count_num, count_den, *corruption,
        **philox_key_args(seed, epoch, device), **rate_kwargs, EXACT=bool(exact), BLOCK=block, num_warps=warps,
    )
    return out_ids, labels


def fully_explored_mask(
    input_ids, maskable, row_ids, seed, epoch, num_segments, contiguous,
    mask_threshold, random_threshold, mask_token_id, vocab_size, word_start=None,
):
    """K views (K, B, L) of the batch; view k masks exactly segment k of every row (of its tokens,
    or with `word_start` of its words: each word whole, in exactly one view)."""
    batch, length = input_ids.shape
    num_segments = int(num_segments)
    device = input_ids.device
    out_ids = torch.empty((num_segments, batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((num_segments, batch, length), dtype=torch.int64, device=device)
    if batch == 0 or length == 0 or num_segments == 0:
        return out_ids, labels
    ids = input_ids.contiguous()
    words = word_start is not None
    launch = ranked_launch(length)
    # Per-row scratch of the random partition of words held whole: the segment of unit u at u.
    unit_segments = (torch.empty((batch, length), dtype=torch.int32, device=device)
                     if words and not contiguous and not launch.long_row else ids)  # else never read
    args = (
        ids, as_bytes(maskable.contiguous()), as_bytes(word_start.contiguous()) if words else ids,  # ids: never read
        row_ids.contiguous(), out_ids, labels, unit_segments, batch, length, num_segments,
        int(mask_threshold), int(random_threshold), int(mask_token_id), int(vocab_size),
    )
    if not launch.long_row:
        _fully_explored_kernel[(batch,)](
            *args, **philox_key_args(seed, epoch, device), CONTIGUOUS=bool(contiguous), WORDS=words,
            BLOCK=launch.block, num_warps=launch.num_warps,
        )
    elif contiguous:
        _fully_explored_long_row_kernel[(batch, triton.cdiv(length, launch.block))](
            *args, **philox_key_args(seed, epoch, device), CONTIGUOUS=True, WORDS=words, BLOCK=launch.block,
            SCAN_BLOCK=launch.block, num_warps=launch.num_warps,
        )
    else:
        _fully_explored_long_row_kernel[(batch, triton.cdiv(length, common.PAIR_BLOCK_I))](
            *args, **philox_key_args(seed, epoch, device), CONTIGUOUS=False, WORDS=words, BLOCK=common.PAIR_BLOCK_I,
            SCAN_BLOCK=common.PAIR_BLOCK_J, num_warps=common.PAIR_WARPS,
        )
    return out_ids, labels
