"""fastmask experiment: does a masking scheme make pretraining cheaper? Measured with our own code.

variance     one step's gradient noise per masking scheme, as the mean squared error against the
             gradient it estimates, at several loss levels: uniform masks, the oracle and proxy-oracle
             proposals, MAPNet per objective; the gradient-norm signal against true per-token norms;
             fully explored against random masking at equal compute (mask and data variance).
             (fastmask/experiments/variance.py)
convergence  every scheme trained at equal encoder rows per step, the learning rate tuned per arm,
             several seeds: eval loss against steps and training time, against the corpus's unigram
             entropy. (fastmask/experiments/convergence.py)

Each writes JSON and PNGs under --out and regenerates docs/experiments.md from every result
present (fastmask/experiments/report.py).
"""

from __future__ import annotations

import argparse
import sys

from fastmask.experiments import convergence, report, variance
from fastmask.train.config import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastmask experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    for name, module, run in (("variance", variance, variance.run_variance),
                              ("convergence", convergence, convergence.run_convergence)):
        p = sub.add_parser(name, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                           argument_default=None)
        p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
        p.add_argument("--corpus", default=None, help="text file, directory or JSONL (default: the built-in corpus)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--cache-dir", default=None)
        p.add_argument("--out", default="runs/experiments", help="results: JSON and PNG")
        p.add_argument("--work", default="runs/experiments", help="the training runs' checkpoints and logs")
        p.add_argument("--doc", default="docs/experiments.md", help="the generated report")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
        module.add_arguments(p)
        p.set_defaults(fn=run)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except ValueError as exc:
        print(f"fastmask experiment: {exc}", file=sys.stderr)
        return 1
    report.write_doc(args.out, args.doc)
    print(f"results in {args.out}; report in {args.doc}")
    return 0
