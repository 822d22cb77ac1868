"""Benchmark of sparse masked-token gathering (fastmask.gather_masked and its backward).

Gather contenders, in one run:
  bool-index     hidden[labels != -100]: what most trainers do (dynamic shape, a host sync on GPU)
  index-select   hidden.flatten(0, 1).index_select(0, flat positions): static, but needs the positions
  reference      fastmask.reference.gather_masked (torch.gather)
  cpu/cuda/triton  fastmask.gather_masked
timed forward, and forward + backward (the backward writes the dense (B, L, H) gradient). The floor
is bytes read + written at this run's copy bandwidth.

    python bench/bench_gather.py            # sizes for the current device
    python bench/bench_gather.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from bench_masking import kernel_backends  # noqa: E402

import fastmask  # noqa: E402
from fastmask import reference  # noqa: E402

P = 0.15


def masked_labels(batch, length, device):
    ids = torch.randint(5, 30522, (batch, length), device=device)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    return fastmask.mask_tokens(ids, maskable, 4, 30522, P, exact_count=True).labels


def bench_gather(batch, length, width, dtype, device, min_run_time):
    capacity = max(1, round(P * length))
    elem = torch.tensor([], dtype=dtype).element_size()
    fwd_bytes = 2 * batch * capacity * width * elem
    bwd_bytes = fwd_bytes + batch * length * width * elem  # the dense gradient is written whole

    def make():
        labels = masked_labels(batch, length, device)
        index = fastmask.masked_positions(labels, capacity).index
        hidden = torch.randn(batch, length, width, device=device, dtype=dtype, requires_grad=True)
        return hidden, labels, index

    sets = harness.rotating(make, batch * length * width * elem, device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    shape = f"{batch}x{length}x{width}"
    rows = []
    flat = lambda index, length: (index + torch.arange(index.shape[0], device=index.device)[:, None] * length).flatten()  # noqa: E731
    contenders = {
        "bool-index": lambda h, labels, index: h[labels != -100],
        "index-select": lambda h, labels, index: h.flatten(0, 1).index_select(0, flat(index, length)),
        "reference": lambda h, labels, index: reference.gather_masked(h, index),
    }
    for b in kernel_backends(device):
        contenders[b] = lambda h, labels, index, b=b: fastmask.gather_masked(h, index, backend=b)
    for name, fn in contenders.items():
        with torch.no_grad():
            timing = harness.time_fn(fn, sets, device, min_run_time)
        rows.append(harness.make_row("gather", shape, dtype, name, timing, fwd_bytes * ms_per_byte, device))

        def fwd_bwd(h, labels, index, fn=fn):
            out = fn(h, labels, index)
            h.grad = None
            out.backward(torch.ones_like(out))

        timing = harness.time_fn(fwd_bwd, sets, device, min_run_time)
        rows.append(harness.make_row("gather_fwd_bwd", shape, dtype, name, timing, bwd_bytes * ms_per_byte, device))
    return rows


BASELINES = ("bool-index", "index-select", "reference")  # the speed-up columns of the table


def collect(device, quick, min_run_time):
    if quick:
        return bench_gather(8, 128, 64, torch.float32, device, min_run_time)
    if device.type == "cpu":
        return [row for dtype in (torch.float32, torch.bfloat16)
                for row in bench_gather(64, 128, 768, dtype, device, min_run_time)]
    # B*C = 19,456 and 19,712 gathered rows: the issue's ~20k
    return [row for batch, length in ((1024, 128), (256, 512)) for width in (768, 1024)
            for dtype in (torch.float32, torch.bfloat16)
            for row in bench_gather(batch, length, width, dtype, device, min_run_time)]


if __name__ == "__main__":
    sys.exit(harness.run("gather", __doc__, collect, BASELINES))
