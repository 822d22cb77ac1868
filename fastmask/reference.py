"""Pure-PyTorch reference of every fastmask op: the executable specification.

Every backend (C++ CPU, CUDA, Triton) must reproduce these functions bit-exactly for integer
outputs. The functions take the *quantised* arguments of the op schemas (see
:mod:`fastmask.ops`), not the user-facing probabilities, so that all backends compare integers.

Randomness. Each token (row id, position) gets one Philox4x32-10 draw of four 32-bit words:

    key     = (seed & 0xffffffff, seed >> 32)
    counter = (position, row_id & 0xffffffff, row_id >> 32 (two's complement), epoch)

and each word has one purpose, so one draw per token serves every decision:

    r0  selection: Bernoulli draw ``(r0 >> 8) < select_threshold`` and ranking key ``r0 >> 1``
    r1  replacement action: ``a = r1 >> 8``; a < mask_threshold -> [MASK];
        a < mask_threshold + random_threshold -> random token; otherwise kept
    r2  random token: ``(r2 * vocab_size) >> 32``
    r3  unused by the masking ops

Probabilities are quantised to multiples of 2**-24 (``threshold = round(p * 2**24)``).

Ranking. Per row, maskable positions are ordered by the composite key (r0 >> 1, position);
non-maskable positions sort after every maskable one. Exact-count masking takes the first
k = min(n, max(1, (select_threshold * n + 2**23) >> 24)) of n maskable positions;
fully-explored random partitions put the position of rank r into segment r mod K.

Integers are held in int64 tensors; 32-bit unsigned arithmetic is emulated with masks.
"""

from __future__ import annotations

import torch

MASK32 = 0xFFFFFFFF
PROB_BITS = 24
PROB_ONE = 1 << PROB_BITS
IGNORE_INDEX = -100
# Philox4x32 constants (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
# Non-maskable positions get this ranking key: above every maskable key (r0 >> 1 < 2**31).
UNRANKED_KEY = 1 << 31


