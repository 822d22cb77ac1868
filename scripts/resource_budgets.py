"""Compile-time resource budgets of every CUDA and Triton kernel of fastmask, for sm_90 (Hopper).

No GPU is needed: ptxas reports each kernel's registers, stack frame, spill stores/loads and
shared memory at compile time. This script measures them and writes docs/resource-budgets.md;
``--check`` fails when a kernel exceeds its budget or the committed table is stale.

* CUDA: csrc/cuda/compile_check.cu (every launcher instantiated, torch-free) compiled with the
  flags of the real build (setup.py's and torch's cpp_extension's) plus ``-Xptxas -v``.
* Triton: every host function of fastmask.triton is called on meta tensors for a sweep of row
  lengths and options, with a fake driver whose compile hook records each launch instead of
  compiling it. The configurations are therefore whatever the wrappers choose today (derived, not
  restated); each is then compiled ahead of time for GPUTarget("cuda", 90, 32) and Triton's own
  ptxas call (its flags, -v) is logged. The section records a fingerprint of fastmask/triton/*.py
  so a test can tell cheaply that the Triton kernels changed since the table was generated.

    python scripts/resource_budgets.py                 # regenerate the whole table (Triton: slow)
    python scripts/resource_budgets.py --no-triton     # regenerate the CUDA part, keep the Triton one
    python scripts/resource_budgets.py --check --no-triton   # what tests/test_resource_budgets.py runs
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "resource-budgets.md")
CUDA_SOURCE = os.path.join("csrc", "cuda", "compile_check.cu")
TRITON_SOURCES = os.path.join(ROOT, "fastmask", "triton", "*.py")

# Budgets. 255 is the most registers a thread can address; 48 KiB is the most static shared memory
# a block may declare; 227 KiB the most (dynamic) shared memory an sm_90 block may use, Triton's case.
MAX_REGISTERS = 255
MAX_CUDA_STATIC_SHARED = 48 * 1024
MAX_TRITON_SHARED = 227 * 1024

# setup.py's nvcc flags (IEEE floats: no --use_fast_math) and the ones torch's cpp_extension adds
# to every nvcc call (COMMON_NVCC_FLAGS), so that register allocation matches the real build.
NVCC_FLAGS = [
    "-std=c++17", "-O3", "-lineinfo", "-arch=sm_90", "-Xptxas", "-v",
    "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__", "-D__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-D__CUDA_NO_HALF2_OPERATORS__", "--expt-relaxed-constexpr", "-Icsrc/include",
    "--split-compile=0",  # NVVM and ptxas work on one kernel per CPU: faster, same code
    "-Xcompiler", "-Wall",  # and no warnings: this is the one compile of every kernel that CI makes
]

CUDA_BEGIN, CUDA_END = "<!-- cuda-table -->", "<!-- /cuda-table -->"
TRITON_BEGIN, TRITON_END = "<!-- triton-section -->", "<!-- /triton-section -->"
FINGERPRINT = re.compile(r"<!-- triton-fingerprint: ([0-9a-f]+) -->")
REGENERATE = "regenerate it with `python scripts/resource_budgets.py` (add --no-triton to keep the Triton part)"


@dataclass(frozen=True)
class Usage:
    """What ptxas reports for one kernel (bytes, except registers)."""

    kernel: str
    registers: int
    stack: int
    spill_stores: int
    spill_loads: int
    shared: int

    def row(self) -> str:
        return (f"| `{self.kernel}` | {self.registers} | {self.stack} | {self.spill_stores} | {self.spill_loads} "
                f"| {self.shared} |")


# --------------------------------------------------------------------------------------------
# ptxas -v logs
# --------------------------------------------------------------------------------------------

_ENTRY = re.compile(r"Compiling entry function '([^']+)'")
_FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers")
_SMEM = re.compile(r"(\d+) bytes smem")


def parse_ptxas_log(log: str) -> dict[str, Usage]:
    """Entry (mangled name) -> usage; device functions that were not inlined are not entries."""
    usages, entry, frame = {}, None, None
    for line in log.splitlines():
        if m := _ENTRY.search(line):
            entry, frame = m.group(1), None
        elif entry and (m := _FRAME.search(line)):
            frame = tuple(int(g) for g in m.groups())
        elif entry and frame and (m := _USED.search(line)):
            smem = _SMEM.search(line)  # ptxas omits it when zero
            usages[entry] = Usage(entry, int(m.group(1)), *frame, int(smem.group(1)) if smem else 0)
            entry = None
    return usages


def readable_name(demangled: str) -> str:
    """`void fastmask::kernels::k<long, 256, 8>(long const*, ...)` -> `k<long, 256, 8>`."""
    name = demangled.removeprefix("void ").replace("fastmask::kernels::", "").replace("fastmask::", "")
    depth = 0
    for i, ch in enumerate(name):  # cut the parameter list: the first '(' outside template brackets
        depth += ch == "<"
        depth -= ch == ">"
        if ch == "(" and depth == 0:
            return name[:i]
    return name


# --------------------------------------------------------------------------------------------
# CUDA
# --------------------------------------------------------------------------------------------


def nvcc_path() -> str | None:
    return shutil.which("nvcc")


def nvcc_version(nvcc: str) -> str:
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-2].strip()  # "Cuda compilation tools, release 13.0, V13.0.88"


def cuda_usages(nvcc: str) -> list[Usage]:
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run([nvcc, *NVCC_FLAGS, "-c", CUDA_SOURCE, "-o", os.path.join(tmp, "out.o")],
                                cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"nvcc failed:\n{result.stderr}")
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    if warnings:
        sys.exit("nvcc warnings:\n" + "\n".join(warnings))
    usages = parse_ptxas_log(result.stderr)
    demangled = subprocess.run(["c++filt"], input="\n".join(usages), capture_output=True, text=True,
                               check=True).stdout.splitlines()
    return sorted((Usage(readable_name(d), *list(vars(u).values())[1:]) for d, u in zip(demangled, usages.values())),
                  key=lambda u: u.kernel)


def cuda_violations(usages: list[Usage]) -> list[str]:
    # A stack frame is local memory, as slow as a spill: it has no budget either.
    return [f"{u.kernel}: {what}" for u in usages for what, bad in (
        (f"{u.registers} registers > {MAX_REGISTERS}", u.registers > MAX_REGISTERS),
        (f"{u.spill_stores} B spill stores, {u.spill_loads} B spill loads", u.spill_stores or u.spill_loads),
        (f"{u.stack} B stack frame", u.stack),
        (f"{u.shared} B static shared > {MAX_CUDA_STATIC_SHARED}", u.shared > MAX_CUDA_STATIC_SHARED),
    ) if bad]


# --------------------------------------------------------------------------------------------
# Triton
# --------------------------------------------------------------------------------------------


def triton_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(glob.glob(TRITON_SOURCES)):
        digest.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def triton_launches(max_length: int) -> list[tuple]:
    """Every distinct configuration the Triton host functions launch over the sweep: (kernel, compile
    dict). Launches that differ only in Triton's specialisation of integer arguments (== 1, divisible
    by 16) count once: the first, made on rows of a power-of-two length >= 16."""
    import torch
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.runtime.driver import driver

    import fastmask
    from fastmask.triton import gather, head, masking, proposal, words

    target = GPUTarget("cuda", 90, 32)

    class RecordingDriver:  # what JITFunction.run asks of a driver before it compiles
        def get_current_device(self):
            return 0

        def get_current_stream(self, device=None):
            return 0

        def get_current_target(self):
            return target

    launches = {}

    def record(*, fn, compile, **_):
        launches.setdefault((fn.name, triton_configuration(fn.jit_function, compile)), (fn.jit_function, compile))
        return True  # True: skip compiling and launching

    meta = torch.device("meta")
    rows, vocab, mask_id = 4, 1000, 3

    def philox_key_variants():
        """(seed, epoch): ints arrive as CPU tensors (passed by value); tensors on the device by pointer."""
        yield torch.tensor(1), torch.tensor(2)
        yield torch.tensor(1, device=meta), torch.tensor(2, device=meta)

    def calls(length):
        ids = torch.empty(rows, length, dtype=torch.int64, device=meta)
        maskable = torch.empty(rows, length, dtype=torch.bool, device=meta)
        row_ids = torch.empty(rows, dtype=torch.int64, device=meta)
        for attention in (None, maskable, torch.empty(rows, length, dtype=torch.int64, device=meta)):
            for special in (torch.empty(0, dtype=torch.int64, device=meta), torch.empty(2, dtype=torch.int64, device=meta)):
                yield masking.maskable_mask, (ids, attention, special)
        for seed, epoch in philox_key_variants():
            for exact in (False, True):
                yield masking.mask_tokens, (ids, maskable, row_ids, seed, epoch, 1 << 20, 3, 20, 1, 2, mask_id, vocab, exact)
            for contiguous in (False, True):
                for word_start in (None, maskable):
                    yield masking.fully_explored_mask, (ids, maskable, row_ids, seed, epoch, 7, contiguous, 1, 2, mask_id,
                                                        vocab, word_start)
            for exact in (False, True):
                yield words.whole_word_mask, (ids, maskable, maskable, row_ids, seed, epoch, 1 << 20, 3, 20, 1, 2, mask_id,
                                              vocab, exact)
            for per_span in (False, True):
                yield words.span_mask, (ids, maskable, maskable, row_ids, seed, epoch, 3, 20, [1 << 23], per_span, 1, 2,
                                        mask_id, vocab)
            for score_dtype in (torch.float32, torch.bfloat16):
                scores = torch.empty(rows, length, dtype=score_dtype, device=meta)
                for sampling in (0, 1, 2):  # reference.SAMPLING_*: top-k, Poisson, systematic
                    for sequence_weights in (False, True):
                        yield proposal.proposal_mask, (ids, scores, maskable, row_ids, seed, epoch, 3, 20, 0.1, 1.0,
                                                       sampling, sequence_weights, 1, 2, mask_id, vocab)
        capacity = fastmask.gather_capacity(length, 0.15)
        yield gather.masked_positions, (ids, capacity)
        index = torch.empty(rows, capacity, dtype=torch.int64, device=meta)
        for width in (64, 768):  # every width above 512 tiles like 768
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                yield gather.gather_masked, (torch.empty(rows, length, width, dtype=dtype, device=meta), index)
                yield gather.scatter_masked, (torch.empty(rows, capacity, width, dtype=dtype, device=meta), index, length)
        if length == 1:  # the head's row kernel does not depend on the length: one set of launches
            labels = torch.empty(rows, dtype=torch.int64, device=meta)
            for dtype in (torch.float32, torch.float64):  # the accumulation dtypes of its logits
                logits = torch.empty(rows, vocab, dtype=dtype, device=meta)
                for grad_scale in (None, torch.empty(rows, dtype=dtype, device=meta)):
                    yield head._cross_entropy_rows, (logits, labels, grad_scale, -100, 0.0)

    lengths = sorted({2**i for i in range(4, max_length.bit_length()) if 2**i <= max_length} | {1, max_length})
    previous_driver = driver._active  # None without a GPU: reset_active() would raise there
    driver.set_active(RecordingDriver())
    knobs.runtime.jit_cache_hook = record
    try:
        for length in lengths:
            for host_function, args in calls(length):
                host_function(*args)
    finally:
        knobs.runtime.jit_cache_hook = None
        driver.set_active(previous_driver)
    return list(launches.values())


def triton_configuration(jit_function, compile: dict) -> str:
    """The launch's choices: its tl.constexpr arguments, num_warps, fp fusion, pointer dtypes in order."""
    params = jit_function.params
    constants = ", ".join(f"{params[path[0]].name}={value}" for path, value in sorted(compile["constants"].items())
                          if params[path[0]].is_constexpr)
    pointers = " ".join(ty[1:] for ty in compile["signature"].values() if ty.startswith("*"))
    fusion = "" if compile["enable_fp_fusion"] else ", no fp fusion"
    return f"{constants}; warps={compile['num_warps']}{fusion}; ptrs {pointers}"


