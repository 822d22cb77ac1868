"""Benchmark of fully-explored masking (fastmask.fully_explored_mask): K views of every row.

Contenders: the reference (eager PyTorch), the reference under torch.compile (GPU), and
fastmask's kernels, for K = 4, 7, 10 (random partition) and K = 7 contiguous. The floor is the
bytes read (ids, maskable) and written (K views of ids and int64 labels) at this run's copy
bandwidth: the op is write-bound.

    python bench/bench_fully_explored.py            # sizes for the current device
    python bench/bench_fully_explored.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from bench_masking import THRESHOLDS, VOCAB, kernel_backends, make_inputs, sizes  # noqa: E402

import fastmask  # noqa: E402
from fastmask import reference  # noqa: E402


def bench_shape(batch, length, device, min_run_time, segment_counts):
    inputs = harness.rotating(lambda: make_inputs(batch, length, device), batch * length * 9, device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    rows_ids = torch.arange(batch, device=device)
    rows = []
    for k, partition in [(k, "random") for k in segment_counts] + [(7, "contiguous")]:
        nbytes = batch * length * (8 + 1 + k * 16)
        op = f"fully_explored_k{k}" + ("_contiguous" if partition == "contiguous" else "")

        def ref(ids, m, k=k, partition=partition):
            return reference.fully_explored_mask(ids, m, rows_ids, 0, 0, k, partition == "contiguous", *THRESHOLDS[1:],
                                                 4, VOCAB)

        contenders = {"reference": ref}
        if device.type == "cuda":
            contenders["compiled-ref"] = torch.compile(ref)
        for b in kernel_backends(device):
            contenders[b] = lambda ids, m, b=b, k=k, partition=partition: fastmask.fully_explored_mask(
                ids, m, 4, VOCAB, k, partition, backend=b)
        for name, fn in contenders.items():
            timing = harness.time_fn(fn, inputs, device, min_run_time)
            rows.append(harness.make_row(op, f"{batch}x{length}", torch.int64, name, timing, nbytes * ms_per_byte,
                                         device))
    return rows


BASELINES = ("reference", "compiled-ref")  # the speed-up columns of the table


def collect(device, quick, min_run_time):
    segment_counts = (7,) if quick else (4, 7, 10)
    return [row for batch, length in sizes(device, quick)
            for row in bench_shape(batch, length, device, min_run_time, segment_counts)]


if __name__ == "__main__":
    sys.exit(harness.run("fully-explored", __doc__, collect, BASELINES))
