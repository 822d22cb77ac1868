"""What every experiment shares: configurations, the model at a checkpoint, gradients of the MLM
loss for given masks, and the statistics (variance from Gram matrices, bootstrap and t intervals,
correlations)."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import torch

import fastmask
from fastmask.mapnet import OBJECTIVES
from fastmask.train import Config
from fastmask.train.model import Pretrainer
from fastmask.train.run_folder import load_checkpoint

# Philox seeds of the measurements: every arm masks with its own seed (+ an offset), the repeat as its epoch.
ARM_SEEDS = dict(reference=1_000_003, uniform=2_000_029, oracle=3_000_017, proxy=4_000_037, mapnet=5_000_011,
               views=6_000_011, fully_explored=7_000_003, random_k=8_000_009, random=9_000_011)


# The arms, as the MaskingConfig fields each changes (arm_masking); every other field is the run's.
FAIR_ARMS = ("random", "fully-explored", "random-k")  # equal encoder rows per step (compute-fair)
MAPNET_ARMS = tuple(f"mapnet-{objective}" for objective in OBJECTIVES)


def arm_masking(arm: str, k: int) -> dict:
    """The MaskingConfig fields of an arm: random (one exact-count mask), fully-explored (K views),
    random-k (K independent random masks of each row), mapnet-<objective>."""
    if arm == "random-k":
        return dict(masking="random", masks_per_row=k)
    if arm in MAPNET_ARMS:
        return dict(masking="mapnet", mapnet_objective=arm.removeprefix("mapnet-"))
    if arm in FAIR_ARMS:
        return dict(masking=arm, masks_per_row=1)
    raise ValueError(f"unknown arm {arm!r}: one of {FAIR_ARMS + MAPNET_ARMS}")


def arm_config(cfg: Config, arm: str) -> fastmask.MaskingConfig:
    """The run's MaskingConfig with the arm's fields (K: the run's num_segments)."""
    return dataclasses.replace(cfg.masking_config(), **arm_masking(arm, cfg.num_segments))


def experiment_config(args, masking: str, seed: int | None = None, **overrides) -> Config:
    """The runs' configuration; `overwrite`: the work folder holds this experiment's own runs,
    regenerated on every run of it."""
    cfg = Config(preset=args.preset, corpus=args.corpus, masking=masking, seed=args.seed if seed is None else seed,
                 cache_dir=args.cache_dir, progress=False, overwrite=True, **overrides)
    return cfg.resolved()


def load_state(cfg: Config, checkpoint: str | None):
    """(model in eval mode, prepared data) at initialisation (seeded by cfg.seed) or from a checkpoint."""
    from fastmask import data

    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=False)
    torch.manual_seed(cfg.seed)
    model = Pretrainer(cfg, prepared.tokenizer)
    if checkpoint:
        model.load_state_dict(load_checkpoint(checkpoint, cfg)["model"])
    return model.eval(), prepared  # eval: no dropout, so the masks are the only randomness


class GradientProbe:
    """Flattened gradients (float64) of the MLM loss of a fixed model on fixed rows, for given masks."""

    def __init__(self, model: Pretrainer, rows: torch.Tensor):
        self.model, self.rows = model, rows.long()
        self.params = [p for p in model.mlm.parameters() if p.requires_grad]
        self.maskable = fastmask.maskable_mask(self.rows, special_ids=model.masking.special_ids)
        cfg = model.cfg
        self.k = fastmask.masked_count(self.maskable.sum(1), cfg.mlm_probability)
        # Slots for an exact-count (or systematic / top-k proposal) mask and for a fully-explored view.
        length = rows.shape[1]
        self.capacity = max(fastmask.gather_capacity(length, cfg.mlm_probability),
                            fastmask.gather_capacity(length, num_segments=cfg.num_segments))

    def grad(self, input_ids, labels, weights=None) -> torch.Tensor:
        hidden = self.model.mlm.bert(input_ids=input_ids)[0]
        loss = fastmask.sparse_mlm_loss(hidden, labels, self.model.mlm.cls, capacity=self.capacity, weights=weights)
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, self.params)]).double()

    def mask(self, seed: int, repeat: int = 0, rows: torch.Tensor | None = None):
        """An exact-count random mask (ids, labels) of `rows` (default: the probe's), keyed by `seed`
        and the arm's `repeat` index (the ops' epoch)."""
        masking = self.model.masking
        rows = self.rows if rows is None else rows
        maskable = fastmask.maskable_mask(rows, special_ids=masking.special_ids)
        return fastmask.mask_tokens(rows, maskable, masking.mask_token_id, masking.vocab_size,
                                    self.model.cfg.mlm_probability, exact_count=True, seed=seed, epoch=repeat)

    def propose(self, scores: torch.Tensor, uniform_mix: float, seed: int, repeat: int) -> fastmask.ProposalBatch:
        """A proposal draw from `scores`, keyed by `seed` and the arm's `repeat` index (the ops' epoch)."""
        masking = self.model.masking
        return fastmask.proposal_mask(self.rows, scores, self.maskable, masking.mask_token_id, masking.vocab_size,
                                      self.model.cfg.mlm_probability, uniform_mix, seed=seed, epoch=repeat)


