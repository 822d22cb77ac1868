"""fastmask experiment variance: how much gradient noise each masking scheme leaves, measured
as the mean squared error of one step's gradient estimate against the gradient it estimates.

States: the model after random-masking pretraining runs of several lengths (several loss levels,
the step-0 model included). At each state, for --batches fixed batches of training rows
(dropout off, so the masks are the only randomness):

* the reference gradient: the mean over --reference-masks exact-count uniform masks;
* per-token gradient norms ||g_i|| over every MLM parameter, each token masked once (the K
  fully-explored views of the batch), with MAPNet's signal G_i = ||dl_i / dh_i|| and the token
  loss l_i from the same passes; the variance ceiling 1 / (1 + CV^2) of ||g||;
* arms, one mask per estimate, --repeats estimates each, every arm on its own Philox seed:
  uniform (exact count); the oracle proposal q proportional to ||g||; the proxy oracle q
  proportional to G; a proposal net trained at that state (MLM frozen) with each MAPNet
  objective. Proposals sample systematically with token weights (unbiased). MSE ratio to
  uniform per batch, geometric mean over batches with a t interval; diagnostics per arm
  (Spearman of log q with log ||g||, E[sum w] / k, effective sample size / k, max n q).

Fully explored, compute-fair: at --fair-rows encoder rows per step, B sequences with one
random mask, B/K sequences with their K fully-explored views, B/K sequences with K random masks;
the gradient variance split into its mask part (same sequences, new masks) and its data part
(new sequences), over --data-batches x --masks estimates.
"""

from __future__ import annotations

import dataclasses
import os

import torch
from tqdm.auto import tqdm

import fastmask
from fastmask.experiments.common import (FAIR_ARMS, MAPNET_ARMS, ARM_SEEDS, GradientProbe, arm_config,
                                         correlations, experiment_config, geometric_ci, load_state, save, setup_of)
from fastmask.data import progress_bars
from fastmask.mapnet import OBJECTIVES
from fastmask.reference import IGNORE_INDEX
from fastmask.sparse import slot_cross_entropy
from fastmask.train import train

ARMS = ("uniform", "oracle", "proxy", *MAPNET_ARMS)


def token_gradients(probe: GradientProbe, seed: int, chunk: int = 32) -> dict[str, torch.Tensor]:
    """Per maskable position (B, L): ||g_i|| over every MLM parameter, the signal G_i and the loss
    l_i, with i masked in its fully-explored view (each token once, among the view's others)."""
    model, cfg = probe.model, probe.model.cfg
    views = fastmask.fully_explored_mask(probe.rows, probe.maskable, model.masking.mask_token_id,
                                         model.masking.vocab_size, cfg.num_segments, seed=seed)
    out = {name: torch.zeros(probe.rows.shape, dtype=torch.float64) for name in ("norm", "signal", "loss")}
    for view in range(cfg.num_segments):
        positions = fastmask.masked_positions(views.labels[view], probe.capacity)
        gathered = fastmask.gather_masked(model.mlm.bert(input_ids=views.input_ids[view])[0], positions.index)
        losses = slot_cross_entropy(model.mlm.cls(gathered), positions)
        signal = torch.autograd.grad(losses.sum(), gathered, retain_graph=True)[0].norm(dim=-1)
        slots = (positions.labels != IGNORE_INDEX).nonzero()
        for start in range(0, len(slots), chunk):
            part = slots[start:start + chunk]
            selector = torch.zeros(len(part), *losses.shape)
            selector[torch.arange(len(part)), part[:, 0], part[:, 1]] = 1
            grads = torch.autograd.grad(losses, probe.params, grad_outputs=selector, is_grads_batched=True,
                                        retain_graph=True)
            norms = torch.sqrt(sum(g.reshape(len(part), -1).double().pow(2).sum(1) for g in grads))
            rows, cols = part[:, 0], positions.index[part[:, 0], part[:, 1]]
            out["norm"][rows, cols] = norms
            out["signal"][rows, cols] = signal[part[:, 0], part[:, 1]].double()
            out["loss"][rows, cols] = losses[part[:, 0], part[:, 1]].detach().double()
    return out


