"""Shared benchmark harness: timing, the copy-bandwidth floor, and result rows of one schema.

GPU: ``triton.testing.do_bench`` (median, p20, p80) after warm-up, with inputs rotated through
more than L2 so no contender runs from cache. CPU: ``torch.utils.benchmark`` (median over blocks,
p20/p80 from its raw times). Every figure is reported next to baselines from the same run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
L2_BYTES = 64 << 20  # above the L2 of every current GPU (H100: 50 MiB)


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    median_ms: float
    p20_ms: float
    p80_ms: float
    floor_fraction: float | None  # copy-bandwidth time of the op's bytes / median (1.0 = at the floor)
    device: str
    torch: str
    triton: str | None
    cuda: str | None
    git_sha: str
    date: str


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def _git_sha() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _triton_version() -> str | None:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


def rotating(make_inputs: Callable[[], tuple], bytes_per_set: int, device: torch.device) -> list[tuple]:
    """Enough input sets that cycling through them evicts L2 between calls (one set on CPU)."""
    count = 1 if device.type == "cpu" else max(2, -(-2 * L2_BYTES // max(bytes_per_set, 1)))
    return [make_inputs() for _ in range(min(count, 64))]


def time_fn(fn: Callable, input_sets: Sequence[tuple], device: torch.device, min_run_time=0.5) -> tuple[float, float, float]:
    """(median, p20, p80) in milliseconds of fn(*inputs), cycling through the input sets."""
    state = {"i": 0}

    def call():
        args = input_sets[state["i"] % len(input_sets)]
        state["i"] += 1
        return fn(*args)

    if device.type == "cuda":
        from triton.testing import do_bench

        p50, p20, p80 = do_bench(call, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])
        return p50, p20, p80
    import torch.utils.benchmark as benchmark

    call()  # warm-up
    m = benchmark.Timer(stmt="call()", globals={"call": call}).blocked_autorange(min_run_time=min_run_time)
    times = torch.tensor(m.times) * 1e3
    return m.median * 1e3, torch.quantile(times, 0.2).item(), torch.quantile(times, 0.8).item()


def copy_ms_per_byte(device: torch.device) -> float:
    """Device-to-device copy time per byte moved (read + write), measured now, from a 256 MiB copy."""
    src = torch.empty(64 << 20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    median, _, _ = time_fn(lambda: dst.copy_(src), [()], device)
    return median / (2 * src.numel() * src.element_size())


def make_row(op, shape, dtype, backend, timing, floor_ms, device) -> Row:
    median, p20, p80 = timing
    return Row(
        op=op, shape=shape, dtype=str(dtype).replace("torch.", ""), backend=backend,
        median_ms=round(median, 5), p20_ms=round(p20, 5), p80_ms=round(p80, 5),
        floor_fraction=None if floor_ms is None else round(floor_ms / median, 4),
        device=device_name(device), torch=torch.__version__, triton=_triton_version(), cuda=torch.version.cuda,
        git_sha=_git_sha(), date=datetime.date.today().isoformat(),
    )


def save(rows: list[Row], name: str, device: torch.device) -> str:
    """Appends rows as JSON lines to bench/results/<name>-<device>.jsonl; returns the path."""
    os.makedirs(RESULTS_DIR, exist_ok=True)
    tag = "cpu" if device.type == "cpu" else device_name(device).replace(" ", "-")
    path = os.path.join(RESULTS_DIR, f"{name}-{tag}.jsonl")
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(asdict(row)) + "\n")
    return path


def print_table(rows: list[Row], baselines: Sequence[str]) -> None:
    """A Markdown table, one line per row, with its speed-up over each baseline of the same op/shape."""
    base = {(r.op, r.shape, r.dtype, r.backend): r.median_ms for r in rows}
    print("| op | shape | dtype | backend | median ms | p20-p80 ms | "
          + " | ".join(f"x vs {b}" for b in baselines) + " | floor fraction |")
    print("|---|---|---|---|---:|---:|" + "---:|" * len(baselines) + "---:|")
    for r in rows:
        speedups = []
        for b in baselines:
            ref = base.get((r.op, r.shape, r.dtype, b))
            speedups.append(f"{ref / r.median_ms:.1f}" if ref else "-")
        floor = "-" if r.floor_fraction is None else f"{r.floor_fraction:.2f}"
        print(f"| {r.op} | {r.shape} | {r.dtype} | {r.backend} | {r.median_ms:.4f} | "
              f"{r.p20_ms:.4f}-{r.p80_ms:.4f} | " + " | ".join(speedups) + f" | {floor} |")


def run(name: str, doc: str, collect: Callable, baselines: Sequence[str], argv=None) -> int:
    """The command line every bench script shares: collect(device, quick, min_run_time) -> rows,
    printed as a table and appended to bench/results/<name>-<device>.jsonl."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small shapes, short timings (a CPU smoke run)")
    parser.add_argument("--no-save", action="store_true", help="print only; do not append to bench/results/")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = collect(device, args.quick, 0.05 if args.quick else 0.5)
    print_table(rows, baselines)
    if not args.no_save:
        print("\nappended to", save(rows, name, device))
    return 0
