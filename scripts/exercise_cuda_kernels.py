"""Runs every CUDA (or Triton) kernel of fastmask once per launch shape on small odd inputs and
checks it against the reference: the target of compute-sanitizer (memcheck, racecheck, ...) on a
GPU machine (scripts/gpu/07_sanitizer.sh).

CASES maps every op of fastmask.library.OPS to a function (length, device, generator) -> the
op-level argument tuples that exercise it on rows of that length; importing this runs nothing.

    compute-sanitizer --tool memcheck python3 scripts/exercise_cuda_kernels.py
    compute-sanitizer --tool memcheck python3 scripts/exercise_cuda_kernels.py --backend triton --lengths 37 8192
"""

from __future__ import annotations

import argparse

import torch

import fastmask
from fastmask import library
from fastmask.counts import count_fraction, probability_threshold, replacement_thresholds
from fastmask.data import SPECIAL_TOKENS

P, VOCAB, WIDTH, SEED, EPOCH = 0.15, 1000, 24, 1, 2
MASK_ID = SPECIAL_TOKENS.index("[MASK]")
SELECT_THRESHOLD = probability_threshold("mlm_probability", P)
COUNT_FRACTION = count_fraction(P)
REPLACE_THRESHOLDS = replacement_thresholds(0.8, 0.1)
ROW_IDS = (0, -5, 2**40)  # one row per id: Philox keys beyond 32 bits, and negative ones
DTYPES = (torch.float32, torch.bfloat16)
# Lengths that hit every block shape of the ranked kernels (<=256, 512, 1024, 2048, 4096, 8192)
# and the long-row kernels (> 8192: Poisson sampling, Bernoulli and contiguous masking).
LENGTHS = (1, 37, 300, 700, 1500, 3000, 6000, 8192, 9001)
BACKEND = "cuda"  # the backend exercised (set by --backend): Triton ranks rows of any length


def ranked_fits(length):
    """Whether the kernels exercised rank rows this long (exact count, random partition, top-k, systematic)."""
    limit = fastmask.backends.availability().cuda_max_ranked_length
    return BACKEND != "cuda" or limit is None or length <= limit


def tokens(length, device, generator):
    """(ids, maskable, row_ids): word ids, about 85% of them maskable."""
    shape = (len(ROW_IDS), length)
    ids = torch.randint(len(SPECIAL_TOKENS), VOCAB, shape, generator=generator).to(device)
    maskable = (torch.rand(shape, generator=generator) < 0.85).to(device)
    return ids, maskable, torch.tensor(ROW_IDS, device=device)


def stream(device):
    """(seed, epoch): the seed on the device (read by the kernel), the epoch on the CPU (by value)."""
    return torch.tensor(SEED, device=device), torch.tensor(EPOCH)


def maskable_mask_args(length, device, generator):
    ids, maskable, _ = tokens(length, device, generator)
    return [(ids, maskable.long(), torch.tensor([7, 9], device=device))]


def mask_tokens_args(length, device, generator):
    ids, maskable, row_ids = tokens(length, device, generator)
    return [(ids, maskable, row_ids, *stream(device), SELECT_THRESHOLD, *COUNT_FRACTION, *REPLACE_THRESHOLDS, MASK_ID,
             VOCAB, exact) for exact in (False, True) if not exact or ranked_fits(length)]


def fully_explored_mask_args(length, device, generator):
    ids, maskable, row_ids = tokens(length, device, generator)
    return [(ids, maskable, row_ids, *stream(device), 7, contiguous, *REPLACE_THRESHOLDS, MASK_ID, VOCAB)
            for contiguous in (False, True) if contiguous or ranked_fits(length)]


def proposal_mask_args(length, device, generator):
    ids, maskable, row_ids = tokens(length, device, generator)
    scores = torch.randn(ids.shape, generator=generator).to(device)
    return [(ids, scores, maskable, row_ids, *stream(device), *COUNT_FRACTION, 0.1, 1.0, sampling, sequence_weights,
             *REPLACE_THRESHOLDS, MASK_ID, VOCAB)
            for sampling in (0, 1, 2) if sampling == 1 or ranked_fits(length)  # 1: Poisson, any length
            for sequence_weights in (False, True)]


def masked_positions_args(length, device, generator):
    """The labels of an exact-count mask (the reference's) and the capacity that holds them."""
    ids, maskable, row_ids = tokens(length, device, generator)
    labels = fastmask.mask_tokens(ids, maskable, MASK_ID, VOCAB, P, exact_count=True, row_ids=row_ids,
                                  backend="reference").labels
    return [(labels, fastmask.gather_capacity(length, P))]


def slot_index(length, device, generator):
    ((labels, capacity),) = masked_positions_args(length, device, generator)
    return fastmask.masked_positions(labels, capacity, backend="reference").index


def gather_masked_args(length, device, generator):
    index = slot_index(length, device, generator)
    return [(torch.randn(len(ROW_IDS), length, WIDTH, generator=generator).to(device, dtype), index)
            for dtype in DTYPES]


def scatter_masked_args(length, device, generator):
    index = slot_index(length, device, generator)
    return [(torch.randn(*index.shape, WIDTH, generator=generator).to(device, dtype), index, length)
            for dtype in DTYPES]


CASES = {
    "maskable_mask": maskable_mask_args,
    "mask_tokens": mask_tokens_args,
    "fully_explored_mask": fully_explored_mask_args,
    "masked_positions": masked_positions_args,
    "gather_masked": gather_masked_args,
    "scatter_masked": scatter_masked_args,
    "proposal_mask": proposal_mask_args,
}


def matches_reference(name, args, backend):
    """Whether `backend`'s kernel of op `name` gives the reference's outputs on args: bit-exact, except
    proposal sampling's float weights (rtol 1e-5)."""
    got, want = library.op(name, backend)(*args), library.op(name, "reference")(*args)
    return all(
        torch.allclose(a, b, rtol=1e-5) if name == "proposal_mask" and a.is_floating_point() else torch.equal(a, b)
        for a, b in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,))
    )


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
        for name, build in CASES.items():
            for op_args in build(length, device, generator):
                assert matches_reference(name, op_args, BACKEND), f"{name} ({BACKEND}) differs from the reference at length {length}"
        print(f"length {length}: every op's {BACKEND} kernels matched the reference", flush=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    print(f"all {BACKEND} kernels ran and matched the reference")


if __name__ == "__main__":
    main()
