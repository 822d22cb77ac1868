"""``fastmask pretrain``: a compact BERT masked-language-model pretraining loop.

Read top to bottom: configuration, model, masking strategies, evaluation, checkpoints, the loop.
One process trains on a CPU or a GPU; under torchrun every rank trains on its own shard with
DDP (nccl on GPUs, gloo on CPUs). Masks are made on the training device by fastmask's ops inside
the step, keyed by (seed, epoch, global sample id): they do not depend on the number of ranks.
``--baseline hf`` trains the same model the way most users do today (Hugging Face's collator on
the CPU, ``BertForMaskedLM``'s dense head), on the same data, for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, fields

import torch
import torch.distributed as dist
from torch import nn

import fastmask
from fastmask import baselines, data
from fastmask.strategy import STRATEGIES, MaskingStrategy


# width, layers, heads, ffn, seq_len, vocab, batch, steps, lr
PRESETS = {
    "tiny": dict(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, seq_len=128, vocab_size=4096,
                 batch_size=32, steps=600, lr=1e-3),
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, seq_len=128, vocab_size=16384,
                  batch_size=64, steps=5000, lr=5e-4),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, seq_len=128, vocab_size=30522,
                 batch_size=256, steps=100_000, lr=1e-4),
}


@dataclass
class Config:
    """Every field is a command-line flag (``--field value``); None takes the preset's value."""

    preset: str = "tiny"
    corpus: str | None = None  # text file, directory or JSONL; None: the built-in corpus
    tokenizer: str | None = None  # a local Hugging Face tokenizer directory; None: train WordPiece
    out: str = "runs/pretrain"
    masking: str = "random"  # random (exact count) | bernoulli | fully-explored | mapnet
    baseline: str | None = None  # "hf": HF collator on the CPU + BertForMaskedLM's dense head
    # model (None: from the preset)
    hidden_size: int | None = None
    num_layers: int | None = None
    num_heads: int | None = None
    intermediate_size: int | None = None
    seq_len: int | None = None
    vocab_size: int | None = None
    # masking
    mlm_probability: float = 0.15
    num_segments: int | None = None  # fully-explored K; None: round(1 / mlm_probability)
    mapnet_layers: int = 2
    mapnet_hidden: int | None = None  # None: a quarter of hidden_size
    mapnet_weight: float = 0.1  # lambda of the REINFORCE objective
    uniform_mix: float = 0.1
    weighting: str = "token"  # token | sequence
    # optimisation
    batch_size: int | None = None  # sequences per rank per micro-step
    grad_accum: int = 1
    steps: int | None = None
    lr: float | None = None
    warmup: int | None = None  # None: 5% of the steps
    weight_decay: float = 0.01
    clip: float = 1.0
    compile: bool = False
    # bookkeeping
    eval_interval: int = 100
    eval_batches: int = 8
    eval_fraction: float = 0.02
    log_interval: int = 10
    checkpoint_interval: int = 100
    resume: bool = False
    seed: int = 0
    device: str = "auto"
    cache_dir: str | None = None
    progress: bool = True
    sync_debug: bool = False  # GPU: torch.cuda.set_sync_debug_mode("error") outside logging steps

    def resolved(self) -> "Config":
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        values = {k: (PRESETS[self.preset].get(k) if v is None and k in PRESETS[self.preset] else v)
                  for k, v in dataclasses.asdict(self).items()}
        cfg = Config(**values)
        if cfg.num_segments is None:
            cfg.num_segments = max(1, round(1 / cfg.mlm_probability)) if cfg.mlm_probability > 0 else 1
        if cfg.mapnet_hidden is None:
            cfg.mapnet_hidden = max(cfg.mapnet_layers, cfg.hidden_size // 4)
        if cfg.warmup is None:
            cfg.warmup = max(1, cfg.steps // 20)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        checks = [
            (self.masking in STRATEGIES, f"--masking must be one of {STRATEGIES}, got {self.masking!r}"),
            (self.baseline in (None, "hf"), f"--baseline must be 'hf' if given, got {self.baseline!r}"),
            (self.baseline is None or self.masking == "random",
             "--baseline hf uses the Hugging Face collator's own masking: leave --masking at its default"),
            (0 < self.mlm_probability < 1, f"--mlm-probability must be in (0, 1), got {self.mlm_probability}"),
            (self.weighting in ("token", "sequence"), f"--weighting must be token or sequence, got {self.weighting!r}"),
            (0 <= self.uniform_mix <= 1, f"--uniform-mix must be in [0, 1], got {self.uniform_mix}"),
            (self.hidden_size % self.num_heads == 0,
             f"--hidden-size {self.hidden_size} must be divisible by --num-heads {self.num_heads}"),
            (self.mapnet_hidden % 2 == 0, f"--mapnet-hidden must be even (2 heads), got {self.mapnet_hidden}"),
            (self.seq_len >= 8, f"--seq-len must be at least 8, got {self.seq_len}"),
        ]
        for name in ("batch_size", "grad_accum", "steps", "eval_interval", "eval_batches", "log_interval",
                     "checkpoint_interval", "num_segments", "hidden_size", "num_layers", "num_heads",
                     "intermediate_size", "vocab_size", "mapnet_layers"):
            checks.append((getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"))
        checks += [(self.lr > 0, f"--lr must be > 0, got {self.lr}"), (self.clip > 0, f"--clip must be > 0, got {self.clip}"),
                   (0 < self.eval_fraction < 1, f"--eval-fraction must be in (0, 1), got {self.eval_fraction}")]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# The fields that fix the model's shape: a checkpoint must agree on them to be resumed.
MODEL_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "seq_len", "vocab_size", "masking",
                "baseline", "mapnet_layers", "mapnet_hidden")


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="fastmask pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        kind = {"bool": None, "int | None": int, "float | None": float, "str | None": str}.get(str(f.type), None)
        if str(f.type) == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = kind or {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=f.default)
    return Config(**vars(parser.parse_args(argv)))


# --------------------------------------------------------------------------------------------
# The model: transformers' BERT encoder with fastmask's sparse MLM head, and MAPNet.


class Pretrainer(nn.Module):
    """One module computing the step's loss, so DDP sees every parameter in one forward."""

    def __init__(self, cfg: Config, tokenizer):
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        self.cfg = cfg
        config = BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.seq_len, pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa",
        )
        self.mlm = BertForMaskedLM(config)
        proposal = None
        if cfg.masking == "mapnet":
            proposal = fastmask.MaskProposalNet(
                self.mlm.bert.embeddings.word_embeddings, num_layers=cfg.mapnet_layers,
                hidden_size=cfg.mapnet_hidden, num_heads=2, max_len=cfg.seq_len,
            )
        self.masking = MaskingStrategy(
            cfg.masking, mask_token_id=tokenizer.mask_token_id, vocab_size=cfg.vocab_size,
            special_ids=[tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id],
            mlm_probability=cfg.mlm_probability, num_segments=cfg.num_segments, uniform_mix=cfg.uniform_mix,
            weighting=cfg.weighting, seed=cfg.seed, proposal=proposal)
        self.mask_seconds = 0.0  # time spent masking (CPU clock; GPU: events); MAPNet's scoring included
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    @contextlib.contextmanager
    def _timed(self):
        if torch.compiler.is_compiling():
            # Masking is fused into the compiled graph: nothing to time apart, and timing it would
            # break the graph (and recompile as the event list grows). Reported as null.
            yield
        elif self.masking.special_ids.is_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            t = time.perf_counter()
            yield
            self.mask_seconds += time.perf_counter() - t

    def take_mask_seconds(self) -> float:
        """Masking time since the last call (reads GPU events: call at log time only)."""
        seconds = self.mask_seconds + sum(s.elapsed_time(e) for s, e in self._events) / 1e3
        self.mask_seconds, self._events = 0.0, []
        return seconds

    def forward(self, ids: torch.Tensor, sample_ids: torch.Tensor, epoch: torch.Tensor,
                hf_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(MLM loss, MAPNet objective) of one micro-batch; ids are uncorrupted (B, L).

        `epoch` is a 0-dim int64 tensor on the device, read by the masking kernels: a compiled
        forward does not specialise on it (one graph for every epoch).

        With `hf_labels` (the baseline), ids are already masked and the dense head computes the loss.
        """
        if hf_labels is not None:
            return self.mlm(input_ids=ids, labels=hf_labels).loss, ids.new_zeros((), dtype=torch.float32)
        with self._timed():
            step = self.masking(ids, row_ids=sample_ids, epoch=epoch)
        losses = self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls)
        return losses.loss, losses.objective

    def eval_loss(self, ids: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """MLM loss under the strategies' common evaluation masks (plain random, fixed seed)."""
        step = self.masking.evaluation(ids, row_ids=sample_ids)
        return self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls).loss


# --------------------------------------------------------------------------------------------
# Data order: a per-epoch permutation of the training rows, each rank taking its own shard.


class Batches:
    """Micro-batch m of this rank, as (global sample ids, rows): a pure function of (seed, m)."""

    def __init__(self, rows: torch.Tensor, batch_size: int, seed: int, rank: int, world: int):
        self.rows, self.batch_size, self.seed, self.rank, self.world = rows, batch_size, seed, rank, world
        self.per_epoch = len(rows) // world // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"{len(rows)} training sequences are too few for --batch-size {batch_size} on {world} rank(s)")

    def __call__(self, micro_step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        epoch, offset = divmod(micro_step, self.per_epoch)
        order = torch.randperm(len(self.rows), generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        shard = order[self.rank::self.world]
        ids = shard[offset * self.batch_size:(offset + 1) * self.batch_size]
        return epoch, ids, self.rows[ids]


# --------------------------------------------------------------------------------------------
# Checkpoints: written atomically, refused with a clear message when they do not fit.


def save_checkpoint(path: str, state: dict) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, cfg: Config) -> dict:
    if not os.path.exists(path):
        raise ValueError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file: say so, whatever torch raised
        raise ValueError(f"--resume: cannot read the checkpoint {path}: {exc}") from exc
    saved = state.get("config", {})
    mismatched = [f"{k}: checkpoint {saved.get(k)!r}, now {getattr(cfg, k)!r}" for k in MODEL_FIELDS
                  if saved.get(k) != getattr(cfg, k)]
    if mismatched:
        raise ValueError(f"--resume: the checkpoint {path} does not match this run ({'; '.join(mismatched)})")
    return state


# --------------------------------------------------------------------------------------------
# The loop.


def _setup_distributed(cfg: Config) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device == "auto":
        kind = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        kind = cfg.device
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if kind == "cuda" else kind)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _hf_batch(collator, rows: torch.Tensor, device: torch.device):
    """The baseline's masking: Hugging Face's collator on CPU tensors, then a copy to the device."""
    out = collator.torch_mask_tokens(rows.long().clone(), special_tokens_mask=rows <= 3)
    return out[0].to(device, non_blocking=True), out[1].to(device, non_blocking=True)


class Interrupted(Exception):
    pass


def train(cfg: Config) -> dict:
    cfg = cfg.resolved()
    rank, world, device = _setup_distributed(cfg)
    try:
        return _train(cfg, rank, world, device)
    except BaseException as exc:
        traceback.clear_frames(exc.__traceback__)  # the failed run's locals, the DDP wrapper among them, go now
        raise
    finally:
        if world > 1:
            # The DDP wrapper's Reducer holds the process group. Collected here, while the group is still
            # registered, it is not the last holder: the group then dies in destroy_process_group, which
            # releases the GIL. Dying in the Reducer's destructor instead, the group would join its gloo
            # workers with the GIL held while a worker waits for the GIL to free a tensor: a hang at exit.
            gc.collect()
            dist.destroy_process_group()


def _train(cfg: Config, rank: int, world: int, device: torch.device) -> dict:
    main = rank == 0
    torch.manual_seed(cfg.seed)
    # Rank 0 prepares (and caches) the tokenizer and rows first: WordPiece training is not
    # deterministic across processes, so every other rank must load rank 0's cached result.
    if world > 1 and not main:
        dist.barrier()
    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=cfg.progress and main)
    if world > 1 and main:
        dist.barrier()
    if len(prepared.tokenizer) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(prepared.tokenizer)} tokens, above --vocab-size {cfg.vocab_size}")
    model = Pretrainer(cfg, prepared.tokenizer).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, (cfg.steps - s) / max(1, cfg.steps - cfg.warmup)))
    os.makedirs(cfg.out, exist_ok=True)
    checkpoint_path = os.path.join(cfg.out, "checkpoint.pt")
    metrics_path = os.path.join(cfg.out, "metrics.jsonl")
    step = 0
    if cfg.resume:
        state = load_checkpoint(checkpoint_path, cfg)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]  # the data position too: micro-batch m is a pure function of (seed, m)
    elif main and os.path.exists(metrics_path):
        os.remove(metrics_path)  # a fresh run starts a fresh log
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(trained) if cfg.compile else trained
    batches = Batches(prepared.train, cfg.batch_size, cfg.seed, rank, world)
    collator = None
    if cfg.baseline == "hf":
        collator = baselines.hf_collator(prepared.tokenizer, cfg.mlm_probability)
        collator.generator = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * world

    def checkpoint(at_step: int) -> None:
        if main:
            save_checkpoint(checkpoint_path, dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                                  schedule=schedule.state_dict(), rng=torch.get_rng_state(),
                                                  cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                                                  step=at_step, config=dataclasses.asdict(cfg)))

    def evaluate() -> float:
        model.eval()
        total = torch.zeros((), device=device)
        count = 0
        with torch.no_grad(), autocast:
            for start in range(0, min(len(prepared.eval), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
                rows = prepared.eval[start:start + cfg.batch_size].to(device)
                sample_ids = torch.arange(start, start + len(rows), device=device)
                total += model.eval_loss(rows, sample_ids).float()
                count += 1
        model.train()
        if world > 1:
            dist.all_reduce(total)
            count *= world
        return total.item() / max(1, count)

    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if main or world == 1 else {}
    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not (cfg.progress and main), desc="pretrain", unit="step")
    window_loss = torch.zeros((), device=device)
    epoch_tensor = torch.zeros((), dtype=torch.int64, device=device)
    window_start, window_steps, good_step, summary = time.perf_counter(), 0, step, {}
    first_step = step
    try:
        while step < cfg.steps:
            # Any host sync in the step itself raises under --sync-debug; logging steps may sync. With
            # --compile the first step compiles (Inductor syncs while compiling): checked from the
            # second, where a recompilation would raise too.
            if cfg.sync_debug and device.type == "cuda" and not (cfg.compile and step == first_step):
                torch.cuda.set_sync_debug_mode("error")
            for micro in range(cfg.grad_accum):
                epoch, sample_ids, rows = batches(step * cfg.grad_accum + micro)
                if collator is None:
                    ids, hf_labels = rows.to(device, non_blocking=True), None
                else:
                    start = time.perf_counter()  # the baseline's masking runs on the CPU
                    ids, hf_labels = _hf_batch(collator, rows, device)
                    model.mask_seconds += time.perf_counter() - start
                epoch_tensor.fill_(epoch)  # in place, no host sync: the kernels read it on the device
                with autocast:
                    loss, objective = forward(ids, sample_ids.to(device, non_blocking=True), epoch_tensor, hf_labels)
                (loss + cfg.mapnet_weight * objective).div(cfg.grad_accum).backward()
                window_loss += loss.detach().float() / cfg.grad_accum
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window_steps += 1
            bar.update(1)
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            if step % cfg.log_interval == 0 or step == cfg.steps:
                mean_loss = window_loss.item() / window_steps  # the one host sync, at log time
                if not math.isfinite(mean_loss):
                    raise FloatingPointError(
                        f"the training loss became {mean_loss} between steps {step - window_steps} and {step}; "
                        f"stopping. The last good checkpoint ({checkpoint_path}) is from step {good_step}.")
                elapsed = time.perf_counter() - window_start
                eval_loss = evaluate() if step % cfg.eval_interval == 0 or step == cfg.steps else None
                record = dict(step=step, tokens=step * tokens_per_step, loss=round(mean_loss, 5),
                              eval_loss=None if eval_loss is None else round(eval_loss, 5),
                              tokens_per_s=round(window_steps * tokens_per_step / elapsed, 1),
                              masking_share=None if cfg.compile else round(model.take_mask_seconds() / elapsed, 5),
                              lr=schedule.get_last_lr()[0],
                              dropped_labels=model.masking.take_dropped_labels())
                if record["dropped_labels"] and main:
                    bar.write(f"warning: {record['dropped_labels']} labelled tokens exceeded the gather capacity "
                              f"between steps {step - window_steps} and {step} and were left out of the loss", file=sys.stderr)
                if main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                summary = record
                window_loss.zero_()
                window_start, window_steps = time.perf_counter(), 0
                if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                    checkpoint(step)
                    good_step = step
            if stop["signal"] is not None:
                checkpoint(step)
                raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved to "
                                  f"{checkpoint_path} (continue with --resume)")
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if main:
        plot(metrics_path, os.path.join(cfg.out, "curves.png"))
    return summary


def plot(metrics_path: str, png_path: str) -> None:
    """Training and evaluation loss against steps, and throughput."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(metrics_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    if not rows:
        return
    fig, (ax_loss, ax_speed) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot([r["step"] for r in rows], [r["loss"] for r in rows], label="train loss")
    evals = [r for r in rows if r["eval_loss"] is not None]
    ax_loss.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="eval loss (random masks)")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("MLM loss")
    ax_loss.legend()
    ax_speed.plot([r["step"] for r in rows], [r["tokens_per_s"] for r in rows])
    ax_speed.set_xlabel("step")
    ax_speed.set_ylabel("tokens / s")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        summary = train(cfg)
    except (ValueError, FloatingPointError, Interrupted) as exc:
        print(f"fastmask pretrain: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, Interrupted) else 130
    if summary and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {summary['step']} steps, {summary['tokens']} tokens, train loss {summary['loss']:.4f}, "
              f"eval loss {summary['eval_loss']}, {summary['tokens_per_s']:.0f} tokens/s, "
              + ("" if summary["masking_share"] is None else f"masking {summary['masking_share']:.2%} of step time ")
              + f"-> {cfg.out}")
    return 0
