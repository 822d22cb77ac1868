"""fastmask experiment convergence: does a masking scheme reach a lower evaluation loss for the
same compute?

Arms, every one at --rows encoder rows per step (equal compute; fully explored labels 1/K of each
row's tokens, the others the mask rate): random (--rows sequences, one exact-count mask each),
fully-explored (--rows / K sequences, all K views), random-k (--rows / K
sequences, K independent random masks each), and MAPNet with each objective (--rows
sequences, systematic sampling). The three compute-fair arms get their learning rate from a small
sweep (--lrs, --sweep-steps, seed 0, the lowest final eval loss wins); MAPNet uses
random's. Then --seeds seeds per arm (seed = initialisation, data order and masks). Eval loss
always uses the same plain random masks. The corpus's unigram entropy says how far the runs got
beyond token frequencies.
"""

from __future__ import annotations

import json
import math
import os

import torch
from tqdm.auto import tqdm

from fastmask.experiments.common import FAIR_ARMS, MAPNET_ARMS, arm_masking, experiment_config, save, setup_of
from fastmask.data import progress_bars
from fastmask.masking_config import MaskingConfig
from fastmask.train import train

ARMS = (*FAIR_ARMS, *MAPNET_ARMS)


def arm_config(args, arm: str, seed: int, lr: float, steps: int, out: str):
    """The pretraining configuration of one arm at ``--rows`` encoder rows per step."""
    probe = experiment_config(args, masking="random")
    k = probe.num_segments
    if args.rows % k:
        raise ValueError(f"--rows {args.rows} must be a multiple of K = {k} (the fully-explored views)")
    masking = arm_masking(arm, k)
    views = MaskingConfig(**masking, num_segments=k).views  # encoder rows per sequence
    interval = max(1, min(args.eval_interval, steps))
    return experiment_config(args, seed=seed, lr=lr, steps=steps, eval_interval=interval, log_interval=interval,
                             checkpoint_interval=steps, out=out, batch_size=args.rows // views, **masking)


def curve_of(run_folder: str) -> list[dict]:
    """(step, eval loss, training seconds) at every evaluation of a finished run."""
    with open(os.path.join(run_folder, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    curve, seconds, tokens = [], 0.0, 0
    for r in rows:  # training time only: each logged window's tokens at its measured speed
        seconds += (r["tokens"] - tokens) / r["tokens_per_s"]
        tokens = r["tokens"]
        if r["eval_loss"] is not None:
            curve.append(dict(step=r["step"], eval_loss=r["eval_loss"], seconds=round(seconds, 3)))
    return curve


def unigram_entropy(cfg) -> float:
    """Entropy (nats) of the training rows' token frequencies, special tokens excluded: the loss of
    a model that predicts every masked token from frequencies alone."""
    from fastmask import data

    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=False)
    ids = prepared.train[:].long().flatten()
    ids = ids[~torch.isin(ids, torch.tensor(sorted(set(prepared.tokenizer.all_special_ids))))]
    p = torch.bincount(ids).double()
    p = p[p > 0] / p.sum()
    return -(p * p.log()).sum().item()


def run_convergence(args) -> dict:
    work = os.path.join(args.work, "convergence")
    base = arm_config(args, "random", args.seed, args.lrs[0], args.steps, os.path.join(work, "probe"))
    results = dict(setup=setup_of(base, rows=args.rows, steps=args.steps, seeds=args.seeds, lrs=args.lrs,
                                  sweep_steps=args.sweep_steps),
                   unigram_entropy=unigram_entropy(base), sweep={}, lr={}, runs={})
    jobs = [(arm, lr) for arm in FAIR_ARMS for lr in args.lrs] if len(args.lrs) > 1 else []
    for arm, lr in tqdm(jobs, desc="learning-rate sweep", disable=not progress_bars(args.progress)):
        cfg = arm_config(args, arm, args.seed, lr, args.sweep_steps, os.path.join(work, "sweep", f"{arm}-lr{lr:g}"))
        train(cfg)
        results["sweep"][f"{arm}/{lr:g}"] = curve_of(cfg.out)[-1]["eval_loss"]
    for arm in FAIR_ARMS:
        results["lr"][arm] = min(args.lrs, key=lambda lr: results["sweep"].get(f"{arm}/{lr:g}", 0.0))
    for arm in ARMS[len(FAIR_ARMS):]:
        results["lr"][arm] = results["lr"]["random"]
    for arm in tqdm(ARMS, desc="arms", disable=not progress_bars(args.progress)):
        for seed in range(args.seed, args.seed + args.seeds):
            cfg = arm_config(args, arm, seed, results["lr"][arm], args.steps, os.path.join(work, f"{arm}-seed{seed}"))
            train(cfg)
            results["runs"][f"{arm}/{seed}"] = curve_of(cfg.out)
            save(args.out, "convergence.json", results)  # after every run: a long run keeps what it measured
    finals = sorted(results["runs"][f"random/{s}"][-1]["eval_loss"] for s in range(args.seed, args.seed + args.seeds))
    results["target"] = finals[len(finals) // 2]
    results["steps_to_target"] = {
        key: next((p["step"] for p in curve if p["eval_loss"] <= results["target"]), None)
        for key, curve in results["runs"].items()}
    save(args.out, "convergence.json", results)
    plot_convergence(results, os.path.join(args.out, "convergence.png"))
    return results


def arm_summary(results: dict, arm: str) -> dict:
    """Final eval losses over seeds (mean, standard deviation, values) and mean training seconds of an arm."""
    curves = [curve for key, curve in results["runs"].items() if key.split("/")[0] == arm]
    finals = [curve[-1]["eval_loss"] for curve in curves]
    mean = sum(finals) / len(finals)
    sd = math.sqrt(sum((x - mean) ** 2 for x in finals) / (len(finals) - 1)) if len(finals) > 1 else 0.0
    return dict(mean=mean, sd=sd, finals=finals, seconds=sum(curve[-1]["seconds"] for curve in curves) / len(curves))


def plot_convergence(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, arm in enumerate(ARMS):
        for j, (key, curve) in enumerate(k for k in results["runs"].items() if k[0].split("/")[0] == arm):
            label = arm if j == 0 else None
            by_step.plot([p["step"] for p in curve], [p["eval_loss"] for p in curve], color=colors[i % len(colors)],
                         alpha=0.8, label=label)
            by_time.plot([p["seconds"] for p in curve], [p["eval_loss"] for p in curve], color=colors[i % len(colors)],
                         alpha=0.8, label=label)
    for ax, xlabel in ((by_step, "step (equal encoder rows per step)"),
                       (by_time, "training seconds")):
        ax.axhline(results["unigram_entropy"], color="gray", lw=0.8, ls=":", label="unigram entropy")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval loss (plain random masks)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def add_arguments(parser) -> None:
    parser.add_argument("--rows", type=int, default=28, help="encoder rows per step, every arm (a multiple of K)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-interval", type=int, default=50)
    parser.add_argument("--lrs", type=lambda s: [float(x) for x in s.split(",")], default=[1e-3, 2e-3, 4e-3],
                        help="learning rates swept for the compute-fair arms (comma-separated; one: no sweep)")
    parser.add_argument("--sweep-steps", type=int, default=100, help="steps of each sweep run")
