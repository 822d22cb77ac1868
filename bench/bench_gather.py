"""Benchmark of sparse masked-token gathering: fastmask.masked_positions, fastmask.gather_masked
and its backward (the scatter_masked op).

Rows: masked_positions (labels -> the labelled positions in capacity slots), gather (forward),
scatter (the gather's backward alone: slot values into a dense zero (B, L, H) gradient) and
gather_fwd_bwd (forward + backward). Each is timed against the baselines named in BASELINES
(`--help` lists them), the reference backend (on GPU also under torch.compile) and fastmask's
kernels, on exact-count masks of fully maskable rows (every slot used). The floor is bytes read
+ written at this run's copy bandwidth.

    python bench/bench_gather.py            # sizes for the current device
    python bench/bench_gather.py --quick    # CPU smoke run
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask.reference import IGNORE_INDEX  # noqa: E402

BASELINES = harness.baselines("bool-index", "index-select", "eager-nonzero", "reference")


def masked_labels(batch, length, device):
    ids = harness.random_ids(batch, length, device)
    maskable = torch.ones_like(ids, dtype=torch.bool)
    return fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=True).labels


def eager_nonzero_positions(labels, capacity):
    """masked_positions as one writes it in eager PyTorch: (index, labels, count) of `capacity` slots."""
    labelled = labels != IGNORE_INDEX
    rows, cols = labelled.nonzero(as_tuple=True)
    slots = labelled.cumsum(1)[rows, cols] - 1
    kept = slots < capacity
    rows, cols, slots = rows[kept], cols[kept], slots[kept]
    index = labels.new_full((labels.shape[0], capacity), -1)
    index[rows, slots] = cols
    slot_labels = torch.full_like(index, IGNORE_INDEX)
    slot_labels[rows, slots] = labels[rows, cols]
    return index, slot_labels, labelled.sum(1)


def flat_positions(index, length):
    """Positions in the (B * L) flattened hidden states."""
    return (index + torch.arange(index.shape[0], device=index.device)[:, None] * length).flatten()


def index_select_gather(hidden, index):
    return hidden.flatten(0, 1).index_select(0, flat_positions(index, hidden.shape[1]))


def bool_index_scatter(values, labels):
    dense = values.new_zeros(*labels.shape, values.shape[2])
    dense[labels != IGNORE_INDEX] = values.flatten(0, 1)
    return dense


def index_add_scatter(values, index, length):
    """index_select's backward: index_add_ into the flattened zero gradient."""
    dense = values.new_zeros(index.shape[0] * length, values.shape[2])
    return dense.index_add_(0, flat_positions(index, length), values.flatten(0, 1)).view(index.shape[0], length, -1)


def bench_positions(batch, length, ms_per_byte, device, profile):
    capacity = fastmask.gather_capacity(length, harness.P)
    sets = harness.rotating(lambda: (masked_labels(batch, length, device),), batch * length * 8, device)
    nbytes = 8 * (batch * length + 2 * batch * capacity + batch)  # read labels, write index, labels and count
    contenders = {
        "eager-nonzero": lambda labels: eager_nonzero_positions(labels, capacity),
        **harness.fastmask_contenders(
            lambda labels, backend: fastmask.masked_positions(labels, capacity, backend=backend), device),
    }
    return harness.time_contenders("masked_positions", f"{batch}x{length}", torch.int64, contenders, sets,
                                   nbytes * ms_per_byte, device, profile)


def bench_gather(batch, length, width, dtype, ms_per_byte, device, profile):
    capacity = fastmask.gather_capacity(length, harness.P)
    elem = torch.tensor([], dtype=dtype).element_size()
    slots_bytes, dense_bytes = batch * capacity * width * elem, batch * length * width * elem
    gather_bytes = 2 * slots_bytes
    scatter_bytes = slots_bytes + dense_bytes  # the dense gradient is written whole

    def make():
        labels = masked_labels(batch, length, device)
        index = fastmask.masked_positions(labels, capacity).index
        hidden = torch.randn(batch, length, width, device=device, dtype=dtype, requires_grad=True)
        return hidden, labels, index, torch.randn(batch, capacity, width, device=device, dtype=dtype)

    sets = harness.rotating(make, dense_bytes, device)
    hidden_sets = [(hidden, labels, index) for hidden, labels, index, _ in sets]
    value_sets = [(values, labels, index) for _, labels, index, values in sets]
    shape = f"{batch}x{length}x{width}"

    def time(op, contenders, input_sets, nbytes):
        return harness.time_contenders(op, shape, dtype, contenders, input_sets, nbytes * ms_per_byte, device,
                                       profile)

    gathers = {
        "bool-index": lambda hidden, labels, index: hidden[labels != IGNORE_INDEX],
        "index-select": lambda hidden, labels, index: index_select_gather(hidden, index),
        **harness.fastmask_contenders(
            lambda hidden, labels, index, backend: fastmask.gather_masked(hidden, index, backend=backend), device),
    }
    scatters = {
        "bool-index": lambda values, labels, index: bool_index_scatter(values, labels),
        "index-select": lambda values, labels, index: index_add_scatter(values, index, length),
        **harness.fastmask_contenders(
            lambda values, labels, index, backend: fastmask.library.call("scatter_masked", backend, values, index, length),
            device),
    }

    def forward_backward(gather):
        def run(hidden, labels, index):
            out = gather(hidden, labels, index)
            hidden.grad = None
            out.backward(torch.ones_like(out))

        if hasattr(gather, "prepare"):  # compiled-ref: its backward compiles at the first call, outside the timing
            run.prepare = lambda *inputs: harness.first_call(run, inputs)
        return run

    with torch.no_grad():
        rows = time("gather", gathers, hidden_sets, gather_bytes) + time("scatter", scatters, value_sets, scatter_bytes)
    return rows + time("gather_fwd_bwd", {name: forward_backward(fn) for name, fn in gathers.items()}, hidden_sets,
                       gather_bytes + scatter_bytes)


def collect(device, profile):
    both = (torch.float32, torch.bfloat16)
    if profile.name == "quick":
        shapes, layouts = [(8, 128)], [(64, torch.float32)]
    elif device.type == "cpu":
        shapes, layouts = [(64, 128)], [(768, dtype) for dtype in both]
    elif profile.name == "gpu":  # BERT-base in fp32 (autocast's LayerNorm output) and bf16, BERT-large in bf16
        shapes, layouts = [(256, 512), (1024, 512)], [(768, torch.float32), (768, torch.bfloat16), (1024, torch.bfloat16)]
    else:  # B*C = 19,456 and 19,712 gathered rows: the issue's ~20k
        shapes, layouts = [(1024, 128), (256, 512)], [(width, dtype) for width in (768, 1024) for dtype in both]
    ms_per_byte = harness.copy_ms_per_byte(device)
    for batch, length in shapes:
        yield from bench_positions(batch, length, ms_per_byte, device, profile)
        for width, dtype in layouts:
            yield from bench_gather(batch, length, width, dtype, ms_per_byte, device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("gather", __doc__, collect, BASELINES))
