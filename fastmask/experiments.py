"""``fastmask experiment``: reproduce the papers' claims at small scale, with our own code.

variance     the gradient variance that comes from the masks alone (model and batch fixed):
             K independent random masks averaged vs the K disjoint fully-explored views (paper 1);
             uniform vs MAPNet-proposed masks with importance weights (paper 2); and the
             covariance of two masks' gradients against their Hamming distance. At
             initialisation and after a short MAPNet training run; bootstrap 95% intervals.
convergence  random, fully-explored and MAPNet trained from the same initialisation and data for
             the same number of sequences, several seeds: eval loss (always plain random masks)
             against steps and wall time, and steps to a target loss relative to random.

Each writes JSON and PNGs under --out and regenerates docs/experiments.md from every result
present, with the setup, tables, plots and a conclusion that follows the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys

import torch

import fastmask
from fastmask.train import Config, train
from fastmask.train.config import PRESETS
from fastmask.train.model import Pretrainer
from fastmask.train.run_folder import load_checkpoint

# --------------------------------------------------------------------------------------------
# Gradient variance.


def _load_state(cfg: Config, checkpoint: str | None):
    """(model, prepared data) at initialisation, or from a pretrain checkpoint."""
    from fastmask import data

    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=False)
    torch.manual_seed(cfg.seed)
    model = Pretrainer(cfg, prepared.tokenizer)
    if checkpoint:
        model.load_state_dict(load_checkpoint(checkpoint, cfg)["model"])
    return model.eval(), prepared  # eval: no dropout, so the masks are the only randomness


class GradientProbe:
    """Flattened MLM-loss gradients of a fixed model on a fixed batch, for given masks."""

    def __init__(self, model: Pretrainer, rows: torch.Tensor):
        self.model, self.rows = model, rows.long()
        self.params = [p for n, p in model.mlm.named_parameters() if p.requires_grad]
        self.maskable = fastmask.maskable_mask(self.rows, special_ids=model.masking.special_ids)
        length, cfg = rows.shape[1], model.cfg
        # Enough slots for an exact-count (or top-k proposal) mask and for a fully-explored view.
        self.capacity = max(fastmask.gather_capacity(length, cfg.mlm_probability),
                            fastmask.gather_capacity(length, num_segments=cfg.num_segments))

    def grad(self, input_ids, labels, weights=None) -> torch.Tensor:
        hidden = self.model.mlm.bert(input_ids=input_ids)[0]
        loss = fastmask.sparse_mlm_loss(hidden, labels, self.model.mlm.cls, capacity=self.capacity, weights=weights)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params)]).double()

    def mask(self, seed, **kwargs):
        masking = self.model.masking
        return fastmask.mask_tokens(self.rows, self.maskable, masking.mask_token_id, masking.vocab_size,
                                    self.model.cfg.mlm_probability, exact_count=True, seed=seed, **kwargs)


def _total_variance(gram: torch.Tensor, rows: torch.Tensor) -> float:
    """Trace of the covariance (unbiased) of the estimates `rows` index, from their Gram matrix:
    sum ||g_i - mean||^2 = sum G_ii - sum_ij G_ij / R. Resampling then costs O(R^2), not O(R P)."""
    sub = gram[rows][:, rows]
    return ((sub.diagonal().sum() - sub.sum() / len(rows)) / (len(rows) - 1)).item()


def _ratio_ci(a: torch.Tensor, b: torch.Tensor, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Variance ratio var(a) / var(b) of two sets of estimates (R, P), and a bootstrap 95% interval."""
    gram_a, gram_b = a @ a.T, b @ b.T
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(draws):
        denominator = _total_variance(gram_b, torch.randint(len(b), (len(b),), generator=g))
        numerator = _total_variance(gram_a, torch.randint(len(a), (len(a),), generator=g))
        if denominator > 0:  # a resample of one repeated row has no variance
            ratios.append(numerator / denominator)
    ratios = torch.tensor(ratios)
    point = _total_variance(gram_a, torch.arange(len(a))) / _total_variance(gram_b, torch.arange(len(b)))
    return point, torch.quantile(ratios, 0.025).item(), torch.quantile(ratios, 0.975).item()


