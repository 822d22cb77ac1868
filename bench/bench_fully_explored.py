"""Benchmark of fully-explored masking (fastmask.fully_explored_mask): K views of every row.

Contenders: the reference backend (on GPU also under torch.compile) and fastmask's kernels,
for K = 4, 7, 10 (random partition) and K = 7 contiguous. The floor is the bytes read (ids,
maskable) and written (K views of ids and int64 labels) at this run's copy bandwidth: the op is
write-bound.

    python bench/bench_fully_explored.py            # sizes for the current device
    python bench/bench_fully_explored.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402

BASELINES = harness.baselines("reference", "compiled-ref")


def bench_shape(batch, length, device, profile, segment_counts):
    inputs = harness.rotating(lambda: harness.make_inputs(batch, length, device), batch * length * 9, device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    for k, partition in [(k, "random") for k in segment_counts] + [(7, "contiguous")]:
        nbytes = batch * length * (8 + 1 + k * 16)
        op = f"fully_explored_k{k}" + ("_contiguous" if partition == "contiguous" else "")

        def call(ids, maskable, backend, k=k, partition=partition):
            return fastmask.fully_explored_mask(ids, maskable, harness.MASK_ID, harness.VOCAB, k, partition,
                                                backend=backend)

        yield from harness.time_contenders(op, f"{batch}x{length}", torch.int64, harness.fastmask_contenders(call, device),
                                        inputs, nbytes * ms_per_byte, device, profile)


def collect(device, profile):
    segment_counts = {"quick": (7,), "gpu": (7,)}.get(profile.name, (4, 7, 10))
    for batch, length in harness.sizes(device, profile):
        yield from bench_shape(batch, length, device, profile, segment_counts)


if __name__ == "__main__":
    sys.exit(harness.run("fully-explored", __doc__, collect, BASELINES))
