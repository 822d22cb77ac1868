"""PNG plots from bench/results/*.jsonl, written to bench/plots/ (the README links them):

  <results>.png          median time against problem size, one panel per op, one line per backend
  <results>-speedup.png  speed-up of fastmask's kernels over each baseline of the same run

    python bench/plot.py
"""

from __future__ import annotations

import glob
import math
import re
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import BASELINES, KERNEL_BACKENDS, load_rows  # noqa: E402

KERNELS = {kernel for kernels in KERNEL_BACKENDS.values() for kernel in kernels}


def latest_run(rows):
    """The rows of the most recent (git sha, date) in a results file: one run, comparable."""
    last = (rows[-1]["git_sha"], rows[-1]["date"])
    return [r for r in rows if (r["git_sha"], r["date"]) == last]


def size(shape: str) -> int:
    """Elements of a shape such as 256x512; a ragged length range (256x64-512) counts at its longest;
    a size with a unit (the data family's 30MB) counts as its number."""
    return math.prod(int(re.match(r"\d+", v.split("-")[-1]).group()) for v in shape.split("x"))


def plot_file(path: str, out_dir: str, include_quick: bool = False) -> list[str]:
    rows = load_rows(path, include_quick)
    if not rows:
        return []
    rows = latest_run(rows)
    by_op = defaultdict(list)
    for r in rows:
        by_op[(r["op"], r["dtype"])].append(r)
    name = os.path.splitext(os.path.basename(path))[0]
    written = []

    panels = list(by_op.items())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.8), squeeze=False)
    for ax, ((op, dtype), op_rows) in zip(axes[0], panels):
        for backend in dict.fromkeys(r["backend"] for r in op_rows):
            points = sorted((size(r["shape"]), r["median_ms"], r["shape"]) for r in op_rows if r["backend"] == backend)
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=backend)
        shapes = sorted({(size(r["shape"]), r["shape"]) for r in op_rows})
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([s for s, _ in shapes], [label for _, label in shapes], rotation=30, fontsize=7)
        ax.minorticks_off()
        ax.set_title(f"{op} ({dtype})", fontsize=9)
        ax.set_ylabel("median ms")
        ax.legend(fontsize=7)
    fig.suptitle(f"{name}: {rows[0]['device']}, torch {rows[0]['torch']}, {rows[0]['git_sha']}", fontsize=9)
    fig.tight_layout()
    written.append(os.path.join(out_dir, f"{name}.png"))
    fig.savefig(written[-1], dpi=100)
    plt.close(fig)

    speedups = []  # (label, baseline, ratio)
    for (op, dtype), op_rows in panels:
        runs = defaultdict(dict)
        for r in op_rows:
            runs[r["shape"]][r["backend"]] = r["median_ms"]
        for shape, medians in runs.items():
            for kernel in (k for k in medians if k in KERNELS):
                for baseline, ms in medians.items():
                    if baseline in BASELINES:
                        speedups.append((f"{op} {shape} {kernel}", baseline, ms / medians[kernel]))
    if speedups:
        baselines = list(dict.fromkeys(b for _, b, _ in speedups))
        labels = list(dict.fromkeys(label for label, _, _ in speedups))
        fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(labels) * len(baselines)), 4))
        width = 0.8 / len(baselines)
        for i, baseline in enumerate(baselines):
            values = {label: ratio for label, b, ratio in speedups if b == baseline}
            xs = [j + i * width for j, label in enumerate(labels) if label in values]
            ax.bar(xs, [values[label] for label in labels if label in values], width, label=f"vs {baseline}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(labels))], labels, rotation=40, ha="right", fontsize=7)
        ax.set_ylabel("speed-up (x)")
        ax.set_title(f"{name}: fastmask kernels over the baselines of the same run", fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(os.path.join(out_dir, f"{name}-speedup.png"))
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written


def write(results_dir: str = os.path.join(HERE, "results"), out_dir: str = os.path.join(HERE, "plots"),
          include_quick: bool = False) -> list[str]:
    """The PNGs of every results file in `results_dir`, written to `out_dir`; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    return [png for path in sorted(glob.glob(os.path.join(results_dir, "*.jsonl")))
            for png in plot_file(path, out_dir, include_quick)]


def main() -> int:
    for png in write():
        print("wrote", png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