def _swap_positions(labels: torch.Tensor, rows: torch.Tensor, maskable: torch.Tensor, swaps: int, g, mask_id: int):
    """A second mask sharing all but `swaps` of each row's masked positions with `labels`."""
    new_labels = labels.clone()
    for b in range(labels.shape[0]):
        masked = (labels[b] != -100).nonzero().flatten()
        free = (maskable[b] & (labels[b] == -100)).nonzero().flatten()
        j = min(swaps, len(masked), len(free))
        drop = masked[torch.randperm(len(masked), generator=g)[:j]]
        add = free[torch.randperm(len(free), generator=g)[:j]]
        new_labels[b, drop] = -100
        new_labels[b, add] = rows[b, add]
    return torch.where(new_labels != -100, mask_id, rows), new_labels


def _correlations(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(Pearson, Spearman) correlation of two 1-D samples."""
    def pearson(a, b):
        a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
        return (a @ b / (a.norm() * b.norm()).clamp(min=1e-300)).item()

    def ranks(a):
        return a.argsort().argsort()

    return pearson(x, y), pearson(ranks(x), ranks(y))


def measure_signal(probe: GradientProbe, seed: int) -> dict:
    """The per-token gradient norms ||g_i|| (over every MLM parameter) of one exact-count mask's
    tokens against the signal G_i = ||dl_i / dh_i|| and the token loss l_i, and the variance
    ceiling 1 / (1 + CV^2) of ||g||: the least single-token variance ratio any proposal can reach
    (q proportional to ||g||), relative to uniform. With MAPNet, the Spearman correlation of the
    proposal's log q with log G on the same tokens."""
    ids, labels = probe.mask(seed)
    positions = fastmask.masked_positions(labels, probe.capacity)
    model = probe.model
    gathered = fastmask.gather_masked(model.mlm.bert(input_ids=ids)[0], positions.index)
    losses = fastmask.sparse.slot_cross_entropy(model.mlm.cls(gathered), positions)
    signal = torch.autograd.grad(losses.sum(), gathered, retain_graph=True)[0].norm(dim=-1)
    slots = (positions.labels != fastmask.reference.IGNORE_INDEX).nonzero().tolist()
    norms = torch.stack([
        torch.sqrt(sum(g.double().pow(2).sum() for g in torch.autograd.grad(losses[b, c], probe.params, retain_graph=True)))
        for b, c in slots])
    rows, cols = torch.tensor(slots).T
    cv = (norms.std() / norms.mean()).item()
    out = dict(tokens=len(slots), norm_cv=cv, ceiling=1 / (1 + cv * cv),
               signal=_correlations(signal[rows, cols], norms), token_loss=_correlations(losses[rows, cols].detach(), norms))
    if model.masking.proposal is not None:
        with torch.no_grad():
            log_q = fastmask.proposal_log_q(model.masking.proposal(probe.rows), probe.maskable, model.cfg.uniform_mix)
        position = positions.index[rows, cols]
        out["proposal_log_q_vs_log_signal"] = _correlations(log_q[rows, position], signal[rows, cols].log())[1]
    return out


def measure_variance(model, prepared, batch: int, repeats: int, pairs: int, seed: int) -> dict:
    cfg, masking = model.cfg, model.masking
    mask_id, vocab = masking.mask_token_id, masking.vocab_size
    probe = GradientProbe(model, prepared.eval[:batch])
    k = cfg.num_segments
    out = {}
    # Paper 1: K random masks averaged vs the K disjoint views, equal masked tokens per estimate.
    random_k, explored = [], []
    for r in range(repeats):
        random_k.append(torch.stack([probe.grad(*probe.mask(seed + r * k + j)) for j in range(k)]).mean(0))
        views = fastmask.fully_explored_mask(probe.rows, probe.maskable, mask_id, vocab, k, seed=seed + r)
        explored.append(torch.stack([probe.grad(views.input_ids[v], views.labels[v]) for v in range(k)]).mean(0))
    out["fully_explored_vs_random"] = _ratio_ci(torch.stack(explored), torch.stack(random_k))
    # Paper 2: one mask per estimate, uniform vs proposed with importance weights.
    single = torch.stack([probe.grad(*probe.mask(seed + 10_000 + r)) for r in range(repeats)])
    if masking.proposal is not None:
        with torch.no_grad():
            scores = masking.proposal(probe.rows)
        for weighting in ("token", "sequence"):
            proposed = []
            for r in range(repeats):
                p = fastmask.proposal_mask(probe.rows, scores, probe.maskable, mask_id, vocab,
                                           cfg.mlm_probability, cfg.uniform_mix, weighting=weighting, seed=seed + r)
                proposed.append(probe.grad(p.input_ids, p.labels, p.weights))
            out[f"mapnet_{weighting}_vs_uniform"] = _ratio_ci(torch.stack(proposed), single)
        q = torch.exp(fastmask.proposal_log_q(scores, probe.maskable, cfg.uniform_mix))
        n = probe.maskable.sum(1, keepdim=True)
        out["proposal_max_over_uniform"] = (q.max() * n.max()).item()
    # Paper 1's relation: covariance of two masks' gradients against their Hamming distance.
    mean = single.mean(0)
    var = _total_variance(single @ single.T, torch.arange(len(single)))
    g = torch.Generator().manual_seed(seed)
    per_row = max(1, math.floor(cfg.mlm_probability * probe.maskable.sum(1).min().item() + 0.5))
    curve = []
    for swaps in sorted({0, per_row // 4, per_row // 2, (3 * per_row) // 4, per_row}):
        products = []
        for pair in range(pairs):
            ids1, labels1 = probe.mask(seed + 20_000 + pair)
            ids1 = torch.where(labels1 != -100, mask_id, probe.rows)  # [MASK] only: the masks differ in position alone
            ids2, labels2 = _swap_positions(labels1, probe.rows, probe.maskable, swaps, g, mask_id)
            products.append(torch.dot(probe.grad(ids1, labels1) - mean, probe.grad(ids2, labels2) - mean).item())
        curve.append(dict(hamming_per_row=2 * swaps, covariance=sum(products) / len(products) / var,
                          stderr=torch.tensor(products).std().item() / math.sqrt(len(products)) / var))
    out["covariance_vs_hamming"] = curve
    out["signal"] = measure_signal(probe, seed + 30_000)
    return out


def run_variance(args) -> dict:
    cfg = _experiment_config(args, masking="mapnet")
    results = dict(setup=dict(config=dataclasses.asdict(cfg), batch=args.batch, repeats=args.repeats, pairs=args.pairs,
                              train_steps=args.train_steps, seed=args.seed))
    model, prepared = _load_state(cfg, None)
    results["initialisation"] = measure_variance(model, prepared, args.batch, args.repeats, args.pairs, args.seed)
    train_cfg = dataclasses.replace(cfg, steps=args.train_steps, out=os.path.join(args.work, "variance-training"),
                                    eval_interval=args.train_steps, checkpoint_interval=args.train_steps)
    train(train_cfg)
    model, prepared = _load_state(train_cfg.resolved(), os.path.join(train_cfg.out, "checkpoint.pt"))
    results["after_training"] = measure_variance(model, prepared, args.batch, args.repeats, args.pairs, args.seed)
    _save(args.out, "variance.json", results)
    _plot_covariance(results, os.path.join(args.out, "covariance_vs_hamming.png"))
    return results


def _plot_covariance(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for state in ("initialisation", "after_training"):
        curve = results[state]["covariance_vs_hamming"]
        ax.errorbar([c["hamming_per_row"] for c in curve], [c["covariance"] for c in curve],
                    yerr=[2 * c["stderr"] for c in curve], marker="o", capsize=3, label=state.replace("_", " "))
    ax.set_xlabel("Hamming distance between the two masks (per sequence)")
    ax.set_ylabel("gradient covariance / variance")
    ax.axhline(0, color="gray", lw=0.8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Convergence.

STRATEGIES = ("random", "fully-explored", "mapnet")


def run_convergence(args) -> dict:
    runs = {}
    for strategy in STRATEGIES:
        for seed in range(args.seeds):
            cfg = _experiment_config(args, masking=strategy, seed=seed)
            cfg = dataclasses.replace(cfg, steps=args.steps, eval_interval=args.eval_interval,
                                      log_interval=args.eval_interval, checkpoint_interval=args.steps,
                                      out=os.path.join(args.work, "convergence", f"{strategy}-seed{seed}"))
            train(cfg)
            with open(os.path.join(cfg.out, "metrics.jsonl")) as f:
                rows = [json.loads(line) for line in f]
            curve, seconds, tokens = [], 0.0, 0
            for r in rows:  # training time only: each logged window's tokens at its measured speed
                seconds += (r["tokens"] - tokens) / r["tokens_per_s"]
                tokens = r["tokens"]
                if r["eval_loss"] is not None:
                    curve.append(dict(step=r["step"], eval_loss=r["eval_loss"], seconds=round(seconds, 3)))
            runs[f"{strategy}/{seed}"] = curve
    # Target: the final eval loss that random masking reaches (median over seeds).
    finals = sorted(runs[f"random/{s}"][-1]["eval_loss"] for s in range(args.seeds))
    target = finals[len(finals) // 2]
    steps_to = {}
    for key, curve in runs.items():
        steps_to[key] = next((p["step"] for p in curve if p["eval_loss"] <= target), None)
    results = dict(setup=dict(config=dataclasses.asdict(_experiment_config(args, masking="random")), steps=args.steps,
                              seeds=args.seeds, eval_interval=args.eval_interval), runs=runs, target=target,
                   steps_to_target=steps_to)
    _save(args.out, "convergence.json", results)
    _plot_convergence(results, os.path.join(args.out, "convergence.png"))
    return results


def _plot_convergence(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = dict(zip(STRATEGIES, ("tab:blue", "tab:orange", "tab:green")))
    for key, curve in results["runs"].items():
        strategy, seed = key.split("/")
        label = strategy if seed == "0" else None
        by_step.plot([p["step"] for p in curve], [p["eval_loss"] for p in curve], color=colours[strategy], label=label)
        by_time.plot([p["seconds"] for p in curve], [p["eval_loss"] for p in curve], color=colours[strategy], label=label)
    for ax, xlabel in ((by_step, "step"), (by_time, "wall-clock seconds")):
        ax.axhline(results["target"], color="gray", lw=0.8, ls="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval loss (plain random masks)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# Shared: configuration, files, the generated document.


def _experiment_config(args, masking: str, seed: int | None = None) -> Config:
    # overwrite: the runs in the work folder are this experiment's own, regenerated on every run of it
    cfg = Config(preset=args.preset, corpus=args.corpus, masking=masking, seed=args.seed if seed is None else seed,
                          batch_size=args.batch_size, cache_dir=args.cache_dir, progress=False, overwrite=True)
    return cfg.resolved()


def _save(out: str, name: str, results: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)


def _fmt(ratio_ci) -> str:
    ratio, low, high = ratio_ci
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def _verdict(ratio_ci, lower: str) -> str:
    ratio, low, high = ratio_ci
    if high < 1:
        return f"lower ({lower})"
    if low > 1:
        return "higher (the claim does not hold here)"
    return "no significant difference"


def write_doc(out: str, doc: str) -> None:
    """docs/experiments.md from every result JSON present in `out`."""
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(doc)))
    parts = ["# Experiments: do the papers' claims hold at small scale?", "",
             "Generated by `fastmask experiment variance|convergence` (fastmask/experiments.py) from the JSON",
             f"results in `{out}`. Rerun with your own model and data: `--preset`, `--corpus`, and the flags",
             "of each command (`fastmask experiment variance --help`). CPU-sized defaults; results on a",
             "tiny model and a 1.5 MB corpus say little about BERT-base scale — they show the machinery works",
             "and what it measures.", ""]
    variance_path = os.path.join(out, "variance.json")
    if os.path.exists(variance_path):
        with open(variance_path) as f:
            v = json.load(f)
        s = v["setup"]
        c = s["config"]
        parts += ["## Gradient variance from the masks", "",
                  f"Setup: preset `{c['preset']}` ({c['hidden_size']} wide, {c['num_layers']} layers), a fixed batch of "
                  f"{s['batch']} held-out sequences of {c['seq_len']} tokens, dropout off, so the masks are the only "
                  f"randomness. Each estimate is the flattened gradient of the MLM loss; variance = trace of the "
                  f"covariance over {s['repeats']} estimates; ratios with bootstrap 95% intervals. Fully explored: "
                  f"the mean over the K = {c['num_segments']} disjoint views vs the mean over K independent exact-count "
                  f"random masks (equal masked tokens per estimate). MAPNet: one proposed mask with importance "
                  f"weights vs one uniform mask. 'After training': {s['train_steps']} steps of `fastmask pretrain "
                  f"--masking mapnet` from the same initialisation.", "",
                  "| state | fully explored / random | MAPNet token weights / uniform | MAPNet sequence weights / uniform | max q / uniform |",
                  "|---|---|---|---|---:|"]
        for state in ("initialisation", "after_training"):
            r = v[state]
            parts.append(f"| {state.replace('_', ' ')} | {_fmt(r['fully_explored_vs_random'])} | "
                         f"{_fmt(r['mapnet_token_vs_uniform'])} | {_fmt(r['mapnet_sequence_vs_uniform'])} | "
                         f"{r['proposal_max_over_uniform']:.2f} |")
        parts += ["", "The gradient-norm signal: per-token gradient norms ||g_i|| over every MLM parameter, for the",
                  "tokens of one exact-count mask of the batch, against MAPNet's signal G_i = ||dl_i/dh_i|| (read in",
                  "the MLM backward) and against the token loss l_i; (Pearson, Spearman). The ceiling 1/(1 + CV^2)",
                  "of ||g|| is the least variance ratio to uniform that any proposal can reach for one token.", "",
                  "| state | tokens | CV of norms | ceiling | G vs norm | loss vs norm | MAPNet log q vs log G (Spearman) |",
                  "|---|---:|---:|---:|---|---|---:|"]
        for state in ("initialisation", "after_training"):
            r = v[state].get("signal")
            if r:
                tracked = r.get("proposal_log_q_vs_log_signal")
                parts.append(f"| {state.replace('_', ' ')} | {r['tokens']} | {r['norm_cv']:.3f} | {r['ceiling']:.3f} | "
                             f"{r['signal'][0]:.2f}, {r['signal'][1]:.2f} | {r['token_loss'][0]:.2f}, "
                             f"{r['token_loss'][1]:.2f} | {'-' if tracked is None else f'{tracked:.2f}'} |")
        parts += ["", f"![covariance against Hamming distance]({rel}/covariance_vs_hamming.png)", "",
                  "Covariance of two masks' gradients (normalised by the single-mask variance) against their Hamming",
                  "distance: same number of masked positions, [MASK] replacement only, so the masks differ in position",
                  "alone.", "", "Conclusion, as measured:", ""]
        for state in ("initialisation", "after_training"):
            r = v[state]
            curve = r["covariance_vs_hamming"]
            trend = "falls" if curve[-1]["covariance"] < curve[0]["covariance"] - 2 * curve[0]["stderr"] else "does not clearly fall"
            parts.append(f"- {state.replace('_', ' ')}: fully explored vs random: "
                         f"{_verdict(r['fully_explored_vs_random'], 'as paper 1 predicts')}; MAPNet (token weights): "
                         f"{_verdict(r['mapnet_token_vs_uniform'], 'as paper 2 predicts')}; covariance {trend} with the "
                         f"Hamming distance.")
        parts += ["- At initialisation MAPNet's head is zero, so it proposes uniformly (max q / uniform = 1): its",
                  "  ratio there measures nothing but noise.", ""]
    convergence_path = os.path.join(out, "convergence.json")
    if os.path.exists(convergence_path):
        with open(convergence_path) as f:
            cv = json.load(f)
        c = cv["setup"]["config"]
        parts += ["## Convergence", "",
                  f"Setup: preset `{c['preset']}`, {cv['setup']['steps']} steps of {c['batch_size']} sequences for every "
                  f"strategy (the same sequences in the same order), {cv['setup']['seeds']} seeds (seed = model "
                  f"initialisation, data order and masks). Fully explored trains on all K = {c['num_segments']} views of "
                  f"each sequence in a step, so it does about K times the compute per step. Eval loss always uses plain "
                  f"random masks. Target: the final eval loss random masking reaches (median over seeds), "
                  f"{cv['target']:.4f}.", "", f"![eval loss against steps and wall time]({rel}/convergence.png)", "",
                  "| strategy | final eval loss (per seed) | steps to target (per seed) | steps vs random | training seconds to target |",
                  "|---|---|---|---|---|"]
        seeds = cv["setup"]["seeds"]
        random_steps = [cv["steps_to_target"][f"random/{s}"] for s in range(seeds)]
        for strategy in STRATEGIES:
            finals = [cv["runs"][f"{strategy}/{s}"][-1]["eval_loss"] for s in range(seeds)]
            steps = [cv["steps_to_target"][f"{strategy}/{s}"] for s in range(seeds)]
            ratios = [f"{a / b:.2f}" if a and b else "not reached" for a, b in zip(steps, random_steps)]
            seconds = [next((f"{p['seconds']:.1f}" for p in cv["runs"][f"{strategy}/{s}"]
                             if p["eval_loss"] <= cv["target"]), "not reached") for s in range(seeds)]
            parts.append(f"| {strategy} | {', '.join(f'{x:.4f}' for x in finals)} | "
                         f"{', '.join(str(x) if x else 'not reached' for x in steps)} | {', '.join(ratios)} | "
                         f"{', '.join(seconds)} |")
        parts += ["", "Steps-to-target ratios below 1 mean faster than random masking per step (per sequence seen);",
                  "the seconds column and the wall-time panel include fully explored's K-fold compute per step.", "",
                  "Conclusion, as measured:", ""]
        for strategy in STRATEGIES[1:]:
            pairs = [(cv["steps_to_target"][f"{strategy}/{s}"], random_steps[s]) for s in range(seeds)]
            reached = [a / b for a, b in pairs if a and b]
            if len(reached) < seeds:
                parts.append(f"- {strategy}: did not reach random masking's final loss within {cv['setup']['steps']} "
                             f"steps in {seeds - len(reached)} of {seeds} seeds.")
            else:
                parts.append(f"- {strategy}: reached random masking's final loss in {min(reached):.2f}–{max(reached):.2f} "
                             f"of random's steps (per sequence seen); see the seconds column for the cost in time.")
        parts.append("")
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    with open(doc, "w") as f:
        f.write("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fastmask experiment", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="experiment", required=True)
    for name, fn in (("variance", run_variance), ("convergence", run_convergence)):
        p = sub.add_parser(name)
        p.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
        p.add_argument("--corpus", default=None, help="text file, directory or JSONL (default: the built-in corpus)")
        p.add_argument("--batch-size", type=int, default=16)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--cache-dir", default=None)
        p.add_argument("--out", default="runs/experiments", help="results: JSON and PNG")
        p.add_argument("--work", default="runs/experiments", help="the training runs' checkpoints and logs")
        p.add_argument("--doc", default="docs/experiments.md", help="the generated report")
        if name == "variance":
            p.add_argument("--batch", type=int, default=8, help="sequences in the fixed batch")
            p.add_argument("--repeats", type=int, default=24, help="gradient estimates per strategy")
            p.add_argument("--pairs", type=int, default=8, help="mask pairs per Hamming distance")
            p.add_argument("--train-steps", type=int, default=150, help="MAPNet training before the second measurement")
        else:
            p.add_argument("--steps", type=int, default=150)
            p.add_argument("--seeds", type=int, default=2)
            p.add_argument("--eval-interval", type=int, default=25)
        p.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    try:
        args.fn(args)
    except ValueError as exc:
        print(f"fastmask experiment: {exc}", file=sys.stderr)
        return 1
    write_doc(args.out, args.doc)
    print(f"results in {args.out}; report in {args.doc}")
    return 0
