"""Benchmark of MAPNet proposal sampling (fastmask.proposal_mask) against its baselines.

Contenders, all in one run:
  eager-multinomial  eager PyTorch: softmax + mixing, torch.multinomial(q, k, replacement=False),
                     importance weights and 80/10/10 (torch's RNG)
  reference          fastmask.reference.proposal_mask (the same algorithm, eager PyTorch)
  compiled-ref       the reference under torch.compile (GPU only)
  cpu/cuda/triton    fastmask's fused kernels
The floor: bytes read (ids, scores, maskable) + written (ids, labels, weights) at this run's
copy bandwidth. Also the cost of a MaskProposalNet forward + backward at 1/4 of the model width.

    python bench/bench_proposal.py            # sizes for the current device
    python bench/bench_proposal.py --quick    # CPU smoke run
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


def bench_shape(batch, length, device, with_compile, min_run_time):
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
    if with_compile:
        contenders["compiled-ref"] = torch.compile(ref)
    for b in ("cpu",) if device.type == "cpu" else ("cuda", "triton"):
        if backends.why_unavailable(b, device.type) is None:
            contenders[b] = lambda ids, s, m, b=b: fastmask.proposal_mask(ids, s, m, 4, VOCAB, P, EPS, backend=b)
    for name, fn in contenders.items():
        timing = harness.time_fn(fn, sets, device, min_run_time)
        rows.append(harness.make_row("proposal_topk", shape, torch.float32, name, timing, nbytes * ms_per_byte, device))
    return rows


def bench_mapnet_cost(preset, batch, length, device, min_run_time):
    """A MaskProposalNet at 1/4 of the model's width (forward, sampling, objective, backward)
    next to the model's own training step (sparse head) measured in the same run."""
    import bench_gather

    width = bench_gather.PRESETS[preset][0]
    embedding = torch.nn.Embedding(VOCAB, width).to(device)
    net = fastmask.MaskProposalNet(embedding, num_layers=2, hidden_size=width // 4, num_heads=2,
                                   max_len=length).to(device)
    ids = torch.randint(5, VOCAB, (batch, length), device=device)
    maskable = torch.ones_like(ids, dtype=torch.bool)

    def step():
        scores = net(ids)
        out = fastmask.proposal_mask(ids, scores.detach(), maskable, 4, VOCAB, P)
        fastmask.mapnet_loss(scores, out.labels, out.weights, maskable).backward()

    timing = harness.time_fn(step, [()], device, min_run_time)
    rows = [harness.make_row(f"bert_step_{preset}", f"{batch}x{length}", torch.float32, "mapnet-w/4", timing, None, device)]
    model_rows = bench_gather.bench_step(preset, batch, length, device, min_run_time, heads=("sparse-head",))
    print(f"MAPNet (width {width // 4}) adds {timing[0] / model_rows[0].median_ms:.1%} to a {preset} step "
          f"({timing[0]:.2f} ms on {model_rows[0].median_ms:.2f} ms)")
    return rows + model_rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="one small shape, short timings (CPU smoke run)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to bench/results/")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    min_run_time = 0.05 if args.quick else 0.5
    if args.quick:
        sizes, mapnet = [(16, 128)], ("tiny", 4, 64)
    elif device.type == "cuda":
        sizes, mapnet = [(32, 128), (256, 128), (256, 512), (1024, 512)], ("base", 64, 128)
    else:
        sizes, mapnet = [(32, 128), (256, 512)], ("tiny", 16, 128)
    rows = []
    for batch, length in sizes:
        rows += bench_shape(batch, length, device, device.type == "cuda" and not args.quick, min_run_time)
    rows += bench_mapnet_cost(*mapnet, device, min_run_time)
    harness.print_table(rows, baselines=("eager-multinomial", "reference", "sparse-head"))
    if not args.no_save:
        print("\nappended to", harness.save(rows, "proposal", device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
