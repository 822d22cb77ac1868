"""Benchmark of the token-level masking ops: fastmask.maskable_mask and fastmask.mask_tokens
(Bernoulli, and exact count as the row mask_tokens_exact).

Every row is timed against the baselines of harness.BASELINES named in BASELINES below
(`--help` lists them), the reference backend (on GPU also under torch.compile) and fastmask's
kernels. The floor is the op's bytes read + written at the device-to-device copy bandwidth of
this run.

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
from fastmask import baselines  # noqa: E402

BASELINES = harness.baselines("hf-collator", "eager-torch", "eager-isin", "reference")


def eager_isin(ids, attention_mask, special_ids):
    """What one writes in eager PyTorch: attended and not a special id."""
    return attention_mask.bool() & ~torch.isin(ids, special_ids)


def eager_torch_masking(ids, maskable):
    """HF's algorithm on the device with torch's RNG (no Philox): the eager-PyTorch baseline."""
    chosen = maskable & (torch.rand(ids.shape, device=ids.device) < harness.P)
    return harness.eager_replace(ids, chosen)


def bench_shape(batch, length, device, profile):
    inputs = harness.rotating(lambda: harness.make_inputs(batch, length, device), batch * length * (8 + 1), device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    shape = f"{batch}x{length}"

    def time(op, contenders, nbytes, input_sets=inputs):
        return harness.time_contenders(op, shape, torch.int64, contenders, input_sets, nbytes * ms_per_byte, device,
                                       profile)

    specials = harness.special_ids(device)
    attended = [(ids, torch.ones_like(ids)) for ids, _ in inputs]  # int64, as tokenizers return it
    yield from time("maskable_mask", {
        "eager-isin": lambda ids, attention: eager_isin(ids, attention, specials),
        **harness.fastmask_contenders(
            lambda ids, attention, backend: fastmask.maskable_mask(ids, attention, specials, backend=backend), device),
    }, batch * length * (8 + 8 + 1), attended)  # read ids + attention mask, write maskable

    mask_bytes = batch * length * (8 + 1 + 8 + 8)  # read ids + maskable, write ids + labels
    collator = baselines.hf_collator(baselines.in_memory_tokenizer(harness.VOCAB), harness.P)
    yield from time("mask_tokens", {
        "hf-collator": lambda ids, maskable: collator.torch_mask_tokens(ids.clone(), special_tokens_mask=~maskable),
    }, mask_bytes, [(ids.cpu(), maskable.cpu()) for ids, maskable in inputs[:1]])
    yield from time("mask_tokens", {"eager-torch": eager_torch_masking}, mask_bytes)
    for exact, op in ((False, "mask_tokens"), (True, "mask_tokens_exact")):
        def call(ids, maskable, backend, exact=exact):
            return fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=exact,
                                        backend=backend)

        yield from time(op, harness.fastmask_contenders(call, device), mask_bytes)


def collect(device, profile):
    for batch, length in harness.sizes(device, profile):
        yield from bench_shape(batch, length, device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("masking", __doc__, collect, BASELINES))