def total_variance(gram: torch.Tensor, rows: torch.Tensor) -> float:
    """Trace of the covariance (unbiased) of the estimates `rows` index, from their Gram matrix:
    sum ||g_i - mean||^2 = sum G_ii - sum_ij G_ij / R. Resampling then costs O(R^2), not O(R P)."""
    sub = gram[rows][:, rows]
    return ((sub.diagonal().sum() - sub.sum() / len(rows)) / (len(rows) - 1)).item()


def ratio_ci(a: torch.Tensor, b: torch.Tensor, draws: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Variance ratio var(a) / var(b) of two sets of estimates (R, P), and a bootstrap 95% interval."""
    gram_a, gram_b = a @ a.T, b @ b.T
    g = torch.Generator().manual_seed(seed)
    ratios = []
    for _ in range(draws):
        denominator = total_variance(gram_b, torch.randint(len(b), (len(b),), generator=g))
        numerator = total_variance(gram_a, torch.randint(len(a), (len(a),), generator=g))
        if denominator > 0:  # a resample of one repeated row has no variance
            ratios.append(numerator / denominator)
    ratios = torch.tensor(ratios)
    point = total_variance(gram_a, torch.arange(len(a))) / total_variance(gram_b, torch.arange(len(b)))
    return point, torch.quantile(ratios, 0.025).item(), torch.quantile(ratios, 0.975).item()


# Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom (then the normal's 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    """Student's t 97.5% quantile at `df` degrees of freedom (the normal's beyond the table)."""
    return _T975[df - 1] if df <= len(_T975) else 1.96


def geometric_ci(ratios) -> tuple[float, float, float]:
    """Geometric mean of positive ratios (one per batch) and its t-based 95% interval (on the logs)."""
    logs = torch.tensor([math.log(r) for r in ratios], dtype=torch.float64)
    mean = logs.mean().item()
    if len(logs) < 2:
        return math.exp(mean), math.exp(mean), math.exp(mean)
    half = _t975(len(logs) - 1) * logs.std().item() / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def difference_ci(a, b) -> tuple[float, float, float]:
    """mean(a) - mean(b) of two independent samples (one value per seed) and its Welch 95% interval
    (Welch-Satterthwaite degrees of freedom, rounded down)."""
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    diff = (a.mean() - b.mean()).item()
    if len(a) < 2 or len(b) < 2:
        return diff, diff, diff
    va, vb = a.var().item() / len(a), b.var().item() / len(b)
    if va + vb == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    half = _t975(max(1, int(df))) * math.sqrt(va + vb)
    return diff, diff - half, diff + half


def correlations(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(Pearson, Spearman) correlation of two 1-D samples."""
    def pearson(a, b):
        a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
        return (a @ b / (a.norm() * b.norm()).clamp(min=1e-300)).item()

    def ranks(a):
        return a.argsort().argsort()

    return pearson(x, y), pearson(ranks(x), ranks(y))


def save(out: str, name: str, results: dict) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        json.dump(results, f, indent=1)


def setup_of(cfg: Config, **extra) -> dict:
    return dict(config=dataclasses.asdict(cfg), **extra)
