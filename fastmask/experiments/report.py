"""docs/experiments.md, generated from the result JSON files present: setup, tables, plots and
verdicts that follow the numbers (and name exactly what was measured)."""

from __future__ import annotations

import json
import os

from fastmask.experiments import convergence, variance
from fastmask.experiments.common import difference_ci


def _fmt(ratio_ci) -> str:
    ratio, low, high = ratio_ci
    return f"{ratio:.2f} [{low:.2f}, {high:.2f}]"


def _compare(ratio_ci) -> str:
    ratio, low, high = ratio_ci
    if high < 1:
        return f"lower than uniform ({_fmt(ratio_ci)})"
    if low > 1:
        return f"higher than uniform ({_fmt(ratio_ci)})"
    return f"not distinguishable from uniform ({_fmt(ratio_ci)})"


def _variance_section(v: dict) -> list[str]:
    s, c = v["setup"], v["setup"]["config"]
    parts = [
        "## Gradient noise: one step's gradient against the gradient it estimates", "",
        f"Setup (`fastmask experiment variance`): preset `{c['preset']}` ({c['hidden_size']} wide, {c['num_layers']} "
        f"layers), states after {', '.join(str(st['steps']) for st in v['states'])} steps of random-masking "
        f"pretraining (batch {c['batch_size']}). At each state, {s['batches']} fixed batches of {s['batch']} training "
        f"sequences ({s['length']}-token prefixes), dropout off. Reference gradient: the mean over "
        f"{s['reference_masks']} exact-count uniform masks. Each arm: {s['repeats']} one-mask gradient estimates per "
        f"batch, its own Philox seed; MSE = mean squared distance to the reference (the reference's own noise, "
        f"1/{s['reference_masks']} of uniform's, is in every arm alike). Proposal arms sample systematically "
        f"(exactly k, exact inclusion probabilities) with token weights. Oracle: q proportional to the true "
        f"per-token gradient norms ||g_i|| (every MLM parameter, each token masked once in its fully-explored view); "
        f"proxy oracle: q proportional to the signal G_i = ||dl_i/dh_i|| from the same passes; MAPNet: a proposal "
        f"net trained for {s['proposal_steps']} steps at that state (MLM frozen) with each objective. Ratios: MSE "
        f"over uniform's, geometric mean over batches with a 95% t interval.", "",
        "| state (steps, eval loss) | ceiling 1/(1+CV²) | oracle | proxy oracle | "
        + " | ".join(f"MAPNet {objective}" for objective in variance.OBJECTIVES) + " |",
        "|---|---:|---|---|" + "---|" * len(variance.OBJECTIVES)]
    for st in v["states"]:
        arms = st["arms"]
        parts.append(f"| {st['steps']}, {st['eval_loss']:.3f} | {arms['signal']['ceiling']:.3f} | "
                     + " | ".join(_fmt(arms[arm]["mse_ratio"]) for arm in variance.ARMS[1:]) + " |")
    parts += ["", "The ceiling assumes per-token gradients that add without correlation (importance sampling of "
              "one token); tokens of a batch share a common gradient direction, which a fixed-size sample with "
              "weights does not average away, so q proportional to ||g_i|| need not lower the MSE even where ||g|| "
              "varies: the oracle column measures whether it does.", "",
              "Diagnostics (means over batches): Spearman correlation of log q with log ||g|| over the maskable "
              "tokens; E[Σw]/k (1 when the weights are unbiased); effective sample size (Σw)²/Σw² over k; the largest "
              "n·q.", "", "| state | arm | Spearman log q, log ‖g‖ | E[Σw]/k | ESS/k | max n·q |", "|---|---|---:|---:|---:|---:|"]
    for st in v["states"]:
        for arm in variance.ARMS[1:]:
            a = st["arms"][arm]
            parts.append(f"| {st['steps']} | {arm} | {a['spearman_log_q_log_norm']:.2f} | {a['weight_sum_over_k']:.3f} | "
                         f"{a['ess_over_k']:.3f} | {a['max_n_q']:.2f} |")
    parts += ["", "The signal: correlation (Pearson, Spearman) of G_i = ||dl_i/dh_i|| and of the token loss l_i with "
              "the true per-token gradient norm ||g_i||, and the coefficient of variation of ||g||.", "",
              "| state | CV of ‖g‖ | G vs ‖g‖ | loss vs ‖g‖ |", "|---|---:|---|---|"]
    for st in v["states"]:
        sig = st["arms"]["signal"]
        parts.append(f"| {st['steps']} | {sig['norm_cv']:.3f} | {sig['signal'][0]:.2f}, {sig['signal'][1]:.2f} | "
                     f"{sig['token_loss'][0]:.2f}, {sig['token_loss'][1]:.2f} |")
    parts += ["", f"Fully explored, compute-fair: {s['fair_rows']} encoder rows per step in every arm; gradient variance "
              f"(trace) of the step's mean-loss gradient over {s['data_batches']} data batches x {s['masks']} masks, "
              "split into its mask part (same sequences, new masks) and its data part (new sequences). The data "
              f"part comes from {s['data_batches']} batch means: a rough estimate (fully-explored and random-k draw the "
              "same number of sequences, so their data parts estimate the same quantity; their gap is its noise).", "",
              "| state | arm | sequences x masks | mask variance | data variance | total | total / random |",
              "|---|---|---|---:|---:|---:|---:|"]
    for st in v["states"]:
        fair = st["fair"]
        for arm in variance.FAIR_ARMS:
            f = fair[arm]
            parts.append(f"| {st['steps']} | {arm} | {f['sequences']} x {f['encoder_rows'] // f['sequences']} | "
                         f"{f['mask_variance']:.4g} | {f['data_variance']:.4g} | {f['total_variance']:.4g} | "
                         f"{f['total_variance'] / fair['random']['total_variance']:.2f} |")
    parts += ["", "Verdicts, as measured (tiny model, CPU scale):", ""]
    for st in v["states"]:
        arms, fair = st["arms"], st["fair"]
        mapnet = "; ".join(f"MAPNet {o}: {_compare(arms[f'mapnet-{o}']['mse_ratio'])}" for o in variance.OBJECTIVES)
        fe_vs_k = fair["fully-explored"]["mask_variance"] / fair["random-k"]["mask_variance"]
        fe_vs_random = fair["fully-explored"]["total_variance"] / fair["random"]["total_variance"]
        parts.append(
            f"- after {st['steps']} steps (eval loss {st['eval_loss']:.3f}): the per-token gradient norms vary with CV "
            f"{arms['signal']['norm_cv']:.3f}, so no proposal can do better than {arms['signal']['ceiling']:.3f} of "
            f"uniform's variance per token; the oracle is {_compare(arms['oracle']['mse_ratio'])}, the proxy oracle "
            f"{_compare(arms['proxy']['mse_ratio'])}; {mapnet}. Fully explored's mask variance is {fe_vs_k:.2f}x that "
            f"of K random masks of the same sequences (paper 1's mechanism), and its total variance at equal encoder "
            f"rows is {fe_vs_random:.2f}x random masking's (fewer distinct sequences).")
    return parts + [""]


