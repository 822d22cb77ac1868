"""Benchmark of sparse masked-token gathering, and of a BERT step with the sparse MLM head.

Gather contenders, in one run:
  bool-index     hidden[labels != -100]: what most trainers do (dynamic shape, a host sync on GPU)
  index-select   hidden.flatten(0, 1).index_select(0, flat positions): static, but needs the positions
  reference      fastmask.reference.gather_masked (torch.gather)
  cpu/cuda/triton  fastmask.gather_masked
timed forward, and forward + backward (the backward writes the dense (B, L, H) gradient). The floor
is bytes read + written at this run's copy bandwidth.

Step: one forward + backward of BertForMaskedLM with its dense head against the same encoder with
fastmask's sparse head on the same masks (peak memory too, on GPU).

    python bench/bench_gather.py            # sizes for the current device
    python bench/bench_gather.py --quick    # CPU smoke run
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask import backends, reference  # noqa: E402

P = 0.15
PRESETS = {"tiny": (128, 2, 2, 512), "base": (768, 12, 12, 3072)}  # width, layers, heads, ffn


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
    kernels = ("cpu",) if device.type == "cpu" else ("cuda", "triton")
    for b in kernels:
        if backends.why_unavailable(b, device.type) is None:
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


def bench_step(preset, batch, length, device, min_run_time, heads=("dense-head", "sparse-head")):
    """BertForMaskedLM dense head vs the sparse head on the same masks: time and peak memory."""
    from transformers import BertConfig, BertForMaskedLM

    hidden, layers, num_heads, ffn = PRESETS[preset]
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=num_heads,
                        intermediate_size=ffn, max_position_embeddings=max(512, length))
    model = BertForMaskedLM(config).to(device)
    ids = torch.randint(5, 30522, (batch, length), device=device)
    out = fastmask.mask_tokens(ids, torch.ones_like(ids, dtype=torch.bool), 4, 30522, P, exact_count=True)
    capacity = max(1, round(P * length))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def dense():
        with autocast:
            loss = model(input_ids=out.input_ids, labels=out.labels).loss
        loss.backward()

    def sparse():
        with autocast:
            h = model.bert(input_ids=out.input_ids)[0]
            loss = fastmask.sparse_mlm_loss(h, out.labels, model.cls, capacity=capacity)
        loss.backward()

    rows, peaks = [], {}
    for name, fn in (("dense-head", dense), ("sparse-head", sparse)):
        if name not in heads:
            continue
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timing = harness.time_fn(fn, [()], device, min_run_time)
        rows.append(harness.make_row(f"bert_step_{preset}", f"{batch}x{length}", "bf16" if device.type == "cuda" else "fp32",
                                     name, timing, None, device))
        if device.type == "cuda":
            peaks[name] = torch.cuda.max_memory_allocated(device) / 2**20
        model.zero_grad(set_to_none=True)
    for name, mib in peaks.items():
        print(f"peak memory {name}: {mib:.0f} MiB")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes, short timings (CPU smoke run)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to bench/results/")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    min_run_time = 0.05 if args.quick else 0.5
    rows = []
    if args.quick:
        rows += bench_gather(8, 128, 64, torch.float32, device, min_run_time)
        rows += bench_step("tiny", 4, 64, device, min_run_time)
    elif device.type == "cuda":
        for width in (768, 1024):
            for dtype in (torch.float32, torch.bfloat16):
                rows += bench_gather(1024, 128, width, dtype, device, min_run_time)  # B*C = 19,456 rows
        rows += bench_step("base", 64, 128, device, min_run_time)
        rows += bench_step("base", 16, 512, device, min_run_time)
    else:
        rows += bench_gather(64, 128, 768, torch.float32, device, min_run_time)
        rows += bench_step("tiny", 32, 128, device, min_run_time)
    harness.print_table(rows, baselines=("bool-index", "index-select", "dense-head"))
    if not args.no_save:
        print("\nappended to", harness.save(rows, "gather", device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