def triton_usages(max_length: int) -> list[Usage]:
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", 90, 32)
    usages = []
    with tempfile.TemporaryDirectory() as cache:
        knobs.cache.dir = cache  # a fresh cache: every compile runs ptxas, whose log is read here
        knobs.nvidia.dump_ptxas_log = True
        for jit_function, compile in triton_launches(max_length):
            options = {k: compile[k] for k in ("num_warps", "num_ctas", "num_stages", "enable_fp_fusion")}
            log = io.StringIO()
            with contextlib.redirect_stdout(log):
                kernel = triton.compile(ASTSource(jit_function, compile["signature"], compile["constants"],
                                                  compile["configs"][0]), target=target, options=options)
            (usage,) = parse_ptxas_log(log.getvalue()).values()
            name = f"{jit_function.__name__}[{triton_configuration(jit_function, compile)}]"
            # Triton's shared memory is dynamic (ptxas sees none): the compiler's metadata has it.
            usages.append(Usage(name, usage.registers, usage.stack, usage.spill_stores, usage.spill_loads,
                                kernel.metadata.shared))
            print(f"{len(usages)}: {usages[-1].row()}", file=sys.stderr)
    return sorted(set(usages), key=lambda u: u.kernel)


def triton_violations(usages: list[Usage]) -> list[str]:
    return [f"{u.kernel}: {what}" for u in usages for what, bad in (
        (f"{u.registers} registers > {MAX_REGISTERS}", u.registers > MAX_REGISTERS),
        (f"{u.spill_stores} B spill stores, {u.spill_loads} B spill loads", u.spill_stores or u.spill_loads),
        (f"{u.shared} B shared > {MAX_TRITON_SHARED}", u.shared > MAX_TRITON_SHARED),
    ) if bad]


