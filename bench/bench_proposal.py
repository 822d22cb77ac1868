"""Benchmark of MAPNet proposal sampling (fastmask.proposal_mask) against its baselines.

Systematic sampling (the default: exactly k, exact inclusion probabilities) and top-k sampling,
with token weights, each timed against the baselines named in BASELINES (`--help` lists them),
the reference backend (on GPU also under torch.compile) and fastmask's fused kernels, all in one
run. The floor: bytes read (ids, scores, maskable) + written (ids, labels,
weights) at this run's copy bandwidth. MAPNet's cost per training step is in bench_step.py.

    python bench/bench_proposal.py            # sizes for the current device
    python bench/bench_proposal.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402

BASELINES = harness.baselines("eager-multinomial", "reference")
UNIFORM_MIX = 0.1


def eager_multinomial(ids, scores, maskable, k):
    """What one writes in eager PyTorch: every row has n = L maskable positions here."""
    n = maskable.sum(1, keepdim=True)
    q = (1 - UNIFORM_MIX) * torch.softmax(scores.masked_fill(~maskable, float("-inf")), 1) + UNIFORM_MIX / n
    q = q.masked_fill(~maskable, 0.0)
    picked = torch.multinomial(q, k, replacement=False)
    chosen = torch.zeros_like(maskable).scatter_(1, picked, True)
    weights = torch.where(chosen, (k / n) / torch.clamp(k * q, max=1.0), 0.0)
    return *harness.eager_replace(ids, chosen), weights


def bench_shape(batch, length, device, profile):
    k = fastmask.masked_count(length, harness.P)

    def make():
        ids = harness.random_ids(batch, length, device)
        return ids, torch.randn(batch, length, device=device), torch.ones_like(ids, dtype=torch.bool)

    nbytes = batch * length * (8 + 4 + 1 + 8 + 8 + 4)
    sets = harness.rotating(make, nbytes, device)
    floor_ms = nbytes * harness.copy_ms_per_byte(device)
    for sampling in ("systematic", "topk"):
        contenders = {
            "eager-multinomial": lambda ids, scores, maskable: eager_multinomial(ids, scores, maskable, k),
            **harness.fastmask_contenders(
                lambda ids, scores, maskable, backend, sampling=sampling: fastmask.proposal_mask(
                    ids, scores, maskable, harness.MASK_ID, harness.VOCAB, harness.P, UNIFORM_MIX, sampling=sampling,
                    backend=backend),
                device),
        }
        yield from harness.time_contenders(f"proposal_{sampling}", f"{batch}x{length}", torch.float32, contenders, sets,
                                        floor_ms, device, profile)


def collect(device, profile):
    for batch, length in harness.sizes(device, profile):
        yield from bench_shape(batch, length, device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("proposal", __doc__, collect, BASELINES))
