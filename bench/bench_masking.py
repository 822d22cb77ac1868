"""Benchmark of standard MLM masking (fastmask.mask_tokens, Bernoulli and exact count).

Contenders, all in one run:
  hf-collator    Hugging Face DataCollatorForLanguageModeling.torch_mask_tokens (CPU tensors,
                 given its special-tokens mask): what most trainers run today
  eager-torch    the same masking written in eager PyTorch with torch's own RNG, on the device
  reference      fastmask.reference (the same algorithm and Philox stream, in eager PyTorch)
  compiled-ref   the reference under torch.compile (GPU only: inductor on CPU is not the point)
  cpu/cuda/triton  fastmask's kernels
The floor is the op's bytes read + written at the device-to-device copy bandwidth of this run.

    python bench/bench_masking.py            # sizes for the current device
    python bench/bench_masking.py --quick    # CPU smoke run, seconds
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask import baselines, reference  # noqa: E402
from fastmask.ops import probability_threshold  # noqa: E402

VOCAB, P = 30522, 0.15
THRESHOLDS = (probability_threshold("p", P), probability_threshold("p", 0.8), probability_threshold("p", 0.1))


def sizes(device, quick):
    if quick:
        return [(32, 128)]
    if device.type == "cuda":
        return [(32, 128), (256, 128), (256, 512), (1024, 512), (64, 8192)]
    return [(32, 128), (256, 512)]


def make_inputs(batch, length, device):
    """Random ids framed by [CLS] ... [SEP], and their maskable mask (ids of baselines' tokenizer)."""
    ids = torch.randint(len(baselines.SPECIAL_TOKENS), VOCAB, (batch, length), device=device)
    ids[:, 0], ids[:, -1] = 2, 3  # [CLS], [SEP]
    return ids, fastmask.maskable_mask(ids, special_ids=[2, 3])


def eager_torch_masking(ids, maskable, mask_id, p=P):
    """HF's algorithm on the device with torch's RNG (no Philox): the eager-PyTorch baseline."""
    chosen = maskable & (torch.rand(ids.shape, device=ids.device) < p)
    action = torch.rand(ids.shape, device=ids.device)
    random_ids = torch.randint(VOCAB, ids.shape, device=ids.device, dtype=ids.dtype)
    out = torch.where(action < 0.8, mask_id, torch.where(action < 0.9, random_ids, ids))
    return torch.where(chosen, out, ids), torch.where(chosen, ids, -100)


def kernel_backends(device):
    """fastmask's kernels that can run here; Triton on CPU is the interpreter, not a contender."""
    candidates = ("cpu",) if device.type == "cpu" else ("cuda", "triton")
    return [b for b in candidates if fastmask.backends.why_unavailable(b, device.type) is None]


def bench_shape(batch, length, device, min_run_time):
    mask_bytes = batch * length * (8 + 1 + 8 + 8)  # read ids + maskable, write ids + labels
    inputs = harness.rotating(lambda: make_inputs(batch, length, device), mask_bytes, device)
    floor_ms = mask_bytes * harness.copy_ms_per_byte(device)
    shape, rows = f"{batch}x{length}", []
    rows_ids = torch.arange(batch, device=device)

    def add(op, backend, fn, sets=inputs):
        timing = harness.time_fn(fn, sets, device, min_run_time)
        rows.append(harness.make_row(op, shape, torch.int64, backend, timing, floor_ms, device))

    collator = baselines.hf_collator(baselines.in_memory_tokenizer(VOCAB))
    add("mask_tokens", "hf-collator", lambda ids, m: collator.torch_mask_tokens(ids.clone(), special_tokens_mask=~m),
        [(ids.cpu(), m.cpu()) for ids, m in inputs[:1]])
    add("mask_tokens", "eager-torch", lambda ids, m: eager_torch_masking(ids, m, 4))
    for exact, op in ((False, "mask_tokens"), (True, "mask_tokens_exact")):
        def ref(ids, m, exact=exact):
            return reference.mask_tokens(ids, m, rows_ids, 0, 0, *THRESHOLDS, 4, VOCAB, exact)

        add(op, "reference", ref)
        if device.type == "cuda":
            add(op, "compiled-ref", torch.compile(ref))
        for b in kernel_backends(device):
            add(op, b, lambda ids, m, b=b, exact=exact: fastmask.mask_tokens(ids, m, 4, VOCAB, P, exact_count=exact,
                                                                            backend=b))
    return rows


BASELINES = ("hf-collator", "eager-torch", "reference")  # the speed-up columns of the table


def collect(device, quick, min_run_time):
    return [row for batch, length in sizes(device, quick) for row in bench_shape(batch, length, device, min_run_time)]


if __name__ == "__main__":
    sys.exit(harness.run("masking", __doc__, collect, BASELINES))