# --------------------------------------------------------------------------------------------
# The document
# --------------------------------------------------------------------------------------------

HEADER = "| kernel | registers | stack (B) | spill stores (B) | spill loads (B) | shared (B) |\n|---|---:|---:|---:|---:|---:|"

INTRO = f"""# Resource budgets (sm_90)

Generated by `python scripts/resource_budgets.py`; do not edit by hand. `tests/test_resource_budgets.py`
recompiles the CUDA kernels and fails when this table is stale or a budget is exceeded, and fails when
`fastmask/triton/*.py` changed since the Triton part was generated; {REGENERATE}.

Budgets, per kernel: **no spill stores or loads**, registers ≤ {MAX_REGISTERS}, and for CUDA no stack frame
(local memory is as slow as a spill) and static shared memory ≤ {MAX_CUDA_STATIC_SHARED // 1024} KiB (the
most a block may declare statically); for Triton (dynamic shared memory) ≤ {MAX_TRITON_SHARED // 1024} KiB,
what one sm_90 block may use. Every figure comes from ptxas `-v` at compile time: no GPU is needed.
"""

CUDA_NOTES = """Occupancy: the ranked kernels for rows of 4097–8192 tokens (`ranked_mask_kernel<…, 256, 32, …>`,
231–241 registers; `span_tiles_kernel<…, 256, 32>`, 235) fit one 256-thread block per SM: 8 warps of 64,
12.5% occupancy. This is expected not to limit them: each thread keeps 32 tokens of its row in registers
(the whole row is sorted in one block) and issues their 32 loads, Philox draws and stores independently, so
memory and arithmetic latency are hidden by instruction-level parallelism rather than by more warps; the
33.8 KB of shared memory for the sort (37.4 KB for the span tiles, whose word and tile tables reuse the
sort's buffer) would allow at most 6 such blocks anyway. Fewer registers would need a longer row per block
in shared memory or a multi-block sort. To be confirmed on a GPU (ncu: achieved occupancy, stall reasons)
together with the timings of `bench/`.
"""