def _convergence_section(cv: dict, rel: str) -> list[str]:
    s, c = cv["setup"], cv["setup"]["config"]
    parts = [
        "## Convergence at equal compute", "",
        f"Setup (`fastmask experiment convergence`): preset `{c['preset']}`, {s['steps']} steps of {s['rows']} encoder "
        f"rows each for every arm (equal compute; labelled tokens per step: {c['mlm_probability']:.0%} of each "
        f"row's maskable tokens for random, random-k and MAPNet, 1/K = {1 / c['num_segments']:.1%} for fully explored, "
        f"whose K views partition each sequence): random "
        f"({s['rows']} sequences x 1 mask), fully-explored ({s['rows'] // c['num_segments']} sequences x "
        f"K = {c['num_segments']} views), random-k (the same sequences x K random masks), and MAPNet ({s['rows']} "
        f"sequences, systematic sampling) with each objective. {s['seeds']} seeds per arm (initialisation, data order "
        f"and masks). Learning rate per compute-fair arm from a sweep over {', '.join(f'{lr:g}' for lr in s['lrs'])} "
        f"({s['sweep_steps']} steps, seed {c['seed']}); MAPNet arms use random's. Eval loss always on the same plain "
        f"random masks. The corpus's unigram entropy (token frequencies alone) is {cv['unigram_entropy']:.3f} nats.", "",
        f"![eval loss against steps and training time]({rel}/convergence.png)", "",
        "| arm | lr | final eval loss, mean ± sd (per seed) | below unigram entropy | steps to random's final loss "
        "| training s / random's |",
        "|---|---:|---|---:|---|---:|"]
    seconds = convergence.arm_summary(cv, "random")["seconds"]
    for arm in convergence.ARMS:
        summary = convergence.arm_summary(cv, arm)
        steps = [cv["steps_to_target"][key] for key in cv["runs"] if key.split("/")[0] == arm]
        parts.append(f"| {arm} | {cv['lr'][arm]:g} | {summary['mean']:.4f} ± {summary['sd']:.4f} "
                     f"({', '.join(f'{x:.4f}' for x in summary['finals'])}) | "
                     f"{cv['unigram_entropy'] - summary['mean']:.3f} | "
                     f"{', '.join(str(x) if x else 'not reached' for x in steps)} | "
                     f"{summary['seconds'] / seconds:.2f} |")
    parts += ["", "Training seconds: the logged windows' tokens over their measured speed (evaluation excluded), "
              "mean over seeds, on this machine; the step column is the compute-fair axis.", "",
              "Verdicts, as measured (tiny model, CPU scale; difference of mean final eval loss from random "
              "masking's with its Welch 95% interval over seeds):", ""]

    def verdict(arm: str, baseline: str, baseline_name: str, condition: str) -> str:
        a, b = convergence.arm_summary(cv, arm), convergence.arm_summary(cv, baseline)
        diff, low, high = difference_ci(a["finals"], b["finals"])
        reading = "lower than" if high < 0 else "higher than" if low > 0 else "not distinguishable from"
        return (f"- {arm}: final eval loss {a['mean']:.4f} vs {baseline_name} {b['mean']:.4f}, difference "
                f"{diff:+.4f} [{low:+.4f}, {high:+.4f}]: {reading} {baseline_name} {condition}.")

    parts += [verdict(arm, "random", "random masking's", "at equal encoder rows per step")
              for arm in convergence.ARMS[1:]]
    parts.append(verdict("fully-explored", "random-k", "random-k's",
                         "(the same number of sequences and masks per step: K disjoint views against K independent "
                         "masks)"))
    return parts + [""]


