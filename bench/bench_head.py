"""Benchmark of the vocabulary head's loss: fastmask.linear_cross_entropy (decoder + cross-entropy
fused, one chunk of logits at a time) against the materialised logits (F.linear, then
F.cross_entropy), forward + backward, on N gathered rows of width H over a vocabulary of V.

Rows: head_fwd_bwd per (N, H, V) and contender, with the time (median) and the memory:
  peak_mib   the head's peak memory above its inputs during one forward + backward. GPU:
             torch.cuda.max_memory_allocated over the call. CPU: in a fresh process, its peak
             resident set (VmHWM, reset just before the call by /proc/self/clear_refs) less its
             resident set before, inputs built (large tensors are mmapped pages, returned on
             free: the resident set follows the allocations).
  saved_mib  what autograd saves for backward (saved-tensor hooks, storages counted once).
Both include the gradients every contender returns (N·H + V·H + V, in the inputs' dtype).
The rows are ~5% ignored (a gather's unused slots). Shapes: V of BERT (30,522), ModernBERT
(50,368) and XLM-R (250,002); N of 4k and 20k slots; H of 256 and 768 (on the CPU, a subset).

    python bench/bench_head.py            # shapes for the current device
    python bench/bench_head.py --quick    # CPU smoke run
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask.reference import IGNORE_INDEX  # noqa: E402

BASELINES = harness.baselines("materialised-logits", "reference")
PROBE = "--memory-probe"  # argv[1] of the child process that measures one contender's CPU memory


def head_inputs(n, width, vocab, dtype, device, seed=0):
    # In place, in the final dtype and device: no temporary raises the high-water mark the CPU probe starts from.
    g = torch.Generator(device).manual_seed(seed)
    hidden = torch.empty(n, width, device=device, dtype=dtype).normal_(generator=g).requires_grad_()
    weight = torch.empty(vocab, width, device=device, dtype=dtype).normal_(0, width**-0.5, generator=g).requires_grad_()
    bias = torch.zeros(vocab, device=device, dtype=dtype).requires_grad_()
    labels = torch.randint(0, vocab, (n,), generator=g, device=device)
    labels[torch.rand(n, generator=g, device=device) < 0.05] = IGNORE_INDEX
    return hidden, weight, bias, labels


def materialised(hidden, weight, bias, labels):
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), labels, ignore_index=IGNORE_INDEX)


def contenders(device) -> dict:
    def fused(backend):
        return lambda h, w, b, labels: fastmask.linear_cross_entropy(h, w, labels, bias=b, backend=backend)

    return {"materialised-logits": materialised, "reference": fused("reference"),
            **{b: fused(b) for b in harness.kernel_backends(device)}}


def forward_backward(loss_fn):
    def run(hidden, weight, bias, labels):
        for t in (hidden, weight, bias):
            t.grad = None
        loss_fn(hidden, weight, bias, labels).backward()

    return run


def saved_bytes(loss_fn, inputs) -> int:
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn(*inputs)
    loss.backward()
    return sum(storages.values())


def memory_probe(name, n, width, vocab, dtype_name) -> dict:
    """In a fresh process: one contender's peak RSS growth over one forward + backward, and its saved bytes."""
    device = torch.device("cpu")
    dtype = getattr(torch, dtype_name)
    loss_fn = contenders(device)[name]
    forward_backward(loss_fn)(*head_inputs(8, width, 64, dtype, device))  # warm-up: libraries, thread pools
    inputs = head_inputs(n, width, vocab, dtype, device)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak resident set (VmHWM) to the current one (Linux >= 4.0)
    before = _status_kib("VmRSS")
    forward_backward(loss_fn)(*inputs)
    peak = _status_kib("VmHWM")
    saved = saved_bytes(loss_fn, inputs)
    return {"peak_mib": (peak - before) / 1024, "saved_mib": saved / 2**20}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def memory(name, loss_fn, inputs, dtype, device) -> dict:
    n, width = inputs[0].shape
    vocab = inputs[1].shape[0]
    if device.type == "cpu":
        out = subprocess.run([sys.executable, os.path.abspath(__file__), PROBE, name, str(n), str(width), str(vocab),
                              str(dtype).replace("torch.", "")], capture_output=True, text=True, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        saved = saved_bytes(loss_fn, inputs)
        for t in inputs[:3]:
            t.grad = None
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        forward_backward(loss_fn)(*inputs)
        torch.cuda.synchronize(device)
        figures = {"peak_mib": (torch.cuda.max_memory_allocated(device) - start) / 2**20, "saved_mib": saved / 2**20}
    return {k: round(v, 1) for k, v in figures.items()}


def bench_head(n, width, vocab, dtype, device, profile, with_reference):
    inputs = head_inputs(n, width, vocab, dtype, device)
    chosen = {k: v for k, v in contenders(device).items() if with_reference or k != "reference"}
    rows = []
    for name, loss_fn in chosen.items():
        harness.check_budget(f"head_fwd_bwd {n}x{width}x{vocab} {name}")
        figures = memory(name, loss_fn, inputs, dtype, device)
        rows += [replace(row, metrics={**row.metrics, **figures}) for row in harness.time_contenders(
            "head_fwd_bwd", f"{n}x{width}x{vocab}", dtype, {name: forward_backward(loss_fn)}, [inputs], None, device,
            profile)]
    return rows


def collect(device, profile):
    if profile.name == "quick":
        shapes, dtype = [(256, 64, 30522)], torch.float32
    elif device.type == "cpu":  # what 2 cores and 24 GB hold: the materialised path needs 3 N x V float32 tensors
        shapes, dtype = [(4096, 256, 30522), (4096, 256, 50368), (4096, 256, 250002)], torch.float32
    elif profile.name == "gpu":  # the GPU kit's minutes: BERT-base's width at ~20k slots, per vocabulary
        shapes, dtype = [(20480, 768, vocab) for vocab in (30522, 50368, 250002)], torch.bfloat16
    else:
        shapes = [(n, width, vocab) for vocab in (30522, 50368, 250002) for n in (4096, 20480) for width in (256, 768)]
        dtype = torch.bfloat16
    for n, width, vocab in shapes:
        yield from bench_head(n, width, vocab, dtype, device, profile, with_reference=vocab == 30522 and n == 4096)


if __name__ == "__main__":
    if sys.argv[1:2] == [PROBE]:
        name, n, width, vocab, dtype_name = sys.argv[2:]
        print(json.dumps(memory_probe(name, int(n), int(width), int(vocab), dtype_name)))
        sys.exit(0)
    sys.exit(harness.run("head", __doc__, collect, BASELINES))