def cuda_section(nvcc: str, usages: list[Usage]) -> str:
    command = " ".join(["nvcc", *NVCC_FLAGS, "-c", CUDA_SOURCE])
    table = "\n".join([HEADER, *(u.row() for u in usages)])
    return (f"## CUDA kernels\n\nEvery instantiation in `{CUDA_SOURCE}`, names demangled, shared memory static.\n"
            f"{nvcc_version(nvcc)}; generated {datetime.date.today().isoformat()}.\n\n```\n{command}\n```\n\n"
            f"{CUDA_BEGIN}\n{table}\n{CUDA_END}\n\n{CUDA_NOTES}")


def triton_section(usages: list[Usage], max_length: int) -> str:
    import triton

    table = "\n".join([HEADER, *(u.row() for u in usages)])
    return (f"{TRITON_BEGIN}\n## Triton kernels\n\n<!-- triton-fingerprint: {triton_fingerprint()} -->\n"
            f"Every configuration the host functions of `fastmask.triton` launch for rows of up to {max_length} "
            f"tokens (powers of two, and every option: exact/Bernoulli, partitions, top-k/Poisson/systematic, sequence "
            f"weights, seed and epoch by value or on the device, float32/bfloat16 scores, float32/float16/bfloat16 "
            f"hidden states of widths 64 and 768), compiled ahead of time for `GPUTarget(\"cuda\", 90, 32)` by "
            f"Triton {triton.__version__} (its ptxas flags; shared memory is dynamic, from the compiler's metadata). "
            f"Longer rows: `--max-length`. Generated {datetime.date.today().isoformat()}.\n\n{table}\n{TRITON_END}")


