"""Runs every CUDA (or Triton) kernel of fastmask once per launch shape on small odd inputs and
checks it against the reference: the target of compute-sanitizer (memcheck, racecheck, ...) on a
GPU machine (scripts/gpu/07_sanitizer.sh).

Every op of fastmask.library.OPS brings its cases (OpSpec.sanitizer_cases: the op-level argument
tuples that exercise it on rows of a length); importing this runs nothing.

    compute-sanitizer --tool memcheck python3 scripts/exercise_cuda_kernels.py
    compute-sanitizer --tool memcheck python3 scripts/exercise_cuda_kernels.py --backend triton --lengths 37 8192
"""

from __future__ import annotations

import argparse

import torch

import fastmask
from fastmask import library

# Lengths that hit every block shape of the ranked kernels (<=256, 512, 1024, 2048, 4096, 8192)
# and the long-row kernels (> 8192: Poisson sampling, Bernoulli and contiguous masking).
LENGTHS = (1, 37, 300, 700, 1500, 3000, 6000, 8192, 9001)
BACKEND = "cuda"  # the backend exercised (set by --backend): Triton ranks rows of any length


def ranked_fits(length):
    """Whether the kernels exercised rank rows this long (exact count, random partition, top-k, systematic)."""
    limit = fastmask.backends.availability().cuda_max_ranked_length
    return BACKEND != "cuda" or limit is None or length <= limit


def matches_reference(name, args, backend):
    """Whether `backend`'s kernel of op `name` gives the reference's outputs on args: bit-exact, except
    float outputs of an op with a float tolerance (its OpSpec's float_rtol, relative to the output's
    largest magnitude: proposal sampling's weights, the head's losses and gradients), NaN where the
    reference has NaN."""
    rtol = library.OPS[name].float_rtol
    got, want = library.op(name, backend)(*args), library.op(name, "reference")(*args)
    return all(
        close(a, b, rtol) if rtol and a.is_floating_point() else torch.equal(a, b)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,))
    )


def close(a, b, rtol):
    if a.shape != b.shape or a.dtype != b.dtype or not torch.equal(a.isnan(), b.isnan()):
        return False
    a, b = a.double().nan_to_num(), b.double().nan_to_num()
    return a.numel() == 0 or bool((a - b).abs().max() <= rtol * b.abs().max())


def main(argv=None):
    global BACKEND
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=("cuda", "triton"), default="cuda", help="the kernels to run")
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS, help="row lengths (default: %(default)s)")
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run of --backend triton under TRITON_INTERPRET=1")
    args = parser.parse_args(argv)
    BACKEND, device = args.backend, torch.device(args.device)
    assert device.type == "cpu" or torch.cuda.is_available(), "needs a CUDA device"
    unavailable = fastmask.backends.why_unavailable(BACKEND, device.type)  # also loads the kernels
    assert unavailable is None, unavailable
    generator = torch.Generator().manual_seed(0)
    for length in args.lengths:
        for name, spec in library.OPS.items():
            for op_args in spec.sanitizer_cases(length, device, generator, ranked_fits(length)):
                assert matches_reference(name, op_args, BACKEND), f"{name} ({BACKEND}) differs from the reference at length {length}"
        print(f"length {length}: every op's {BACKEND} kernels matched the reference", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"all {BACKEND} kernels ran and matched the reference")


if __name__ == "__main__":
    main()
