"""Runs every CUDA kernel of fastmask once per launch shape on small odd inputs and checks it
against the reference: the target of compute-sanitizer (memcheck, racecheck) on a GPU machine.

    compute-sanitizer --tool memcheck python3 scripts/exercise_cuda_kernels.py
"""

import torch

import fastmask
from fastmask import reference

assert torch.cuda.is_available(), "needs a CUDA device"
g = torch.Generator().manual_seed(0)
dev = torch.device("cuda")
ops = torch.ops.fastmask
# Lengths that hit every block shape of the ranked kernels (<=256, 512, 1024, 2048, 4096, 8192)
# and the long-row Poisson kernel (> 8192).
for length in (1, 37, 300, 700, 1500, 3000, 6000, 8192, 9001):
    batch = 3
    ids = torch.randint(5, 1000, (batch, length), generator=g).to(dev)
    maskable = (torch.rand(batch, length, generator=g) < 0.85).to(dev)
    rows = torch.tensor([0, -5, 2**40], device=dev)
    scores = torch.randn(batch, length, generator=g).to(dev)
    checks = [("maskable_mask", (ids, maskable.long(), torch.tensor([7, 9], device=dev)))]
    if length <= 8192:
        checks += [("mask_tokens", (ids, maskable, rows, 1, 2, 2516582, 13421773, 1677722, 4, 1000, exact))
                   for exact in (False, True)]
        checks += [("fully_explored_mask", (ids, maskable, rows, 1, 2, 7, contiguous, 13421773, 1677722, 4, 1000))
                    for contiguous in (False, True)]
    for poisson in ((False, True) if length <= 8192 else (True,)):
        checks += [("proposal_mask", (ids, scores, maskable, rows, 1, 2, 2516582, 0.1, 1.0, poisson, sequence,
                                      13421773, 1677722, 4, 1000)) for sequence in (False, True)]
    labels = fastmask.mask_tokens(ids, maskable, 4, 1000, 0.15, exact_count=True).labels
    capacity = max(1, round(0.15 * length))
    checks.append(("masked_positions", (labels, capacity)))
    index = reference.masked_positions(labels, capacity)[0]
    for dtype in (torch.float32, torch.bfloat16):
        hidden = torch.randn(batch, length, 24, generator=g).to(dev, dtype)
        checks.append(("gather_masked", (hidden, index)))
        checks.append(("scatter_masked", (torch.randn(batch, capacity, 24, device=dev, dtype=dtype), index, length)))
    for name, args in checks:
        got = getattr(ops, name)(*args)
        want = getattr(reference, name)(*args)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            ok = torch.equal(a, b) if not a.is_floating_point() or name != "proposal_mask" else torch.allclose(a, b, rtol=1e-5)
            assert ok, f"{name} differs from the reference at length {length}"
torch.cuda.synchronize()
print("all CUDA kernels ran and matched the reference")