def _mulhilo(a: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32-bit halves of a * m for a in [0, 2**32), without int64 overflow."""
    t_lo = a * (m & 0xFFFF)
    t_hi = a * (m >> 16)
    hi = (t_hi + (t_lo >> 16)) >> 16
    lo = (((t_hi & 0xFFFF) << 16) + t_lo) & MASK32
    return hi, lo


def philox4x32(c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 on int64 tensors holding uint32 values; returns four uint32 words."""
    for _ in range(PHILOX_ROUNDS):
        hi0, lo0 = _mulhilo(c0, PHILOX_M0)
        hi1, lo1 = _mulhilo(c2, PHILOX_M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + PHILOX_W0) & MASK32
        k1 = (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def token_randoms(seed: int, epoch: int, row_ids: torch.Tensor, length: int):
    """The four Philox words (r0, r1, r2, r3) of every token, each an int64 tensor (B, L)."""
    pos = torch.arange(length, device=row_ids.device, dtype=torch.int64)
    rows = row_ids.to(torch.int64)[:, None]
    c0 = pos[None, :].expand(rows.shape[0], length)
    c1 = (rows & MASK32).expand_as(c0)
    c2 = ((rows >> 32) & MASK32).expand_as(c0)
    c3 = torch.full_like(c0, epoch & MASK32)
    return philox4x32(c0, c1, c2, c3, seed & MASK32, (seed >> 32) & MASK32)


def exact_count(n: torch.Tensor, select_threshold: int) -> torch.Tensor:
    """k = min(n, max(1, floor(p * n + 1/2))) for n > 0, else 0; p = select_threshold / 2**24."""
    k = ((select_threshold * n + (PROB_ONE >> 1)) >> PROB_BITS).clamp(min=1)
    return torch.minimum(k, n)


def ranks(r0: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """Rank of every position among its row's maskable positions by (r0 >> 1, position).

    Maskable positions get ranks 0..n-1; non-maskable ones get ranks >= n.
    """
    length = r0.shape[1]
    pos = torch.arange(length, device=r0.device, dtype=torch.int64)
    key = torch.where(maskable, r0 >> 1, UNRANKED_KEY)
    order = torch.argsort((key << 31) | pos, dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, pos.expand_as(order).contiguous())
    return rank


def corrupt(input_ids, chosen, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size):
    """Apply the 80/10/10 rule to the chosen tokens; returns (corrupted ids, int64 labels)."""
    ids = input_ids.to(torch.int64)
    action = r1 >> 8
    random_token = (r2 * vocab_size) >> 32
    replaced = torch.where(
        action < mask_threshold,
        mask_token_id,
        torch.where(action < mask_threshold + random_threshold, random_token, ids),
    )
    out = torch.where(chosen, replaced, ids).to(input_ids.dtype)
    labels = torch.where(chosen, ids, IGNORE_INDEX)
    return out, labels


def maskable_mask(input_ids, attention_mask, special_ids):
    """True where a token may be masked: attended (if a mask is given) and not a special id."""
    maskable = ~torch.isin(input_ids.to(torch.int64), special_ids)  # int64: no wrap-around of large ids
    if attention_mask is not None:
        maskable &= attention_mask != 0
    return maskable


def mask_tokens(
    input_ids, maskable, row_ids, seed, epoch, select_threshold, mask_threshold,
    random_threshold, mask_token_id, vocab_size, exact,
):
    """Standard MLM masking: Bernoulli per token, or an exact count per row."""
    r0, r1, r2, _ = token_randoms(seed, epoch, row_ids, input_ids.shape[1])
    if exact:
        k = exact_count(maskable.sum(1), select_threshold)
        chosen = maskable & (ranks(r0, maskable) < k[:, None])
    else:
        chosen = maskable & ((r0 >> 8) < select_threshold)
    return corrupt(input_ids, chosen, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


def segments(r0, maskable, num_segments, contiguous):
    """Segment (0..K-1) of every maskable position in the fully-explored partition."""
    if contiguous:
        n = maskable.sum(1, keepdim=True)
        j = maskable.cumsum(1) - 1  # index among the row's maskable positions
        return (j * num_segments) // n.clamp(min=1)
    return ranks(r0, maskable) % num_segments


def fully_explored_mask(
    input_ids, maskable, row_ids, seed, epoch, num_segments, contiguous,
    mask_threshold, random_threshold, mask_token_id, vocab_size,
):
    """K views (K, B, L) of the batch; view k masks exactly segment k of every row."""
    r0, r1, r2, _ = token_randoms(seed, epoch, row_ids, input_ids.shape[1])
    seg = segments(r0, maskable, num_segments, contiguous)
    view = torch.arange(num_segments, device=input_ids.device).view(-1, 1, 1)
    chosen = maskable[None] & (seg[None] == view)
    return corrupt(
        input_ids[None], chosen, r1[None], r2[None], mask_threshold, random_threshold,
        mask_token_id, vocab_size,
    )


# --------------------------------------------------------------------------------------------
# Sparse masked-token gathering.


def masked_positions(labels: torch.Tensor, capacity: int):
    """Positions of each row's labelled tokens (label != -100), ascending, in `capacity` slots.

    Returns (index (B, C) int64 with -1 in unused slots, labels (B, C) int64 with -100 in unused
    slots, count (B,) int64: the row's number of labelled tokens, which exceeds C on overflow).
    """
    batch, length = labels.shape
    labelled = labels != IGNORE_INDEX
    count = labelled.sum(1)
    slot = labelled.cumsum(1) - 1
    slot = torch.where(labelled & (slot < capacity), slot, capacity)  # slot C collects the rest
    index = torch.full((batch, capacity + 1), -1, dtype=torch.int64, device=labels.device)
    positions = torch.arange(length, device=labels.device).expand(batch, length)
    index.scatter_(1, slot, positions)
    index = index[:, :capacity].contiguous()
    if length == 0:  # nothing to gather from: every slot is unused
        return index, torch.full_like(index, IGNORE_INDEX), count
    gathered = labels.gather(1, index.clamp(min=0))
    return index, torch.where(index >= 0, gathered, IGNORE_INDEX), count


def gather_masked(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, L, H) -> (B, C, H): the rows of `index`; zeros where index is -1 (or outside [0, L))."""
    batch, length, width = hidden.shape
    if length == 0:
        return hidden.new_zeros(batch, index.shape[1], width)
    valid = ((index >= 0) & (index < length))[..., None]
    rows = torch.where(valid[..., 0], index, 0)[..., None].expand(-1, -1, width)
    return torch.where(valid, hidden.gather(1, rows), hidden.new_zeros(()))


def scatter_masked(values: torch.Tensor, index: torch.Tensor, length: int) -> torch.Tensor:
    """(B, C, H) -> (B, L, H): zeros, with row index[b, c] set to values[b, c] (-1 or outside [0, L): dropped).

    The adjoint of gather_masked; positions are unique per row, so no accumulation is needed.
    """
    batch, _, width = values.shape
    out = values.new_zeros(batch, length + 1, width)  # row L collects the unused slots
    valid = (index >= 0) & (index < length)
    rows = torch.where(valid, index, length)[..., None].expand(-1, -1, width)
    out.scatter_(1, rows, values)
    return out[:, :length].contiguous()
