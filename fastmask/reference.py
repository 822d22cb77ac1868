"""Pure-PyTorch reference of every fastmask op: the executable specification.

Every backend (C++ CPU, CUDA, Triton) must reproduce these functions bit-exactly for integer
outputs: each function here *is* the op of the same name (registered as its ``reference``
backend, see :mod:`fastmask.library`). They take the integer arguments of the op schemas, not the
user-facing probabilities (:mod:`fastmask.counts` converts those), so all backends compare integers.

Randomness. Each token (row id, position) gets one Philox4x32-10 draw of four 32-bit words:

    key     = (seed & 0xffffffff, seed >> 32)
    counter = (position, row_id & 0xffffffff, row_id >> 32 (two's complement), epoch & 0xffffffff)

seed and epoch are 0-dim int64 tensors (the key is the seed's 64 bits, two's complement). On the
op's device they are read by the kernel when it runs, so a compiled step or a captured CUDA graph
can advance them in place; on the CPU they are read at launch. The public wrappers also take ints
(seed in [0, 2**63), epoch in [0, 2**32)), which give the same masks as tensors of equal value.

and each word has one purpose, so one draw per token serves every decision:

    r0  selection: Bernoulli draw ``(r0 >> 8) < select_threshold`` and ranking key ``r0 >> 1``
    r1  replacement action: ``a = r1 >> 8``; a < mask_threshold -> [MASK];
        a < mask_threshold + random_threshold -> random token; otherwise kept
    r2  random token: ``(r2 * vocab_size) >> 32``
    r3  systematic proposal sampling: the row offset (the word of position 0 only)

Per-token probabilities are quantised to multiples of 2**-24 (``threshold = round(p * 2**24)``).
Exact counts are not: they take the masking probability as an exact fraction
p = count_num / count_den and are k = min(n, max(1, floor(p n + 1/2))) of n maskable positions.

Ranking. Per row, maskable positions are ordered by the composite key (r0 >> 1, position);
non-maskable positions sort after every maskable one. Exact-count masking takes the first k;
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


def token_randoms(seed: torch.Tensor, epoch: torch.Tensor, row_ids: torch.Tensor, length: int):
    """The four Philox words (r0, r1, r2, r3) of every token, each an int64 tensor (B, L).

    seed and epoch are 0-dim int64 tensors (on the device of row_ids, or on the CPU), used in
    tensor arithmetic so that nothing is read back to the host.
    """
    pos = torch.arange(length, device=row_ids.device, dtype=torch.int64)
    rows = row_ids.to(torch.int64)[:, None]
    c0 = pos[None, :].expand(rows.shape[0], length)
    c1 = (rows & MASK32).expand_as(c0)
    c2 = ((rows >> 32) & MASK32).expand_as(c0)
    c3 = torch.zeros_like(c0) + (epoch & MASK32)
    return philox4x32(c0, c1, c2, c3, seed & MASK32, (seed >> 32) & MASK32)


def read_rate(rate, select_threshold, count_num, count_den, device):
    """The masking rate an op masks with: its ``rate`` tensor (int64 (3,): select_threshold,
    count_num, count_den) when given, clamped into range as the kernels clamp what they read from
    memory (num <= den, 1 <= den < 2**31, threshold <= 2**24); else the int arguments."""
    if rate is None:
        return select_threshold, count_num, count_den
    rate = rate.to(device)
    den = rate[2].clamp(1, (1 << 31) - 1)
    return rate[0].clamp(0, PROB_ONE), torch.minimum(rate[1].clamp(min=0), den), den


def exact_count(n, count_num: int, count_den: int):
    """k = min(n, max(1, floor(p n + 1/2))) for n > 0, else 0, with p = count_num / count_den.

    floor((2 num n + den) / (2 den)) in integers: exact, so halves go up. n is an int or an int64
    tensor; with num <= den < 2**31 and n <= 2**31 nothing overflows int64.
    """
    k = (2 * count_num * n + count_den) // (2 * count_den)
    if isinstance(n, torch.Tensor):
        return torch.minimum(k.clamp(min=1), n)
    return min(max(k, 1), n)


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
    input_ids, maskable, row_ids, seed, epoch, select_threshold, count_num, count_den, mask_threshold,
    random_threshold, mask_token_id, vocab_size, exact, rate=None,
):
    """Standard MLM masking: Bernoulli per token (select_threshold), or an exact count per row
    (count_num / count_den); `rate`: see :func:`read_rate`."""
    select_threshold, count_num, count_den = read_rate(rate, select_threshold, count_num, count_den, input_ids.device)
    r0, r1, r2, _ = token_randoms(seed, epoch, row_ids, input_ids.shape[1])
    if exact:
        k = exact_count(maskable.sum(1), count_num, count_den)
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
    mask_threshold, random_threshold, mask_token_id, vocab_size, word_start=None,
):
    """K views (K, B, L) of the batch; view k masks exactly segment k of every row.

    With `word_start`, the units partitioned are the row's words (word_index), not its tokens:
    word w takes the segment that index w would take in a row whose first W positions are the
    maskable ones (the same rule on the draws of indices 0..W-1, as whole_word_mask keys a word's
    draw by its index), and each maskable token takes its word's segment. Every word is then
    masked whole, in exactly one view; the token replacement stays per token (r1, r2 of its position).
    """
    length = input_ids.shape[1]
    r0, r1, r2, _ = token_randoms(seed, epoch, row_ids, length)
    if word_start is None:
        seg = segments(r0, maskable, num_segments, contiguous)
    else:
        word, words, _ = word_index(maskable, word_start)
        units = torch.arange(length, device=input_ids.device) < words[:, None]
        seg = segments(r0, units, num_segments, contiguous).gather(1, word.clamp(min=0))
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


# --------------------------------------------------------------------------------------------
# MAPNet proposal sampling.
#
# Integer outputs must be bit-identical on every backend, yet they depend on floats (softmax,
# Gumbel noise). So every float that feeds a decision is computed in float32 with correctly
# rounded +, -, *, / only (no fused multiply-add, no fast division), and exp/log are the
# "canonical" polynomials below rather than a libm whose last bit varies across backends.
# The softmax normaliser is summed exactly in 40-bit fixed point, so its value does not
# depend on the order of the reduction.

LN2_HI = 0.693359375  # Cody-Waite split of ln 2: k * LN2_HI is exact for |k| < 2**12
LN2_LO = -2.12194440e-4
LOG2E = 1.44269504
EXP_CUTOFF = -64.0  # canonical_exp(x) = 0 below: keeps every later product away from denormals
SQRT2 = 1.41421356
FIXED_ONE = 2.0**40  # the fixed point of the exact softmax normaliser


def _f32_tensor(value):
    """`value` rounded to float32, as a 0-dim float32 tensor (an operand of float32 arithmetic)."""
    return torch.tensor(value, dtype=torch.float32)


def canonical_exp(x: torch.Tensor) -> torch.Tensor:
    """exp for float32 x < 88 from +, -, *, floor and exponent bits (about 2 ulp); 0 below -64."""
    k = torch.floor(x * _f32_tensor(LOG2E) + _f32_tensor(0.5))
    r = (x - k * _f32_tensor(LN2_HI)) - k * _f32_tensor(LN2_LO)
    p = _f32_tensor(1.0 / 720)
    for c in (1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0):
        p = p * r + _f32_tensor(c)
    scale = ((k.clamp(min=-126).to(torch.int32) + 127) << 23).view(torch.float32)
    return torch.where(x < EXP_CUTOFF, torch.zeros_like(x), p * scale)


def canonical_log(u: torch.Tensor) -> torch.Tensor:
    """log for positive normal float32 u from +, -, *, / and exponent bits (about 2 ulp)."""
    bits = u.view(torch.int32)
    e = ((bits >> 23) & 0xFF) - 127
    m = ((bits & 0x7FFFFF) | (127 << 23)).view(torch.float32)  # mantissa in [1, 2)
    big = m > _f32_tensor(SQRT2)
    m = torch.where(big, m * _f32_tensor(0.5), m)
    e = (e + big.to(torch.int32)).to(torch.float32)
    s = (m - _f32_tensor(1.0)) / (m + _f32_tensor(1.0))
    s2 = s * s
    t = _f32_tensor(1.0 / 9)
    for c in (1.0 / 7, 1.0 / 5, 1.0 / 3, 1.0):
        t = t * s2 + _f32_tensor(c)
    return (e * _f32_tensor(LN2_LO) + (s + s) * t) + e * _f32_tensor(LN2_HI)


def proposal_inclusion(scores, maskable, count_num, count_den, uniform_mix, temperature):
    """The proposal q (B, L), inclusion probabilities pi = min(1, k q) (B, L) and counts k (B,).

    q = (1 - uniform_mix) softmax(scores / temperature over maskable positions) + uniform_mix / n,
    0 where not maskable. A row with a non-finite maskable score is treated as uniform.
    """
    # A divisor on the scores' device: CUDA divides by a CPU scalar as a * (1 / b), which is not
    # correctly rounded, while the kernels (and CPU division) are.
    x = scores.to(torch.float32) / torch.full_like(scores, temperature, dtype=torch.float32)
    n = maskable.sum(1)
    nf = n.to(torch.float32)[:, None]
    finite = (torch.isfinite(x) | ~maskable).all(1, keepdim=True)
    x = torch.where(maskable & finite, x, torch.full_like(x, float("-inf")))
    top = x.max(1, keepdim=True).values if x.shape[1] else x.new_zeros(x.shape[0], 1)
    top = torch.where(n[:, None] > 0, top, torch.zeros_like(top))
    e = torch.where(maskable & finite, canonical_exp(x - top), torch.zeros_like(x))
    fixed = torch.floor(e * _f32_tensor(FIXED_ONE)).to(torch.int64).sum(1, keepdim=True)
    p = e / (fixed.to(torch.float32) * _f32_tensor(1.0 / FIXED_ONE)).clamp(min=1.0)
    eps = torch.where(finite, _f32_tensor(uniform_mix), _f32_tensor(1.0))
    kf = exact_count(n, count_num, count_den).to(torch.float32)[:, None]
    q = torch.where(maskable, (_f32_tensor(1.0) - eps) * p + eps / nf, torch.zeros_like(p))
    a = kf * (_f32_tensor(1.0) - eps)
    b = (kf * eps) / nf
    pi = torch.where(maskable, torch.clamp(a * p + b, max=1.0), torch.zeros_like(p))
    return q, pi, kf[:, 0].to(torch.int64)


# proposal_mask's `sampling` codes (fastmask.ops.SAMPLINGS names them in this order).
SAMPLING_TOPK, SAMPLING_POISSON, SAMPLING_SYSTEMATIC = 0, 1, 2
# Systematic sampling's integer weights: W_i = max(1, floor(q_i 2**24)) (q_i <= 1, so W_i <= 2**24).
SYSTEMATIC_BITS = 24


def proposal_mask(
    input_ids, scores, maskable, row_ids, seed, epoch, count_num, count_den, uniform_mix, temperature,
    sampling, sequence_weights, mask_threshold, random_threshold, mask_token_id, vocab_size, rate=None,
):
    """MAPNet masking: positions drawn from the proposal q, with importance weights.

    sampling (:data:`SAMPLING_TOPK`, ``_POISSON``, ``_SYSTEMATIC``):

    * topk: exactly k positions without replacement, the k smallest keys E_i / q_i with
      E_i = -log U_i ~ Exp(1) (equivalent to Gumbel-top-k on log q); ties by position.
    * poisson: position i included iff U_i < pi_i = min(1, k q_i).
    * systematic: exactly k positions with inclusion probabilities pi_i known exactly
      (:func:`systematic_selection`).

    Weights (float32, 0 where not masked): token mode w_i = (k / n) / pi_i (exact for Poisson and
    systematic; for top-k, pi_i = min(1, k q_i) approximates the inclusion probability); sequence
    mode: the row's exp(-sum over sampled i of log(n q_i)), clipped to [0.8, 1.2], then divided by
    the batch mean (:func:`divide_by_batch_mean`). Returns (ids, labels, weights).
    """
    _, count_num, count_den = read_rate(rate, 0, count_num, count_den, input_ids.device)
    r0, r1, r2, r3 = token_randoms(seed, epoch, row_ids, input_ids.shape[1])
    q, pi, k = proposal_inclusion(scores, maskable, count_num, count_den, uniform_mix, temperature)
    if sampling == SAMPLING_POISSON:
        u = (r0 >> 8).to(torch.float32) * _f32_tensor(2.0**-24)
        chosen = maskable & (u < pi)
    elif sampling == SAMPLING_SYSTEMATIC:
        chosen, pi = systematic_selection(q, maskable, k, r0, r3)
    else:
        u = ((r0 >> 9).to(torch.float32) + _f32_tensor(0.5)) * _f32_tensor(2.0**-23)  # in (0, 1)
        key = -canonical_log(u) / q  # q = 0 gives inf; non-maskable rank last regardless
        bits = torch.where(q > 0, key, torch.full_like(key, float("inf"))).view(torch.int32).to(torch.int64)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        packed = torch.where(maskable, bits, 0xFFFFFFFF) << 31 | pos
        rank = torch.empty_like(packed)
        rank.scatter_(1, packed.argsort(1), pos.expand_as(packed).contiguous())
        chosen = maskable & (rank < k[:, None])
    ids, labels = corrupt(input_ids, chosen, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)
    if sequence_weights:
        weights = divide_by_batch_mean(clipped_sequence_weights(chosen, q, maskable))
    else:
        k_over_n = k[:, None].to(torch.float32) / maskable.sum(1, keepdim=True).to(torch.float32)
        weights = torch.where(chosen, k_over_n / torch.where(chosen, pi, _f32_tensor(1.0)), torch.zeros_like(q))
    return ids, labels, weights


def systematic_weights(q: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """Integer sampling weights W_i = max(1, floor(q_i 2**24)) of maskable positions, 0 elsewhere (int64).

    Every maskable position keeps a positive weight, so a row can always fill its k positions.
    """
    w = torch.floor(q * _f32_tensor(2.0**SYSTEMATIC_BITS)).to(torch.int64).clamp(min=1)
    return torch.where(maskable, w, 0)


def systematic_capped(w: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions whose inclusion probability is capped at 1, and their count m (B,).

    Capping is the fixed point of: cap every uncapped i with (k - m) W_i >= A, A the sum of the
    uncapped weights. Kernels iterate that rule (each round caps at least one position, and never
    one beyond the fixed point); here the same set comes from the weights sorted in descending
    order: m is the smallest count with (k - m) W_(m+1) < sum_{j > m} W_(j), or n if none, and
    the capped positions are the m largest (a tie is never split: whether i is capped depends on
    W_i alone).
    """
    if w.shape[1] == 0:  # no positions (argmax needs a non-empty row)
        return torch.zeros_like(w, dtype=torch.bool), torch.zeros_like(k)
    n = (w > 0).sum(1, keepdim=True)
    desc = w.sort(1, descending=True).values
    # At column m (0-based, holding W_(m+1)): sum_{j > m} W_(j) (1-based), W_(m+1) included, i.e. the
    # uncapped total A once the m largest are capped.
    rest = desc.sum(1, keepdim=True) - desc.cumsum(1) + desc
    m_col = torch.arange(w.shape[1], device=w.device)
    stops = (m_col < n) & ((k[:, None] - m_col) * desc < rest)
    m = torch.where(stops.any(1, keepdim=True), stops.to(torch.int64).argmax(1, keepdim=True), n)
    threshold = desc.gather(1, (m - 1).clamp(min=0))
    capped = (m > 0) & (w > 0) & (w >= threshold)
    return capped, m[:, 0]


