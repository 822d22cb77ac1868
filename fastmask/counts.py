"""How a masking probability becomes op arguments, and how many tokens a mask holds.

The masking probability p is used two ways, each with its own exact integer form:

* **Per-token draws** (Bernoulli selection, the 80/10/10 split) compare a 24-bit random word with
  ``probability_threshold(p) = round(p * 2**24)``: p is quantised to a multiple of 2**-24.
* **Exact counts** (exact-count masking, proposal sampling's k)
  must not inherit that quantisation: 0.15 quantises to 2516582 / 2**24, just below 0.15, which
  would send every exact half (p n + 1/2 an integer, e.g. n = 10) down. They use p as written:
  ``count_fraction(p)`` is the fraction of the shortest decimal that reads back as p (Python's
  ``repr``), so 0.15 is 3/20 exactly, and every backend computes
  k = min(n, max(1, floor(p n + 1/2))) = floor((2 num n + den) / (2 den)) in int64.

:func:`masked_count` is that count for users (ints or tensors); :func:`gather_capacity` is the
number of slots per row that :func:`fastmask.masked_positions` needs for a masking scheme.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from fastmask import reference

# Count fractions keep num <= den < 2**31, so 2 num n + den < 2**63 for rows up to 2**31 long.
MAX_COUNT_DENOMINATOR = 2**31 - 1
# gather_capacity's bound for Bernoulli masks: a full row overflows with at most this probability.
BERNOULLI_OVERFLOW_PROBABILITY = 1e-9


def check_probability(name: str, p: float) -> float:
    """p itself if it is a probability in [0, 1]; otherwise a ValueError naming the argument."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def probability_threshold(name: str, p: float) -> int:
    """The per-token threshold of a probability: round(p * 2**24)."""
    return round(check_probability(name, p) * reference.PROB_ONE)


def replacement_thresholds(mask_replace_prob: float, random_replace_prob: float) -> tuple[int, int]:
    """The thresholds of the 80/10/10 rule: ([MASK] share, random-token share) of a masked token."""
    t_mask = probability_threshold("mask_replace_prob", mask_replace_prob)
    t_random = probability_threshold("random_replace_prob", random_replace_prob)
    if mask_replace_prob + random_replace_prob > 1.0 + 1e-9:
        raise ValueError(
            "mask_replace_prob + random_replace_prob must be at most 1, got "
            f"{mask_replace_prob} + {random_replace_prob}"
        )
    return t_mask, min(t_random, reference.PROB_ONE - t_mask)


_FRACTIONS: dict[float, tuple[int, int]] = {}


# A constant to torch.compile: traced, the memo's membership test would become a guard that the
# next new entry fails (a recompilation).
@torch.compiler.assume_constant_result
def _fraction(p: float) -> tuple[int, int]:
    if p not in _FRACTIONS:
        f = Fraction(repr(p)).limit_denominator(MAX_COUNT_DENOMINATOR)
        _FRACTIONS[p] = (f.numerator, f.denominator)
    return _FRACTIONS[p]


def count_fraction(p: float, name: str = "mlm_probability") -> tuple[int, int]:
    """(count_num, count_den): p as the exact fraction the exact counts use.

    The shortest decimal that reads back as p (0.15 -> 3/20, 0.1 + 0.2 -> 3/10), exact for p
    written with up to 9 decimals; p with a longer expansion (1/3 -> 0.3333333333333333) becomes
    the closest fraction with a denominator below 2**31 (1/3).
    """
    return _fraction(check_probability(name, p))


def _rate_words(p: float) -> tuple[int, int, int]:
    return (probability_threshold("mlm_probability", p), *count_fraction(p))


def mask_rate(p: float, device: torch.device | str | None = None) -> torch.Tensor:
    """A masking probability as the masking ops read it from memory (their ``rate`` argument): an
    int64 (3,) tensor (the Bernoulli threshold, the exact count's fraction). Rewrite it with
    :func:`set_mask_rate`."""
    return torch.tensor(_rate_words(p), dtype=torch.int64, device=device)


def set_mask_rate(rate: torch.Tensor, p: float) -> None:
    """Writes probability p into a :func:`mask_rate` tensor, in place and without a host sync (on a
    GPU, an asynchronous copy from pinned memory): kernels launched after it read p."""
    words = torch.tensor(_rate_words(p), dtype=torch.int64, pin_memory=rate.is_cuda)
    rate.copy_(words, non_blocking=True)


