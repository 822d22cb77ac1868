"""Benchmark of MAPNet proposal sampling (fastmask.proposal_mask) against its baselines.

Contenders, all in one run:
  eager-multinomial  eager PyTorch: softmax + mixing, torch.multinomial(q, k, replacement=False),
                     importance weights and 80/10/10 (torch's RNG)
  reference          fastmask.reference.proposal_mask (the same algorithm, eager PyTorch)
  compiled-ref       the reference under torch.compile (GPU only)
  cpu/cuda/triton    fastmask's fused kernels
The floor: bytes read (ids, scores, maskable) + written (ids, labels, weights) at this run's
copy bandwidth. MAPNet's cost per training step is in bench_step.py.

    python bench/bench_proposal.py            # sizes for the current device
    python bench/bench_proposal.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from bench_masking import kernel_backends, sizes  # noqa: E402

import fastmask  # noqa: E402
from fastmask import reference  # noqa: E402
from fastmask.ops import probability_threshold  # noqa: E402

VOCAB, P, EPS = 30522, 0.15, 0.1


def eager_multinomial(ids, scores, maskable, k):
    """What one writes in eager PyTorch: every row has n = L maskable positions here."""
    n = maskable.sum(1, keepdim=True)
    q = (1 - EPS) * torch.softmax(scores.masked_fill(~maskable, float("-inf")), 1) + EPS / n
    q = q.masked_fill(~maskable, 0.0)
    picked = torch.multinomial(q, k, replacement=False)
    chosen = torch.zeros_like(maskable).scatter_(1, picked, True)
    weights = torch.where(chosen, (k / n) / torch.clamp(k * q, max=1.0), 0.0)
    action = torch.rand(ids.shape, device=ids.device)
    random_ids = torch.randint(VOCAB, ids.shape, device=ids.device)
    out = torch.where(action < 0.8, 4, torch.where(action < 0.9, random_ids, ids))
    return torch.where(chosen, out, ids), torch.where(chosen, ids, -100), weights


def bench_shape(batch, length, device, min_run_time):
    k = max(1, round(P * length))

    def make():
        ids = torch.randint(5, VOCAB, (batch, length), device=device)
        return ids, torch.randn(batch, length, device=device), torch.ones_like(ids, dtype=torch.bool)

    nbytes = batch * length * (8 + 4 + 1 + 8 + 8 + 4)
    sets = harness.rotating(make, nbytes, device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    rows_ids = torch.arange(batch, device=device)
    thresholds = (probability_threshold("p", 0.8), probability_threshold("p", 0.1))
    shape, rows = f"{batch}x{length}", []

    def ref(ids, scores, maskable):
        return reference.proposal_mask(ids, scores, maskable, rows_ids, 0, 0, probability_threshold("p", P), EPS, 1.0,
                                       False, False, *thresholds, 4, VOCAB)

    contenders = {"eager-multinomial": lambda ids, s, m: eager_multinomial(ids, s, m, k), "reference": ref}
    if device.type == "cuda":
        contenders["compiled-ref"] = torch.compile(ref)
    for b in kernel_backends(device):
        contenders[b] = lambda ids, s, m, b=b: fastmask.proposal_mask(ids, s, m, 4, VOCAB, P, EPS, backend=b)
    for name, fn in contenders.items():
        timing = harness.time_fn(fn, sets, device, min_run_time)
        rows.append(harness.make_row("proposal_topk", shape, torch.float32, name, timing, nbytes * ms_per_byte, device))
    return rows


BASELINES = ("eager-multinomial", "reference")  # the speed-up columns of the table


def collect(device, quick, min_run_time):
    return [row for batch, length in sizes(device, quick) for row in bench_shape(batch, length, device, min_run_time)]


if __name__ == "__main__":
    sys.exit(harness.run("proposal", __doc__, collect, BASELINES))