def between(text: str, begin: str, end: str) -> str | None:
    start, stop = text.find(begin), text.find(end)
    return text[start + len(begin):stop].strip() if 0 <= start < stop else None


def table_rows(section: str | None) -> list[str]:
    """A section's kernel rows: what staleness compares (not the dates)."""
    return [line for line in (section or "").splitlines() if line.startswith("| `")]


def committed_doc() -> str:
    if not os.path.exists(DOC):
        return ""
    with open(DOC) as f:
        return f.read()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="write nothing; fail if a budget is exceeded or the committed table is stale")
    parser.add_argument("--no-triton", action="store_true",
                        help="skip compiling the Triton kernels (writing keeps the committed Triton part; "
                             "--check compares only its fingerprint)")
    parser.add_argument("--max-length", type=int, default=2048, help="longest row of the Triton sweep")
    args = parser.parse_args()

    nvcc = nvcc_path()
    if nvcc is None:
        sys.exit("nvcc not found on PATH")
    doc = committed_doc()
    cuda = cuda_usages(nvcc)
    problems = cuda_violations(cuda)
    if args.no_triton:
        triton_part = f"{TRITON_BEGIN}{between(doc, TRITON_BEGIN, TRITON_END) or ''}{TRITON_END}"
        triton_part = triton_part.replace(TRITON_BEGIN, TRITON_BEGIN + "\n").replace(TRITON_END, "\n" + TRITON_END)
    else:
        triton = triton_usages(args.max_length)
        problems += triton_violations(triton)
        triton_part = triton_section(triton, args.max_length)

    if args.check:
        if table_rows(between(doc, CUDA_BEGIN, CUDA_END)) != [u.row() for u in cuda]:
            problems.append(f"the CUDA table of {os.path.relpath(DOC, ROOT)} is stale: {REGENERATE}")
        recorded = FINGERPRINT.search(doc)
        if recorded is None or recorded.group(1) != triton_fingerprint():
            problems.append(f"fastmask/triton/*.py changed since the Triton table of {os.path.relpath(DOC, ROOT)} "
                            f"was generated: {REGENERATE}")
        elif not args.no_triton and table_rows(between(doc, TRITON_BEGIN, TRITON_END)) != [u.row() for u in triton]:
            problems.append(f"the Triton table of {os.path.relpath(DOC, ROOT)} is stale: {REGENERATE}")
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0

    with open(DOC, "w") as f:
        f.write(f"{INTRO}\n{cuda_section(nvcc, cuda)}\n{triton_part}\n")
    for problem in problems:
        print(f"over budget: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