def masked_count(n, p: float):
    """How many of n maskable tokens an exact-count mask holds: min(n, max(1, floor(p n + 1/2))), 0 if n = 0.

    n: an int, or an integer tensor (the result is an int64 tensor on its device). The same
    count on every backend, for every row length the ops support.
    """
    num, den = count_fraction(p, "p")
    if isinstance(n, torch.Tensor):
        if n.is_floating_point() or n.is_complex():
            raise TypeError(f"n must be an integer tensor, got {n.dtype}")
        return reference.exact_count(n.to(torch.int64), num, den)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0 or an integer tensor, got {n!r}")
    return reference.exact_count(n, num, den)


def _bernoulli_quantile(n: int, p: float, tail: float) -> int:
    """The smallest c with P(Binomial(n, p) > c) <= tail (summed exactly in log space)."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    mode = min(n, int((n + 1) * p))
    log_pmf = math.lgamma(n + 1) - math.lgamma(mode + 1) - math.lgamma(n - mode + 1)
    log_pmf += mode * math.log(p) + (n - mode) * math.log1p(-p)
    # Upper-tail terms decrease geometrically beyond the mode: walk up until they vanish.
    terms, j, log_ratio = [], mode, math.log(p) - math.log1p(-p)
    while j < n and log_pmf > -80.0:
        log_pmf += math.log(n - j) - math.log(j + 1) + log_ratio
        j += 1
        terms.append(math.exp(log_pmf))
    above = 0.0  # P(X > c), accumulated from the top
    for c in range(mode + len(terms) - 1, mode - 1, -1):
        above += terms[c - mode]
        if above > tail:
            return c + 1
    return mode


def gather_capacity(length: int, mlm_probability: float = 0.15, exact_count: bool = True,
                    num_segments: int | None = None) -> int:
    """Slots per row for :func:`fastmask.masked_positions` on rows of `length` tokens.

    * ``num_segments=K``: fully-explored views hold at most ceil(length / K) labels per row. Exact.
    * ``exact_count=True``: ``masked_count(length, p)``; a row with fewer maskable tokens masks no
      more. Exact: no label is ever dropped.
    * ``exact_count=False`` (Bernoulli masks): the smallest capacity that a row of `length`
      maskable tokens exceeds with probability at most 1e-9 (binomial tail, computed exactly;
      rows with fewer maskable tokens exceed it less often). Not a guarantee: the overflow count
      of :func:`fastmask.masked_positions` says when it happened.
    Always at least 1 (the op's minimum).
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise ValueError(f"length must be an int >= 0, got {length!r}")
    if num_segments is not None:
        if isinstance(num_segments, bool) or not isinstance(num_segments, int) or num_segments < 1:
            raise ValueError(f"num_segments must be an int >= 1, got {num_segments!r}")
        return max(1, -(-length // num_segments))
    p = check_probability("mlm_probability", mlm_probability)
    if exact_count:
        return max(1, masked_count(length, p))
    return max(1, _bernoulli_quantile(length, p, BERNOULLI_OVERFLOW_PROBABILITY))


SPAN_LENGTHS = ("geometric", "ngram")


def span_length_distribution(lengths: str = "geometric", span_p: float = 0.2, max_span: int = 10,
                             max_ngram: int = 3) -> list[float]:
    """P(l) for span lengths l = 1, 2, ... in words, as :func:`fastmask.span_mask` draws them (before the
    2**-24 quantisation of :func:`span_length_thresholds`).

    * ``"geometric"`` (SpanBERT): P(l) proportional to p (1 - p)^(l - 1) for l <= max_span, p = span_p.
    * ``"ngram"`` (Megatron-LM's BERT data): P(n) proportional to 1 / n for n <= max_ngram.
    """
    if lengths not in SPAN_LENGTHS:
        raise ValueError(f"lengths must be one of {SPAN_LENGTHS}, got {lengths!r}")
    longest = max_span if lengths == "geometric" else max_ngram
    name = "max_span" if lengths == "geometric" else "max_ngram"
    if isinstance(longest, bool) or not isinstance(longest, int) or not 1 <= longest <= reference.MAX_SPAN_WORDS:
        raise ValueError(f"{name} must be an int in [1, {reference.MAX_SPAN_WORDS}], got {longest!r}")
    if lengths == "geometric":
        p = check_probability("span_p", span_p)
        if p == 0.0:
            raise ValueError("span_p must be in (0, 1], got 0.0")
        weights = [p * (1.0 - p) ** (length - 1) for length in range(1, longest + 1)]
    else:
        weights = [1.0 / n for n in range(1, longest + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


def span_length_thresholds(distribution: list[float]) -> list[int]:
    """The op's ``length_thresholds`` of a length distribution: round(2**24 * P(l <= m)) for m = 1 .. M-1."""
    cumulative, thresholds = 0.0, []
    for p in distribution[:-1]:
        cumulative += p
        thresholds.append(min(reference.PROB_ONE, round(cumulative * reference.PROB_ONE)))
    return thresholds