def systematic_selection(q, maskable, k, r0, r3):
    """Systematic sampling of exactly k positions per row with exact inclusion probabilities.

    With W = :func:`systematic_weights` and the capped set of :func:`systematic_capped` (m
    positions, always included), the other r = k - m positions are drawn from the uncapped ones
    (total weight A) in a random order, the exact-count ranking order (r0 >> 1, position): with
    C_i the cumulative uncapped weight up to and including i in that order and one offset U per
    row, i is included iff a point U + t A (t = 0..r-1) falls in [r (C_i - W_i), r C_i). Every
    point lands in [0, r A), each interval is shorter than A (that is what uncapped means), so
    exactly r positions are drawn, and position i with probability r W_i / A (U uniform on
    [0, A)). Inclusion probabilities: pi_i = 1 (capped), r W_i / A (uncapped); every sum is an
    integer sum, so no backend rounds differently. U = floor(u A / 2**32) with u the row's r3 word
    at position 0 (a 32-bit uniform: the inclusion probabilities are exact to within 2**-32).
    Returns (chosen (B, L) bool, pi (B, L) float32 as float(r W_i) / float(A), 1, or 0).
    """
    w = systematic_weights(q, maskable)
    capped, m = systematic_capped(w, k)
    uncapped = torch.where(capped, 0, w)
    total = uncapped.sum(1, keepdim=True)  # A
    r = (k - m)[:, None]
    order = ranks(r0, maskable).argsort(1)  # positions by rank
    cumulative = torch.empty_like(uncapped)
    cumulative.scatter_(1, order, uncapped.gather(1, order).cumsum(1))
    offset = (r3[:, :1] * total) >> 32  # U in [0, A); r3 < 2**32 and A < 2**26 + L: no overflow
    divisor = total.clamp(min=1)

    def points_below(x):  # #{t >= 0 : U + t A < x}
        return torch.where(x > offset, (x - offset + divisor - 1) // divisor, 0)

    drawn = (uncapped > 0) & (points_below(r * cumulative) > points_below(r * (cumulative - uncapped)))
    chosen = maskable & (capped | drawn)
    pi_uncapped = (r * uncapped).to(torch.float32) / divisor.to(torch.float32)
    pi = torch.where(capped, _f32_tensor(1.0), torch.where(maskable, pi_uncapped, _f32_tensor(0.0)))
    return chosen, pi


def clipped_sequence_weights(chosen: torch.Tensor, q: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
    """The author's per-row weight exp(-sum over chosen i of log(n q_i)) clipped to [0.8, 1.2], on chosen tokens."""
    nf = maskable.sum(1, keepdim=True).to(torch.float32)
    log_n_q = canonical_log(torch.where(chosen, nf * q, _f32_tensor(1.0)))  # log 1 = 0 where not chosen
    row_log = torch.clamp(-log_n_q.sum(1, keepdim=True), -1.0, 1.0)  # the clip below needs no more
    row = torch.clamp(canonical_exp(row_log), 0.8, 1.2)
    return torch.where(chosen, row.expand_as(q), torch.zeros_like(q))


def divide_by_batch_mean(weights: torch.Tensor) -> torch.Tensor:
    """Sequence weights (B, L) divided by the mean row weight of the rows that have a mask (no sync)."""
    if weights.shape[1] == 0:
        return weights
    row_weight = weights.amax(1)
    has_mask = row_weight > 0
    mean = (row_weight * has_mask).sum() / has_mask.sum().clamp(min=1)
    return weights / torch.where(mean > 0, mean, torch.ones_like(mean))


# --------------------------------------------------------------------------------------------
# Whole-word and span masking.
#
# Words. A word is a head and the maskable tokens after it up to the next head, where a head is a
# maskable position that is flagged in `word_start`, or the row's first, or follows a position
# that is not maskable: words never cross a special or padding, and a row without any flag has
# one word per run of maskable tokens. Words are numbered w = 0..W-1 in position order.
#
# Draws are keyed by indices, not positions: word w's and tile j's decisions come from the Philox
# draw of "position" w or j (one per row and index, the same counters as a token's draw), so
# every token recomputes its word's or tile's draw instead of reading it from another lane.
#
# Spans tile the words. Tile j has a length l_j in words, drawn from r3 of index j against the
# cumulative thresholds of the length distribution (l_j = 1 + #{t in thresholds : r3 >> 8 >= t});
# tiles start at the exclusive prefix sums b_j of the lengths and cover words [b_j, min(b_j + l_j, W)),
# so they never overlap and every word is in exactly one tile (the last one may be cut at W).
# Whole-word masking with an exact budget is the case l_j = 1: tile j is word j.
#
# Budget. The row's budget is k = exact_count(n) of its n maskable tokens. Tiles are taken in a
# random order (the exact-count ranking order (r0 >> 1, j) of tile j's draw, except that tiles of
# more than k tokens come after all the others) while the running
# total of their tokens stays within k; the first tile that would cross k (the "crossing" tile) is
# cut to its first words that fit, and no later tile is taken. So a row masks at most k tokens and
# at least k - (tokens of one word) + 1: the gather capacity of exact-count masks holds.


MAX_SPAN_WORDS = 64  # the longest span, in words: length_thresholds has at most 63 entries
OVERSIZED_TILE = 1 << 31  # a tile's ranking class bit, above r0 >> 1: it holds more tokens than the budget


def word_index(maskable: torch.Tensor, word_start: torch.Tensor):
    """The words of every row: (word (B, L) int64: the word of each maskable position, -1 elsewhere;
    words (B,): W; tokens_before (B, L + 1) int64: maskable tokens before word w, n for w >= W)."""
    previous = torch.nn.functional.pad(maskable[:, :-1], (1, 0), value=False)
    head = maskable & (word_start | ~previous)
    word = torch.where(maskable, head.cumsum(1) - 1, -1)
    n = maskable.sum(1, keepdim=True)
    before = maskable.cumsum(1) - maskable.to(torch.int64)  # exclusive: maskable tokens before each position
    length = maskable.shape[1]
    tokens_before = n.expand(-1, length + 1).contiguous()
    tokens_before.scatter_(1, torch.where(head, word, length), torch.where(head, before, n))
    return word, head.sum(1), tokens_before


def span_lengths(r3: torch.Tensor, length_thresholds) -> torch.Tensor:
    """l_j = 1 + #{t in length_thresholds : (r3_j >> 8) >= t}, in words (thresholds non-decreasing)."""
    u = r3 >> 8
    lengths = torch.ones_like(u)
    for t in length_thresholds:
        lengths += u >= t
    return lengths


def span_tiles(draws, maskable, word_start, count_num, count_den, length_thresholds):
    """The spans a row takes: (word (B, L), tile (B, L): the tile of each maskable position's word,
    -1 elsewhere; taken (B, L) bool: the position's word is masked; lengths (B, L): l_j of tile j).
    `draws` = token_randoms(...) of the row's indices (the same counters as its positions)."""
    r0, _, _, r3 = draws
    word, words, tokens_before = word_index(maskable, word_start)
    if maskable.shape[1] == 0:
        return word, word, maskable, word
    lengths = span_lengths(r3, length_thresholds)
    starts = lengths.cumsum(1) - lengths  # b_j, strictly increasing
    real = starts < words[:, None]
    tile = torch.searchsorted(starts, word.clamp(min=0), right=True) - 1
    tile = torch.where(maskable, tile, -1)
    ends = torch.minimum(starts + lengths, words[:, None])
    size = torch.where(real, tokens_before.gather(1, ends) - tokens_before.gather(1, starts.clamp(max=maskable.shape[1])),
                       0)
    index = torch.arange(maskable.shape[1], device=maskable.device)
    budget = exact_count(maskable.sum(1), count_num, count_den)[:, None]
    # Tiles larger than the whole budget rank after all others (their class bit), so a row's first
    # tile always fits when any does. Tiles that are not real have size 0: where they rank is moot.
    key = torch.where(size > budget, OVERSIZED_TILE, 0) | (r0 >> 1)
    packed = (key << 31) | index  # (class, r0 >> 1, j) order; j < 2**31
    order = packed.argsort(1)
    total = size.gather(1, order).cumsum(1)  # tokens of the tiles up to each rank
    crossing = (total > budget).sum(1, keepdim=True)  # tiles ranked after the crossing one, and it
    cross_rank = maskable.shape[1] - crossing  # rank of the crossing tile (L: none)
    has_cross = cross_rank < maskable.shape[1]
    cross_key = torch.where(has_cross, packed.gather(1, order).gather(1, cross_rank.clamp(max=max(maskable.shape[1] - 1, 0))),
                            torch.iinfo(torch.int64).max)
    before_cross = torch.where(cross_rank > 0, total.gather(1, (cross_rank - 1).clamp(min=0)), 0)
    remaining = budget - before_cross
    t = tile.clamp(min=0)
    key = packed.gather(1, t)
    upto = tokens_before.gather(1, (word + 1).clamp(min=0)) - tokens_before.gather(1, starts.gather(1, t).clamp(
        max=maskable.shape[1]))  # tokens from the tile's start through this word
    taken = maskable & ((key < cross_key) | ((key == cross_key) & (upto <= remaining)))
    return word, tile, taken, lengths


def whole_word_mask(
    input_ids, maskable, word_start, row_ids, seed, epoch, select_threshold, count_num, count_den,
    mask_threshold, random_threshold, mask_token_id, vocab_size, exact, rate=None,
):
    """Whole-word masking: every word masked whole or not at all, 80/10/10 per token.

    exact=False: word w chosen iff (r0 >> 8) of index w's draw < select_threshold (each word with
    probability p). exact=True: one-word tiles under the budget k (see above): at most k tokens.
    `rate`: see :func:`read_rate`.
    """
    select_threshold, count_num, count_den = read_rate(rate, select_threshold, count_num, count_den, input_ids.device)
    length = input_ids.shape[1]
    draws = token_randoms(seed, epoch, row_ids, length)
    r0, r1, r2, _ = draws
    if exact:
        _, _, chosen, _ = span_tiles(draws, maskable, word_start, count_num, count_den, ())
    else:
        word, _, _ = word_index(maskable, word_start)
        selected = (r0 >> 8) < select_threshold  # of index w
        chosen = maskable & selected.gather(1, word.clamp(min=0))
    return corrupt(input_ids, chosen, r1, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


def span_mask(
    input_ids, maskable, word_start, row_ids, seed, epoch, count_num, count_den, length_thresholds, per_span,
    mask_threshold, random_threshold, mask_token_id, vocab_size, rate=None,
):
    """Span masking: tiles of whole words with lengths from `length_thresholds`, taken under the
    budget k (see above). per_span: the 80/10/10 action of a span is r1 of its tile's draw (one
    decision per span, SpanBERT); else each token's own r1. A random replacement is each token's own.
    `rate`: see :func:`read_rate`."""
    _, count_num, count_den = read_rate(rate, 0, count_num, count_den, input_ids.device)
    length = input_ids.shape[1]
    draws = token_randoms(seed, epoch, row_ids, length)
    _, r1, r2, _ = draws
    _, tile, chosen, _ = span_tiles(draws, maskable, word_start, count_num, count_den, length_thresholds)
    action = r1.gather(1, tile.clamp(min=0)) if per_span else r1
    return corrupt(input_ids, chosen, action, r2, mask_threshold, random_threshold, mask_token_id, vocab_size)


# --------------------------------------------------------------------------------------------
# The vocabulary head's cross-entropy without its logits.
#
# Rows are taken `chunk_size` at a time: a chunk's logits (chunk_size, V) are the only ones ever
# held, in the accumulation dtype (float64 for float64 inputs, else float32). Each chunk yields
# its rows' losses and, given grad_scale (the gradient of the caller's loss with respect to each
# row's loss), the gradient of the logits in place of the logits, from which the chunk's share of
# every gradient follows by two matmuls. Floats are not bit-exact across backends: the kernels
# agree with this within the tolerance table of tests/test_head.py.
# --------------------------------------------------------------------------------------------


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def cross_entropy_rows(logits, labels, grad_scale, ignore_index: int, z_loss: float):
    """The fused kernels' row function, on a chunk's logits (R, V) in the accumulation dtype.

    Returns the rows' losses (R,): lse - logit[label] + z_loss * lse**2 (lse: the logsumexp), 0 for
    rows labelled `ignore_index`, NaN for other labels outside [0, V); and, given grad_scale (R,),
    the logits' gradient s * (softmax * (1 + 2 z_loss lse) - onehot(label)) (0 on ignored rows,
    NaN on out-of-range ones), else None.
    """
    vocab = logits.shape[1]
    labelled = labels != ignore_index
    in_range = (labels >= 0) & (labels < vocab)
    lse = torch.logsumexp(logits, dim=1)
    target = logits.gather(1, labels.clamp(0, vocab - 1)[:, None])[:, 0]
    nan = torch.full((), float("nan"), dtype=logits.dtype, device=logits.device)
    losses = torch.where(labelled, torch.where(in_range, lse - target + z_loss * lse * lse, nan), 0)
    if grad_scale is None:
        return losses, None
    grad = torch.exp(logits - lse[:, None]) * (1 + 2 * z_loss * lse)[:, None]
    grad -= torch.nn.functional.one_hot(labels.clamp(0, vocab - 1), vocab).to(grad.dtype) * in_range[:, None]
    grad *= torch.where(labelled, torch.where(in_range, grad_scale.to(grad.dtype), nan), 0)[:, None]
    return losses, grad


def linear_cross_entropy(hidden, weight, bias, labels, grad_scale, ignore_index: int, z_loss: float,
                         chunk_size: int):
    """Cross-entropy of the logits hidden @ weight.T + bias (N, V) against labels (N,), by chunks.

    hidden (N, H), weight (V, H), bias (V,) or None, in one float dtype; labels (N,) int64;
    grad_scale (N,) in the accumulation dtype or None. Returns (losses (N,) in the accumulation
    dtype, grad_hidden (N, H), grad_weight (V, H), grad_bias (V,)): the gradients of
    sum(grad_scale * losses), in the inputs' dtypes; empty (0,) tensors without grad_scale (and
    grad_bias without bias). The matmuls run in the accumulation dtype here (the specification);
    the kernels run them in the inputs' dtype.
    """
    def rows(logits, chunk_labels, chunk_scale):
        return cross_entropy_rows(logits, chunk_labels, chunk_scale, ignore_index, z_loss)

    return chunked_linear_cross_entropy(hidden, weight, bias, labels, grad_scale, chunk_size, rows,
                                        accumulation_dtype(hidden.dtype))


def chunked_linear_cross_entropy(hidden, weight, bias, labels, grad_scale, chunk_size: int, rows, matmul_dtype):
    """linear_cross_entropy's chunk loop, with the row function `rows(logits, labels, grad_scale) ->
    (losses, logits' gradient or None)` (it may overwrite the logits with their gradient) and the
    matmuls in `matmul_dtype` (the accumulation dtype, or the inputs': then the logits are converted
    for the row function and their gradient back for the matmuls). Gradients of the weight and bias
    accumulate over the chunks in the accumulation dtype."""
    acc = accumulation_dtype(hidden.dtype)
    num_rows, vocab = hidden.shape[0], weight.shape[0]
    w = weight.to(matmul_dtype)
    b = None if bias is None else bias.to(matmul_dtype)
    losses = hidden.new_empty(num_rows, dtype=acc)
    grads = grad_scale is not None
    grad_hidden = hidden.new_empty(num_rows, hidden.shape[1]) if grads else hidden.new_empty(0)
    grad_w = weight.new_zeros(vocab, weight.shape[1], dtype=acc) if grads else None
    grad_b = weight.new_zeros(vocab, dtype=acc) if grads and bias is not None else None
    for start in range(0, num_rows, chunk_size):
        end = min(start + chunk_size, num_rows)
        h = hidden[start:end].to(matmul_dtype)
        logits = (h @ w.T if b is None else torch.addmm(b, h, w.T)).to(acc)
        losses[start:end], dz = rows(logits, labels[start:end], grad_scale[start:end] if grads else None)
        if grads:
            dz_matmul = dz.to(matmul_dtype)
            grad_hidden[start:end] = dz_matmul @ w
            grad_w += (dz_matmul.T @ h).to(acc)
            if grad_b is not None:
                grad_b += dz.sum(0)
    return (losses, grad_hidden,  # a distinct empty tensor per absent output: outputs never alias
            weight.new_empty(0) if grad_w is None else grad_w.to(weight.dtype),
            weight.new_empty(0) if grad_b is None else grad_b.to(weight.dtype))
