"""Triton kernels of whole-word and span masking; bit-exact twins of :mod:`fastmask.reference`.

One program per row. Words and tiles are indexed tables (tokens before word w, the end of tile j)
that other lanes must read, and Triton has no gather across lanes: the program writes them to a
per-row scratch buffer in global memory (allocated by the host function) and reads them back after a
``tl.debug_barrier()``. Philox draws are recomputed where needed (a token's, its word's, its tile's),
never stored.

* Words: head flags from the maskable flags of a position and of its predecessor (a shifted load),
  word index = cumsum(head) - 1; head lanes store the maskable tokens before them at their word's
  index (``tokens_before``; indices >= W read as n).
* Bernoulli whole words need nothing more: a token is chosen by the draw of its word's index.
* Spans (and exact whole words, one-word tiles): lane j draws tile j's length, cumsum gives the
  ends e_j (stored: the start of tile j is e_{j-1}). A token's tile is found by a binary search
  over the increasing ends. Tile j's ranking key is r0 >> 1 of its draw below a class bit set for
  tiles of more tokens than the budget k (``reference.OVERSIZED_TILE``). The crossing tile (key K*,
  and how many tokens of it fit) is found
  - for rows of up to ``common.LONG_ROW`` tokens, held whole in registers (BLOCK >= L), by
    ``tl.sort`` of the packed keys ``(key << 32) | j`` (the reference's (key, j) order): sorted
    lane r holds tile j in its low bits, whose size is recomputed from the scratch tables, and a
    cumsum gives the running total in rank order;
  - for longer rows, walked in chunks of ``common.LONG_ROW_BLOCK`` lanes, by a bitwise search of
    the 32-bit key: the largest v whose tiles with keys below it hold at most k tokens (32 passes
    over the row), then one pass over the tiles of key v in j order.
  A token of word w in tile j is then taken iff key_j < K*, or key_j == K* and its tile's tokens up
  to and including word w fit in what remains of the budget.

Scalars that vary from call to call are not specialised on, so changing the seed, the epoch or a
threshold does not trigger a recompilation on GPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmask import reference
from fastmask.triton.common import (
    CORRUPT_ARGS,
    COUNT_ARGS,
    LOW32,
    PAD_KEY,
    PHILOX_KEY_ARGS,
    as_bytes,
    corrupt,
    exact_count,
    philox_key,
    philox_key_args,
    rate_args,
    read_count_fraction,
    read_threshold,
    ranked_launch,
    row_warps,
    replacement,
    sorted_rank_keys,
    token_draw,
)

_CALL_ARGS = PHILOX_KEY_ARGS + ["select_threshold"] + COUNT_ARGS + CORRUPT_ARGS + ["num_thresholds"]
_KEY_BITS = tl.constexpr(32)  # ranking keys: the oversized-tile class bit above r0 >> 1
OVERSIZED_TILE = tl.constexpr(reference.OVERSIZED_TILE)


# --------------------------------------------------------------------------------------------
# Device helpers
# --------------------------------------------------------------------------------------------


@triton.jit
def _words(maskable_ptr, word_start_ptr, offs, L, heads_before, tokens_before):
    """Of the positions `offs` (the row's heads and maskable tokens before them given): maskable,
    head, the word index (-1 where not maskable) and the maskable tokens before each position."""
    in_row = offs < L
    maskable = (tl.load(maskable_ptr + offs, mask=in_row, other=0) != 0) & in_row
    previous = tl.load(maskable_ptr + offs - 1, mask=in_row & (offs > 0), other=0) != 0
    flagged = tl.load(word_start_ptr + offs, mask=in_row, other=0) != 0
    head = maskable & (flagged | ~previous)
    word = tl.where(maskable, heads_before + tl.cumsum(head.to(tl.int32), axis=0) - 1, -1)
    before = tokens_before + tl.cumsum(maskable.to(tl.int32), axis=0) - maskable.to(tl.int32)
    return maskable, head, word, before


@triton.jit
def _span_lengths(r3, thresholds_ptr, num_thresholds):
    """reference.span_lengths: 1 + the thresholds at or below r3 >> 8, in words (int32)."""
    u = (r3 >> 8).to(tl.int32)
    lengths = tl.full(r3.shape, 1, tl.int32)
    for i in range(num_thresholds):
        lengths += (u >= tl.load(thresholds_ptr + i)).to(tl.int32)
    return lengths


@triton.jit
def _tokens_before(tokens_before_ptr, word, words, n):
    """Maskable tokens before `word` (n from W on: the table holds words 0..W-1)."""
    known = word < words
    return tl.where(known, tl.load(tokens_before_ptr + word, mask=known, other=0), n)


@triton.jit
def _tile(tile, ends_ptr, tokens_before_ptr, L, words, n):
    """Tile j's start b_j (the end of tile j - 1) and its size in tokens (0 unless real: j < L and
    b_j < W)."""
    start = tl.load(ends_ptr + tile - 1, mask=(tile > 0) & (tile < L), other=0)
    end = tl.load(ends_ptr + tile, mask=tile < L, other=0)
    real = (tile < L) & (start < words)
    size = _tokens_before(tokens_before_ptr, end, words, n) - _tokens_before(tokens_before_ptr, start, words, n)
    return start, tl.where(real, size, 0)


@triton.jit
def _tile_key(r0, size, k):
    """Tile j's ranking key: r0 >> 1 of its draw, below the class bit of tiles larger than the budget."""
    return tl.where(size > k, OVERSIZED_TILE, 0).to(tl.uint32) | (r0 >> 1)


