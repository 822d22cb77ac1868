"""Triton kernels of sparse masked-token gathering; bit-exact twins of :mod:`fastmask.reference`.

* ``masked_positions``: one program per row. The row is scanned in tiles of BLOCK positions;
  ``tl.cumsum`` of the labelled flags plus the running count of earlier tiles gives each
  labelled token its rank, which is its slot (ranks >= capacity are dropped, but still counted).
  A second loop over the slots [count, C) writes the -1 / -100 padding, so every output element
  is written exactly once by the kernel.
* ``gather_masked``: a memory-bound copy. A 2-D grid over (blocks of flattened (row, slot)
  pairs, blocks of the width); each program loads its slots' indices once, then copies
  (BLOCK_R, BLOCK_H) tiles, looping over the width when it has more blocks than the grid.
  Out-of-range indices (-1, or anything < 0 or >= L) read nothing and yield zeros.
* ``scatter_masked``: kernel 1 builds the int32 inverse map slot_of_position (B, L) (-1 where no
  slot points); kernel 2 writes every output row, as values[b, slot] or zeros, with the same
  tiling as the gather. No torch.zeros + scatter, and no atomics (positions are unique per row).

Values are only loaded and stored in their own dtype, never converted, so copies are bit-exact.
Sizes (L, C, H) are runtime arguments; offsets are computed in int64 so large tensors are safe.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmask import reference
from fastmask.triton.common import IGNORE_INDEX

_MAX_SCAN_BLOCK = 1024  # positions per tile of the masked_positions scan
_MAX_BLOCK_H = 512  # width elements per tile of the copies
_TILE_ELEMENTS = 4096  # BLOCK_R * BLOCK_H of a copy tile
_MAX_GRID_Y = 65535  # CUDA limit on grid dimension 1; wider rows loop in the kernel


# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _masked_positions_kernel(
    labels_ptr, index_ptr, labels_out_ptr, count_ptr, L, C,
    BLOCK: tl.constexpr, BLOCK_C: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    lanes = tl.arange(0, BLOCK)
    # Labelled tokens seen in earlier tiles: the rank offset of the current tile.
    seen = tl.zeros([], dtype=tl.int32)
    for start in range(0, L, BLOCK):
        pos = start + lanes
        in_row = pos < L
        lab = tl.load(labels_ptr + row * L + pos, mask=in_row, other=IGNORE_INDEX)
        flag = (lab != IGNORE_INDEX).to(tl.int32)
        rank = seen + tl.cumsum(flag, axis=0) - 1
        keep = (flag != 0) & (rank < C)
        dst = row * C + rank
        tl.store(index_ptr + dst, pos.to(tl.int64), mask=keep)
        tl.store(labels_out_ptr + dst, lab, mask=keep)
        seen += tl.sum(flag, axis=0)
    tl.store(count_ptr + row, seen.to(tl.int64))

    # Padding of the unused slots [min(count, C), C); start at the tile holding the first one.
    slot_lanes = tl.arange(0, BLOCK_C)
    first = (tl.minimum(seen, C) // BLOCK_C) * BLOCK_C
    for start in range(first, C, BLOCK_C):
        slot = start + slot_lanes
        pad = (slot >= seen) & (slot < C)
        dst = row * C + slot
        tl.store(index_ptr + dst, tl.full([BLOCK_C], -1, tl.int64), mask=pad)
        tl.store(labels_out_ptr + dst, tl.full([BLOCK_C], IGNORE_INDEX, tl.int64), mask=pad)


@triton.jit
def _copy_rows_kernel(
    src_ptr, select_ptr, out_ptr, n_rows, inner, bound, H,
    BLOCK_R: tl.constexpr, BLOCK_H: tl.constexpr,
):
    # Output row r copies source row (r // inner) * bound + select[r], or is zeros where select[r]
    # is outside [0, bound): gather (select = index, inner = C, bound = L) and scatter
    # (select = slot of each position, inner = L, bound = C) are the same copy.
    r = tl.program_id(0).to(tl.int64) * BLOCK_R + tl.arange(0, BLOCK_R)
    r_ok = r < n_rows
    sel = tl.load(select_ptr + r, mask=r_ok, other=-1).to(tl.int64)
    valid = r_ok & (sel >= 0) & (sel < bound)  # a bad index is dropped, never read
    src_row = ((r // inner) * bound + sel) * H
    dst_row = r * H
    cols = tl.arange(0, BLOCK_H)
    for h0 in range(tl.program_id(1) * BLOCK_H, H, tl.num_programs(1) * BLOCK_H):
        col = h0 + cols
        col_ok = col < H
        vals = tl.load(src_ptr + src_row[:, None] + col[None, :], mask=valid[:, None] & col_ok[None, :], other=0)
        tl.store(out_ptr + dst_row[:, None] + col[None, :], vals, mask=r_ok[:, None] & col_ok[None, :])


@triton.jit
def _slot_map_kernel(index_ptr, slot_of_ptr, n_pairs, C, L, BLOCK: tl.constexpr):
    # slot_of[b, index[b, c]] = c; positions are unique per row, so plain stores suffice.
    r = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    r_ok = r < n_pairs
    pos = tl.load(index_ptr + r, mask=r_ok, other=-1).to(tl.int64)
    valid = r_ok & (pos >= 0) & (pos < L)  # -1 slots and bad indices are dropped
    b = r // C
    slot = (r - b * C).to(tl.int32)
    tl.store(slot_of_ptr + b * L + pos, slot, mask=valid)


# --------------------------------------------------------------------------------------------
# Host functions
# --------------------------------------------------------------------------------------------


def _copy_launch(n_rows: int, width: int):
    """(grid, BLOCK_R, BLOCK_H) of a row copy: ~_TILE_ELEMENTS per tile, width split on axis 1."""
    block_h = min(triton.next_power_of_2(width), _MAX_BLOCK_H)
    block_r = min(triton.next_power_of_2(n_rows), max(1, _TILE_ELEMENTS // block_h))
    grid = (triton.cdiv(n_rows, block_r), min(triton.cdiv(width, block_h), _MAX_GRID_Y))
    return grid, block_r, block_h


def masked_positions(labels: torch.Tensor, capacity: int):
    """(B, L) labels -> (index (B, C) int64, labels (B, C), count (B,) int64); see the reference."""
    capacity = int(capacity)
    labels = labels.contiguous()
    batch, length = labels.shape
    device = labels.device
    index = torch.empty((batch, capacity), dtype=torch.int64, device=device)
    labels_out = torch.empty((batch, capacity), dtype=labels.dtype, device=device)
    count = torch.empty((batch,), dtype=torch.int64, device=device)
    if batch == 0:
        return index, labels_out, count
    if length == 0:  # nothing labelled: no launch needed
        return index.fill_(-1), labels_out.fill_(reference.IGNORE_INDEX), count.zero_()
    block = min(triton.next_power_of_2(length), _MAX_SCAN_BLOCK)
    block_c = min(triton.next_power_of_2(max(capacity, 1)), _MAX_SCAN_BLOCK)
    _masked_positions_kernel[(batch,)](
        labels, index, labels_out, count, length, capacity, BLOCK=block, BLOCK_C=block_c,
    )
    return index, labels_out, count


def gather_masked(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, L, H) -> (B, C, H): rows index[b, c] of hidden[b]; zeros where index is -1."""
    hidden = hidden.contiguous()
    index = index.contiguous()
    batch, length, width = hidden.shape
    capacity = index.shape[1]
    if length == 0:  # every index is out of range
        return hidden.new_zeros((batch, capacity, width))
    out = hidden.new_empty((batch, capacity, width))
    n_rows = batch * capacity
    if n_rows == 0 or width == 0:
        return out
    grid, block_r, block_h = _copy_launch(n_rows, width)
    _copy_rows_kernel[grid](
        hidden, index, out, n_rows, capacity, length, width, BLOCK_R=block_r, BLOCK_H=block_h,
    )
    return out


def scatter_masked(values: torch.Tensor, index: torch.Tensor, length: int) -> torch.Tensor:
    """(B, C, H) -> (B, L, H): zeros, with row index[b, c] set to values[b, c] (-1: dropped)."""
    length = int(length)
    values = values.contiguous()
    index = index.contiguous()
    batch, capacity, width = values.shape
    out = values.new_empty((batch, length, width))
    n_rows = batch * length
    if n_rows == 0 or width == 0:
        return out
    # Inverse map, small (B, L) int32: filled by torch, then one store per valid slot.
    slot_of = torch.full((batch, length), -1, dtype=torch.int32, device=values.device)
    n_pairs = batch * capacity
    if n_pairs > 0:
        block = min(triton.next_power_of_2(n_pairs), 1024)
        _slot_map_kernel[(triton.cdiv(n_pairs, block),)](
            index, slot_of, n_pairs, capacity, length, BLOCK=block,
        )
    grid, block_r, block_h = _copy_launch(n_rows, width)
    _copy_rows_kernel[grid](
        values, slot_of, out, n_rows, length, capacity, width, BLOCK_R=block_r, BLOCK_H=block_h,
    )
    return out