def write_doc(out: str, doc: str) -> None:
    """`doc` from every result JSON present in `out`."""
    rel = os.path.relpath(out, os.path.dirname(os.path.abspath(doc)))
    parts = ["# Experiments: does a masking scheme make pretraining cheaper?", "",
             "Generated by `fastmask experiment variance|convergence` (fastmask/experiments/) from the JSON",
             f"results in `{out}`. Rerun with your own model and data: `--preset`, `--corpus`, and the flags",
             "of each command (`fastmask experiment variance --help`). CPU-sized defaults: a tiny model on a",
             "small corpus says little about BERT-base scale; the same commands scale up on a GPU", "(`--preset small|base`, more states, steps and seeds).", ""]
    for name, command, section in (("variance.json", "variance", _variance_section),
                                   ("convergence.json", "convergence", lambda r: _convergence_section(r, rel))):
        path = os.path.join(out, name)
        results = None
        if os.path.exists(path):
            with open(path) as f:
                results = json.load(f)
        if results and (name != "convergence.json" or "target" in results):  # a finished convergence run
            parts += section(results)
        else:
            parts += [f"`fastmask experiment {command}`: no results in `{out}` yet.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(doc)), exist_ok=True)
    with open(doc, "w") as f:
        f.write("\n".join(parts))
