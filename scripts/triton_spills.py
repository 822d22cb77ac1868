"""Compiles every configuration of the Triton ranking kernels that the wrappers launch for rows of
1 to 16384 tokens for sm_90, without a GPU, and reports registers and spills from ptxas.

    python scripts/triton_spills.py [--max-length 16384]

The configurations are those the host functions launch: they run on CPU tensors with kernel launches
recorded instead of run, then each distinct (kernel, constexprs, argument types, options) is
compiled ahead of time for GPUTarget("cuda", 90, 32) with ptxas -v. Inputs are int64 ids, float32
scores and seed/epoch tensors on the inputs' device. Exits 1 if any configuration spills.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time

os.environ.pop("TRITON_INTERPRET", None)  # launches must reach JITFunction.run to be recorded

import torch  # noqa: E402
import triton  # noqa: E402
from triton import knobs  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

from fastmask.triton import masking, proposal  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
POINTER_TYPES = {torch.int64: "*i64", torch.int32: "*i32", torch.uint8: "*u8", torch.float32: "*fp32"}
LAUNCH_OPTIONS = ("num_warps", "num_stages", "enable_fp_fusion")


def recorded_launches(max_length: int) -> dict:
    """{key: (kernel, signature, constexprs, options)} of every distinct launch up to max_length."""
    launches = {}

    def record(kernel, *args, grid, warmup, **kwargs):
        values = dict(zip(kernel.arg_names, args)) | {k: v for k, v in kwargs.items() if k in kernel.arg_names}
        options = {k: v for k, v in kwargs.items() if k in LAUNCH_OPTIONS}
        constexprs = {p.name: values[p.name] for p in kernel.params if p.is_constexpr or values[p.name] is None}
        signature = {
            name: "constexpr" if name in constexprs
            else POINTER_TYPES[v.dtype] if isinstance(v, torch.Tensor)
            else "fp32" if isinstance(v, float)
            else "i32" if -(2**31) <= v < 2**31 else "i64"
            for name, v in values.items()
        }
        key = (kernel.__name__, tuple(sorted(constexprs.items())), tuple(signature.values()), tuple(sorted(options.items())))
        launches[key] = (kernel, signature, constexprs, options)

    lengths = sorted({min(2**i, max_length) for i in range(max_length.bit_length())} | {max_length})
    seed, epoch = torch.tensor(1), torch.tensor(2)
    original = JITFunction.run
    JITFunction.run = record
    try:
        for length in lengths:
            ids = torch.zeros((1, length), dtype=torch.int64)
            maskable = torch.ones((1, length), dtype=torch.bool)
            scores = torch.zeros((1, length))
            rows = torch.zeros(1, dtype=torch.int64)
            for exact in (False, True):
                masking.mask_tokens(ids, maskable, rows, seed, epoch, 1, 3, 20, 1, 1, 4, 1000, exact)
            for contiguous in (False, True):
                masking.fully_explored_mask(ids, maskable, rows, seed, epoch, 7, contiguous, 1, 1, 4, 1000)
            for poisson in (False, True):
                for sequence in (False, True):
                    proposal.proposal_mask(ids, scores, maskable, rows, seed, epoch, 3, 20, 0.1, 1.0, poisson, sequence,
                                           1, 1, 4, 1000)
    finally:
        JITFunction.run = original
    return launches


def compile_for_sm90(kernel, signature, constexprs, options):
    """(registers, spill store bytes, spill load bytes, shared bytes, seconds) from ptxas -v."""
    log = io.StringIO()
    start = time.perf_counter()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = True  # a cached kernel would not run ptxas
        compiled = triton.compile(triton.compiler.ASTSource(kernel, signature, constexprs), target=TARGET,
                                  options=options)
    seconds = time.perf_counter() - start
    text = log.getvalue()
    stores, loads = map(int, re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text).groups())
    registers = int(re.search(r"Used (\d+) registers", text).group(1))
    return registers, stores, loads, compiled.metadata.shared, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=16384)
    max_length = parser.parse_args().max_length
    spilled = False
    print("| kernel | constexprs | warps | registers | spill stores / loads (B) | shared (B) | compile (s) |")
    print("|---|---|---|---|---|---|---|")
    for (name, *_), (kernel, signature, constexprs, options) in recorded_launches(max_length).items():
        registers, stores, loads, shared, seconds = compile_for_sm90(kernel, signature, constexprs, options)
        spilled |= stores + loads > 0
        shown = ", ".join(f"{k}={v}" for k, v in constexprs.items() if v is not None)
        print(f"| {name} | {shown} | {options.get('num_warps')} | {registers} | {stores} / {loads} | {shared} "
              f"| {seconds:.1f} |", flush=True)
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