@triton.jit
def _drawn_tile_key(tile, ends_ptr, tokens_before_ptr, L, words, n, k, row_id, seed_lo, seed_hi, epoch):
    """Tile j's ranking key and size, its draw recomputed."""
    _, size = _tile(tile, ends_ptr, tokens_before_ptr, L, words, n)
    r0, _, _, _ = token_draw(tile, row_id, seed_lo, seed_hi, epoch)
    return _tile_key(r0, size, k), size


@triton.jit
def _tile_of(ends_ptr, word, L, SEARCH_STEPS: tl.constexpr):
    """The tile of each word: how many tile ends e_j (increasing, j < L) are <= it; a binary search
    of `search_steps` >= bit_length(L) steps."""
    tile = tl.zeros_like(word)
    for step in tl.static_range(SEARCH_STEPS):
        candidate = tile + (1 << (SEARCH_STEPS - 1 - step))
        exists = candidate <= L
        ends_before = exists & (tl.load(ends_ptr + candidate - 1, mask=exists, other=0) <= word)
        tile = tl.where(ends_before, candidate, tile)
    return tile


@triton.jit
def _take(word, maskable, ends_ptr, tokens_before_ptr, L, words, n, k, crossing_key, remaining, row_id, seed_lo,
          seed_hi, epoch, SEARCH_STEPS: tl.constexpr):
    """Whether each maskable token (of `word`) is taken under the budget, and r1 of its tile's draw."""
    word = tl.maximum(word, 0)
    tile = _tile_of(ends_ptr, word, L, SEARCH_STEPS)
    start, size = _tile(tile, ends_ptr, tokens_before_ptr, L, words, n)
    r0, r1, _, _ = token_draw(tile, row_id, seed_lo, seed_hi, epoch)
    key = (_tile_key(r0, size, k).to(tl.uint64) << 32) | tile.to(tl.uint64)
    upto = (_tokens_before(tokens_before_ptr, word + 1, words, n)
            - _tokens_before(tokens_before_ptr, start, words, n)).to(tl.int64)
    taken = maskable & ((key < crossing_key) | ((key == crossing_key) & (upto <= remaining)))
    return taken, r1