def train_proposal(model, prepared, objective: str, args, seed: int) -> fastmask.MaskProposalNet:
    """A proposal net trained with `objective` against the frozen MLM of this state (``--proposal-steps``)."""
    cfg = model.cfg
    torch.manual_seed(seed)
    masking = arm_config(cfg, f"mapnet-{objective}")
    net = masking.proposal_net(model.mlm.bert.embeddings.word_embeddings, max_len=cfg.seq_len, dropout=0.0)
    strategy = model.masking.derived(masking, seed=seed + ARM_SEEDS["mapnet"], proposal=net)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.proposal_lr)
    frozen = [p for p in model.mlm.parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    try:
        for step in range(args.proposal_steps):
            sample_ids = torch.randint(len(prepared.train), (args.proposal_batch,), generator=g)
            masked = strategy(prepared.train[sample_ids, :args.length].long(), row_ids=sample_ids, epoch=step)
            with torch.no_grad():
                hidden = model.mlm.bert(input_ids=masked.input_ids)[0]
            losses = strategy.losses(masked, hidden, model.mlm.cls)
            optimizer.zero_grad()
            (losses.loss + losses.objective).backward()
            optimizer.step()
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return net.eval()


def _proposal_diagnostics(probe: GradientProbe, log_q: torch.Tensor, norms: torch.Tensor, draws) -> dict:
    m = probe.maskable
    n = m.sum(1).double()
    k = probe.k.double()
    weight_sums = torch.stack([d.weights.double().sum(1) for d in draws])  # (R, B)
    weight_squares = torch.stack([d.weights.double().pow(2).sum(1) for d in draws])
    return dict(
        spearman_log_q_log_norm=correlations(log_q[m], norms[m].log())[1],
        weight_sum_over_k=(weight_sums / k).mean().item(),
        ess_over_k=(weight_sums.pow(2) / weight_squares.clamp(min=1e-300) / k).mean().item(),
        max_n_q=(log_q.exp().double() * n[:, None]).max().item(),
    )


def probe_batches(prepared, args) -> list[torch.Tensor]:
    """The fixed probe batches: distinct training rows (the same at every state), ``--length`` prefixes."""
    needed = args.batches * args.batch
    if len(prepared.train) < needed:
        raise ValueError(f"the corpus has {len(prepared.train)} training rows, fewer than --batches x --batch = {needed}")
    order = torch.randperm(len(prepared.train), generator=torch.Generator().manual_seed(args.seed))[:needed]
    return list(prepared.train[order, :args.length].view(args.batches, args.batch, -1).unbind(0))


def measure_mse(model, prepared, proposals: dict, args, state_seed: int) -> dict:
    """Per batch: the MSE of every arm's one-mask estimate against the reference gradient."""
    cfg = model.cfg
    per_batch, signal_stats = [], []
    for b, rows in enumerate(tqdm(probe_batches(prepared, args), desc="batches", leave=False,
                                  disable=not progress_bars(args.progress))):
        probe = GradientProbe(model, rows)
        tokens = token_gradients(probe, ARM_SEEDS["views"] + state_seed + b)
        m = probe.maskable
        norms = tokens["norm"]
        cv = (norms[m].std() / norms[m].mean()).item()
        signal_stats.append(dict(norm_cv=cv, ceiling=1 / (1 + cv * cv),
                                 signal=correlations(tokens["signal"][m], norms[m]),
                                 token_loss=correlations(tokens["loss"][m], norms[m])))
        reference = sum(probe.grad(*probe.mask(ARM_SEEDS["reference"] + state_seed + b, repeat=r))
                        for r in range(args.reference_masks)) / args.reference_masks
        proposal_scores = {
            "oracle": (torch.where(m, norms.clamp(min=1e-30).log(), 0.0).float(), 0.0),
            "proxy": (torch.where(m, tokens["signal"].clamp(min=1e-30).log(), 0.0).float(), 0.0),
        }
        with torch.no_grad():
            for objective, net in proposals.items():
                proposal_scores[f"mapnet-{objective}"] = (net(probe.rows), cfg.uniform_mix)
        results = {}
        errors = []
        for r in range(args.repeats):
            errors.append((probe.grad(*probe.mask(ARM_SEEDS["uniform"] + state_seed + b, repeat=r)) - reference)
                          .pow(2).sum().item())
        results["uniform"] = dict(mse=sum(errors) / len(errors))
        for arm, (scores, uniform_mix) in proposal_scores.items():
            seed = ARM_SEEDS["mapnet" if arm.startswith("mapnet") else arm] + 97 * ARMS.index(arm) + state_seed + b
            draws = [probe.propose(scores, uniform_mix, seed, r) for r in range(args.repeats)]
            errors = [(probe.grad(d.input_ids, d.labels, d.weights) - reference).pow(2).sum().item() for d in draws]
            log_q = fastmask.proposal_log_q(scores, m, uniform_mix)
            results[arm] = dict(mse=sum(errors) / len(errors), **_proposal_diagnostics(probe, log_q, norms, draws))
        per_batch.append(results)
    out = {"signal": {key: _mean([s[key] for s in signal_stats]) for key in signal_stats[0]}}
    for arm in per_batch[0]:
        row = dict(mse_ratio=geometric_ci([r[arm]["mse"] / r["uniform"]["mse"] for r in per_batch]))
        row.update({key: _mean([r[arm][key] for r in per_batch]) for key in per_batch[0][arm] if key != "mse"})
        out[arm] = row
    return out


def _mean(values):
    if isinstance(values[0], (tuple, list)):
        return [sum(v[i] for v in values) / len(values) for i in range(len(values[0]))]
    return sum(values) / len(values)


def measure_fair_split(model, prepared, args, state_seed: int) -> dict:
    """The three compute-fair arms at ``--fair-rows`` encoder rows: variance of the mean-loss
    gradient split into mask variance (E over data of the variance over masks) and data variance."""
    cfg = model.cfg
    k = cfg.num_segments
    sequences = dict(random=args.fair_rows, **{"fully-explored": args.fair_rows // k, "random-k": args.fair_rows // k})
    g = torch.Generator().manual_seed(state_seed)
    probe = GradientProbe(model, prepared.eval[:1])  # its parameters and gradient function
    out = {}
    for arm in FAIR_ARMS:
        strategy = model.masking.derived(arm_config(cfg, arm), seed=ARM_SEEDS[arm.replace("-", "_")] + state_seed)
        means, within = [], []
        for d in range(args.data_batches):
            sample_ids = torch.randint(len(prepared.train), (sequences[arm],), generator=g)
            rows = prepared.train[sample_ids].long()
            grads = []
            for mask in range(args.masks):
                step = strategy(rows, row_ids=sample_ids, epoch=mask)
                grads.append(probe.grad(step.input_ids, step.labels))
            stacked = torch.stack(grads)
            mean = stacked.mean(0)
            within.append((stacked - mean).pow(2).sum(1).sum().item() / (args.masks - 1))
            means.append(mean)
        mask_variance = sum(within) / len(within)
        stacked = torch.stack(means)
        between = (stacked - stacked.mean(0)).pow(2).sum(1).sum().item() / (args.data_batches - 1)
        data_variance = max(between - mask_variance / args.masks, 0.0)
        out[arm] = dict(sequences=sequences[arm], encoder_rows=sequences[arm] * (1 if arm == "random" else k),
                        mask_variance=mask_variance, data_variance=data_variance,
                        total_variance=mask_variance + data_variance)
    return out


def run_variance(args) -> dict:
    base = experiment_config(args, masking="random")
    results = dict(setup=setup_of(base, **{key: getattr(args, key) for key in (
        "state_steps", "batches", "batch", "length", "reference_masks", "repeats", "proposal_steps", "proposal_lr",
        "proposal_batch", "fair_rows", "data_batches", "masks", "seed")}), states=[])
    states = tqdm(args.state_steps, desc="states", disable=not progress_bars(args.progress))
    for index, steps in enumerate(states):
        checkpoint = None
        if steps:
            cfg = dataclasses.replace(base, steps=steps, eval_interval=steps, checkpoint_interval=steps,
                                      out=os.path.join(args.work, "variance", f"random-{steps}-steps"))
            train(cfg)
            checkpoint = os.path.join(cfg.out, "checkpoint.pt")
        model, prepared = load_state(base, None) if checkpoint is None else load_state(
            dataclasses.replace(base, steps=steps).resolved(), checkpoint)
        with torch.no_grad():  # the state's loss level: the evaluation masks on the held-out rows
            eval_loss = model.eval_loss(prepared.eval[:].long(), torch.arange(len(prepared.eval))).item()
        state_seed = 10_007 * index
        proposals = {objective: train_proposal(model, prepared, objective, args, args.seed + state_seed)
                     for objective in OBJECTIVES}
        state = dict(steps=steps, eval_loss=eval_loss, arms=measure_mse(model, prepared, proposals, args, state_seed),
                     fair=measure_fair_split(model, prepared, args, state_seed))
        results["states"].append(state)
        save(args.out, "variance.json", results)  # after every state: a long run keeps what it measured
    return results


def add_arguments(parser) -> None:
    parser.add_argument("--state-steps", type=lambda s: [int(x) for x in s.split(",")], default=[0, 150, 600],
                        help="random-masking pretraining steps of each measured state (comma-separated)")
    parser.add_argument("--batches", type=int, default=5, help="probe batches per state")
    parser.add_argument("--batch", type=int, default=4, help="sequences per probe batch")
    parser.add_argument("--length", type=int, default=64, help="tokens per probe sequence (a prefix of the row)")
    parser.add_argument("--reference-masks", type=int, default=128, help="uniform masks averaged for the reference")
    parser.add_argument("--repeats", type=int, default=32, help="one-mask estimates per arm and batch")
    parser.add_argument("--proposal-steps", type=int, default=150, help="proposal training steps per objective")
    parser.add_argument("--proposal-lr", type=float, default=1e-3)
    parser.add_argument("--proposal-batch", type=int, default=16)
    parser.add_argument("--fair-rows", type=int, default=28, help="encoder rows per step of the compute-fair arms")
    parser.add_argument("--data-batches", type=int, default=6, help="compute-fair split: data batches")
    parser.add_argument("--masks", type=int, default=6, help="compute-fair split: masks per data batch")
