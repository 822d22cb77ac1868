"""Benchmark of the masking ops (random/exact-count and fully-explored) against their baselines.

Contenders, all in one run:
  hf-collator    Hugging Face DataCollatorForLanguageModeling.torch_mask_tokens (CPU tensors,
                 given its special-tokens mask): what most trainers run today
  eager-torch    the same masking written in eager PyTorch with torch's own RNG, on the device
  reference      fastmask.reference (the same algorithm and Philox stream, in eager PyTorch)
  compiled-ref   the reference under torch.compile (GPU only: inductor on CPU is not the point)
  cpu/cuda/triton  fastmask's kernels
The floor is the op's bytes read + written at the device-to-device copy bandwidth of this run.

    python bench/bench_masking.py                 # sizes for the current device
    python bench/bench_masking.py --quick         # CPU smoke run, seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask import backends, baselines, reference  # noqa: E402
from fastmask.ops import probability_threshold  # noqa: E402

VOCAB, P = 30522, 0.15


def eager_torch_masking(ids, maskable, mask_id, p=P):
    """HF's algorithm on the device with torch's RNG (no Philox): the eager-PyTorch baseline."""
    chosen = maskable & (torch.rand(ids.shape, device=ids.device) < p)
    action = torch.rand(ids.shape, device=ids.device)
    random_ids = torch.randint(VOCAB, ids.shape, device=ids.device, dtype=ids.dtype)
    out = torch.where(action < 0.8, mask_id, torch.where(action < 0.9, random_ids, ids))
    return torch.where(chosen, out, ids), torch.where(chosen, ids, -100)


def bench_shape(batch, length, device, num_segments, with_compile, min_run_time):
    tokenizer = baselines.in_memory_tokenizer(VOCAB)
    mask_id = tokenizer.mask_token_id
    specials = [tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id]

    def make_inputs():
        ids = torch.randint(len(baselines.SPECIAL_TOKENS), VOCAB, (batch, length), device=device)
        ids[:, 0], ids[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
        return ids, fastmask.maskable_mask(ids, special_ids=specials)

    id_bytes = batch * length * 8
    mask_bytes = id_bytes + batch * length + 2 * id_bytes  # read ids + maskable, write ids + labels
    fe_bytes = id_bytes + batch * length + num_segments * 2 * id_bytes
    inputs = harness.rotating(make_inputs, mask_bytes, device)
    ms_per_byte = harness.copy_ms_per_byte(device)
    shape = f"{batch}x{length}"
    rows = []
    thresholds = (probability_threshold("p", P), probability_threshold("p", 0.8), probability_threshold("p", 0.1))

    def add(op, backend, fn, nbytes, sets=inputs):
        timing = harness.time_fn(fn, sets, device, min_run_time)
        rows.append(harness.make_row(op, shape, torch.int64, backend, timing, nbytes * ms_per_byte, device))

    # Bernoulli masking (Hugging Face semantics) and its baselines.
    collator = baselines.hf_collator(tokenizer)
    cpu_inputs = [(ids.cpu(), m.cpu()) for ids, m in inputs[:1]]
    add("mask_tokens", "hf-collator", lambda ids, m: collator.torch_mask_tokens(ids.clone(), special_tokens_mask=~m),
        mask_bytes, cpu_inputs)
    add("mask_tokens", "eager-torch", lambda ids, m: eager_torch_masking(ids, m, mask_id), mask_bytes)
    rows_ids = torch.arange(batch, device=device)

    def ref(ids, m, exact=False):
        return reference.mask_tokens(ids, m, rows_ids, 0, 0, *thresholds, mask_id, VOCAB, exact)

    add("mask_tokens", "reference", ref, mask_bytes)
    if with_compile:
        add("mask_tokens", "compiled-ref", torch.compile(ref), mask_bytes)
    # Triton on CPU tensors is the interpreter: a correctness tool, not a contender.
    candidates = ("cpu",) if device.type == "cpu" else ("cuda", "triton")
    kernels = [b for b in candidates if backends.why_unavailable(b, device.type) is None]
    for b in kernels:
        add("mask_tokens", b, lambda ids, m, b=b: fastmask.mask_tokens(ids, m, mask_id, VOCAB, P, backend=b), mask_bytes)

    # Exact count (BERT's original scripts): same bytes, a per-row selection on top.
    add("mask_tokens_exact", "reference", lambda ids, m: ref(ids, m, True), mask_bytes)
    for b in kernels:
        add("mask_tokens_exact", b,
            lambda ids, m, b=b: fastmask.mask_tokens(ids, m, mask_id, VOCAB, P, exact_count=True, backend=b), mask_bytes)

    # Fully explored, K views.
    fe_op = f"fully_explored_k{num_segments}"
    add(fe_op, "reference", lambda ids, m: reference.fully_explored_mask(
        ids, m, rows_ids, 0, 0, num_segments, False, *thresholds[1:], mask_id, VOCAB), fe_bytes)
    for b in kernels:
        add(fe_op, b, lambda ids, m, b=b: fastmask.fully_explored_mask(
            ids, m, mask_id, VOCAB, num_segments, backend=b), fe_bytes)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="one small shape, short timings (CPU smoke run)")
    parser.add_argument("--sizes", default=None, help="comma-separated BxL, e.g. 32x128,256x512")
    parser.add_argument("--segments", type=int, default=7)
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to bench/results/")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.sizes:
        sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    elif args.quick:
        sizes = [(32, 128)]
    elif device.type == "cuda":
        sizes = [(32, 128), (256, 128), (256, 512), (1024, 512), (64, 8192)]
    else:
        sizes = [(32, 128), (256, 512)]
    min_run_time = 0.05 if args.quick else 0.5
    rows = []
    for batch, length in sizes:
        rows += bench_shape(batch, length, device, args.segments, device.type == "cuda" and not args.quick, min_run_time)
    harness.print_table(rows, baselines=("hf-collator", "eager-torch", "reference"))
    if not args.no_save:
        print("\nappended to", harness.save(rows, "masking", device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