@triton.jit
def _write(ids_ptr, out_ids_ptr, labels_ptr, offs, L, chosen, r1, r2,
           mask_threshold, random_threshold, mask_token_id, vocab_size):
    """Stores the corrupted ids and labels of the positions `offs` of a row (pointers at its start)."""
    in_row = offs < L
    ids = tl.load(ids_ptr + offs, mask=in_row, other=0).to(tl.int64)
    replaced = replacement(ids, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    out, labels = corrupt(ids, chosen, replaced)
    tl.store(out_ids_ptr + offs, out.to(out_ids_ptr.dtype.element_ty), mask=in_row)
    tl.store(labels_ptr + offs, labels, mask=in_row)


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit(do_not_specialize=_CALL_ARGS)
def _words_kernel(
    ids_ptr, maskable_ptr, word_start_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, ends_ptr, tokens_before_ptr,
    thresholds_ptr, num_thresholds, L,
    select_threshold, count_num, count_den, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    SPANS: tl.constexpr, PER_SPAN: tl.constexpr, SEARCH_STEPS: tl.constexpr, BLOCK: tl.constexpr,
):
    # One program per row; BLOCK >= L. Lane i is position i and tile index i (the same draw).
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    select_threshold = read_threshold(rate_ptr, select_threshold, RATE_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    lane = tl.arange(0, BLOCK)
    in_row = lane < L
    maskable, head, word, before = _words(maskable_ptr + base, word_start_ptr + base, lane, L, 0, 0)
    r0, r1, r2, r3 = token_draw(lane, row_id, seed_lo, seed_hi, epoch)

    if SPANS:
        words = tl.sum(head.to(tl.int32), axis=0)
        n = tl.sum(maskable.to(tl.int32), axis=0)
        ends = tl.cumsum(_span_lengths(r3, thresholds_ptr, num_thresholds), axis=0)
        tl.store(tokens_before_ptr + base + word, before, mask=head)
        tl.store(ends_ptr + base + lane, ends, mask=in_row)
        tl.debug_barrier()

        # Rank the tiles; sorted lane r holds the tile of rank r, whose size the tables give.
        k = exact_count(n.to(tl.int64), count_num, count_den)
        _, size = _tile(lane, ends_ptr + base, tokens_before_ptr + base, L, words, n)
        _, ordered = sorted_rank_keys(_tile_key(r0, size, k), lane, in_row)
        ranked = tl.where(in_row, ordered & LOW32, 0).to(tl.int32)
        _, size = _tile(ranked, ends_ptr + base, tokens_before_ptr + base, L, words, n)
        total = tl.cumsum(size.to(tl.int64), axis=0)
        over = total > k  # from the crossing rank on (none: every tile fits)
        crossing_key = tl.min(tl.where(over, ordered, PAD_KEY), axis=0)
        remaining = k - tl.max(tl.where(over, 0, total), axis=0)
        # Reloaded rather than held in registers through the sort.
        maskable, _, word, _ = _words(maskable_ptr + base, word_start_ptr + base, lane, L, 0, 0)
        chosen, tile_r1 = _take(word, maskable, ends_ptr + base, tokens_before_ptr + base, L, words, n, k,
                                crossing_key, remaining, row_id, seed_lo, seed_hi, epoch, SEARCH_STEPS)
        if PER_SPAN:
            r1 = tile_r1
    else:
        word_r0, _, _, _ = token_draw(tl.maximum(word, 0), row_id, seed_lo, seed_hi, epoch)
        chosen = maskable & ((word_r0 >> 8).to(tl.int64) < select_threshold.to(tl.int64))
    _write(ids_ptr + base, out_ids_ptr + base, labels_ptr + base, lane, L, chosen, r1, r2,
           mask_threshold, random_threshold, mask_token_id, vocab_size)


@triton.jit(do_not_specialize=_CALL_ARGS)
def _words_long_row_kernel(
    ids_ptr, maskable_ptr, word_start_ptr, row_ids_ptr, out_ids_ptr, labels_ptr, ends_ptr, tokens_before_ptr,
    thresholds_ptr, num_thresholds, L,
    select_threshold, count_num, count_den, mask_threshold, random_threshold, mask_token_id, vocab_size,
    seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY: tl.constexpr, EPOCH_IN_MEMORY: tl.constexpr,
    rate_ptr, RATE_IN_MEMORY: tl.constexpr,
    SPANS: tl.constexpr, PER_SPAN: tl.constexpr, SEARCH_STEPS: tl.constexpr, BLOCK: tl.constexpr,
):
    # Long rows: one program per row, walking it in chunks of BLOCK lanes; scans carry across chunks.
    seed_lo, seed_hi, epoch = philox_key(seed_ptr, seed, epoch_ptr, epoch, SEED_IN_MEMORY, EPOCH_IN_MEMORY)
    select_threshold = read_threshold(rate_ptr, select_threshold, RATE_IN_MEMORY)
    count_num, count_den = read_count_fraction(rate_ptr, count_num, count_den, RATE_IN_MEMORY)
    row = tl.program_id(0).to(tl.int64)
    base = row * L
    row_id = tl.load(row_ids_ptr + row)
    lane = tl.arange(0, BLOCK)

    # The tables (spans) or the whole answer (Bernoulli words).
    words = tl.zeros((), tl.int32)
    n = tl.zeros((), tl.int32)
    ends_before = tl.zeros((), tl.int32)
    for first in range(0, L, BLOCK):
        offs = first + lane
        maskable, head, word, before = _words(maskable_ptr + base, word_start_ptr + base, offs, L, words, n)
        if SPANS:
            _, _, _, r3 = token_draw(offs, row_id, seed_lo, seed_hi, epoch)
            ends = ends_before + tl.cumsum(_span_lengths(r3, thresholds_ptr, num_thresholds), axis=0)
            tl.store(tokens_before_ptr + base + word, before, mask=head)
            tl.store(ends_ptr + base + offs, ends, mask=offs < L)
            ends_before = tl.max(ends, axis=0)
        else:
            word_r0, _, _, _ = token_draw(tl.maximum(word, 0), row_id, seed_lo, seed_hi, epoch)
            chosen = maskable & ((word_r0 >> 8).to(tl.int64) < select_threshold.to(tl.int64))
            _, r1, r2, _ = token_draw(offs, row_id, seed_lo, seed_hi, epoch)
            _write(ids_ptr + base, out_ids_ptr + base, labels_ptr + base, offs, L, chosen, r1, r2,
                   mask_threshold, random_threshold, mask_token_id, vocab_size)
        words += tl.sum(head.to(tl.int32), axis=0)
        n += tl.sum(maskable.to(tl.int32), axis=0)

    if SPANS:
        tl.debug_barrier()
        k = exact_count(n.to(tl.int64), count_num, count_den)
        # The largest key v whose tiles below it hold at most k tokens (`below` of them), bit by bit.
        v = tl.zeros((), tl.uint32)
        below = tl.zeros((), tl.int64)
        for bit in range(_KEY_BITS - 1, -1, -1):
            candidate = v | (tl.full((), 1, tl.uint32) << bit)
            held = tl.zeros((), tl.int64)
            for first in range(0, L, BLOCK):
                offs = first + lane
                key, size = _drawn_tile_key(offs, ends_ptr + base, tokens_before_ptr + base, L, words, n, k,
                                            row_id, seed_lo, seed_hi, epoch)
                held += tl.sum(tl.where(key < candidate, size, 0).to(tl.int64), axis=0)
            fits = held <= k
            v = tl.where(fits, candidate, v)
            below = tl.where(fits, held, below)
        # The tiles of key v in j order: the first that crosses k is the crossing tile.
        crossing = tl.full((), 2**31 - 1, tl.int32)
        before_crossing = below
        running = below
        for first in range(0, L, BLOCK):
            offs = first + lane
            key, size = _drawn_tile_key(offs, ends_ptr + base, tokens_before_ptr + base, L, words, n, k,
                                        row_id, seed_lo, seed_hi, epoch)
            tie = key == v
            through = running + tl.cumsum(tl.where(tie, size, 0).to(tl.int64), axis=0)
            crossing = tl.minimum(crossing, tl.min(tl.where(tie & (through > k), offs, 2**31 - 1), axis=0))
            before_crossing = tl.maximum(before_crossing, tl.max(tl.where(tie & (through <= k), through, 0), axis=0))
            running = tl.max(through, axis=0)
        crossing_key = tl.where(crossing < 2**31 - 1, (v.to(tl.uint64) << 32) | crossing.to(tl.uint64), PAD_KEY)
        remaining = k - before_crossing

        words_before = tl.zeros((), tl.int32)
        tokens_before = tl.zeros((), tl.int32)
        for first in range(0, L, BLOCK):
            offs = first + lane
            maskable, head, word, _ = _words(maskable_ptr + base, word_start_ptr + base, offs, L, words_before,
                                             tokens_before)
            chosen, tile_r1 = _take(word, maskable, ends_ptr + base, tokens_before_ptr + base, L, words, n, k,
                                    crossing_key, remaining, row_id, seed_lo, seed_hi, epoch, SEARCH_STEPS)
            _, r1, r2, _ = token_draw(offs, row_id, seed_lo, seed_hi, epoch)
            if PER_SPAN:
                r1 = tile_r1
            _write(ids_ptr + base, out_ids_ptr + base, labels_ptr + base, offs, L, chosen, r1, r2,
                   mask_threshold, random_threshold, mask_token_id, vocab_size)
            words_before += tl.sum(head.to(tl.int32), axis=0)
            tokens_before += tl.sum(maskable.to(tl.int32), axis=0)


# --------------------------------------------------------------------------------------------
# Host functions (signatures and return conventions of fastmask.reference)
# --------------------------------------------------------------------------------------------


def _words_mask(input_ids, maskable, word_start, row_ids, seed, epoch, select_threshold, count_num, count_den,
                length_thresholds, spans, per_span, mask_threshold, random_threshold, mask_token_id, vocab_size,
                rate):
    batch, length = input_ids.shape
    device = input_ids.device
    out_ids = torch.empty((batch, length), dtype=input_ids.dtype, device=device)
    labels = torch.empty((batch, length), dtype=torch.int64, device=device)
    if batch == 0 or length == 0:
        return out_ids, labels
    ids = input_ids.contiguous()
    if spans:
        # Per-row scratch: the end of tile j at j, the maskable tokens before word w at w.
        ends = torch.empty((batch, length), dtype=torch.int32, device=device)
        tokens_before = torch.empty((batch, length), dtype=torch.int32, device=device)
    else:
        ends = tokens_before = ids  # never read
    # A copy without a sync (the list is at most 63 ints). Without thresholds, any int32 buffer (never
    # read): exact whole words then run the span kernel binary.
    thresholds = (torch.tensor(length_thresholds, dtype=torch.int32).to(device, non_blocking=True)
                  if length_thresholds else ends)
    rate_ints, rate_kwargs = rate_args(rate, device, select_threshold, count_num, count_den)
    launch = ranked_launch(length)
    kernel = _words_long_row_kernel if launch.long_row else _words_kernel
    # Spans keep the word and tile tables' values live through the sort: at most two lanes a
    # thread where the block allows (4 spill for sm_90 from 512 lanes on), and a row of one warp's
    # lanes on one warp (on 4, per-span replacement spills 4 B for sm_90 at 32 lanes).
    if launch.long_row or not spans:
        warps = launch.num_warps
    else:
        warps = 1 if launch.block <= 32 else row_warps(2 * launch.block)
    kernel[(batch,)](
        ids, as_bytes(maskable.contiguous()), as_bytes(word_start.contiguous()), row_ids.contiguous(), out_ids, labels,
        ends, tokens_before, thresholds, len(length_thresholds), length,
        *rate_ints, int(mask_threshold), int(random_threshold), int(mask_token_id), int(vocab_size),
        **philox_key_args(seed, epoch, device), **rate_kwargs, SPANS=bool(spans), PER_SPAN=bool(per_span),
        SEARCH_STEPS=length.bit_length(), BLOCK=launch.block,
        num_warps=warps,
    )
    return out_ids, labels


def whole_word_mask(
    input_ids, maskable, word_start, row_ids, seed, epoch, select_threshold, count_num, count_den,
    mask_threshold, random_threshold, mask_token_id, vocab_size, exact, rate=None,
):
    """Whole-word masking: each word with probability p, or one-word tiles under the exact budget."""
    return _words_mask(input_ids, maskable, word_start, row_ids, seed, epoch, select_threshold, count_num, count_den,
                       (), exact, False, mask_threshold, random_threshold, mask_token_id, vocab_size, rate)


def span_mask(
    input_ids, maskable, word_start, row_ids, seed, epoch, count_num, count_den, length_thresholds, per_span,
    mask_threshold, random_threshold, mask_token_id, vocab_size, rate=None,
):
    """Span masking: tiles of whole words (lengths from `length_thresholds`) under the exact budget."""
    return _words_mask(input_ids, maskable, word_start, row_ids, seed, epoch, 0, count_num, count_den,
                       list(length_thresholds), True, per_span, mask_threshold, random_threshold, mask_token_id,
                       vocab_size, rate)
