"""``fastmask pretrain``: the training loop, top to bottom.

One process trains on a CPU or a GPU; under torchrun every rank trains on its own shard with
DDP (nccl on GPUs, gloo on CPUs). Masks are made on the training device inside the step, keyed
by (seed, data epoch, global sample id): the data epoch is the masks' epoch (the ops' mask
counter), so they do not depend on the number of ranks. ``--masking hf``
(the baseline) trains the same model the way most users do today (Hugging Face's collator on the CPU,
``BertForMaskedLM``'s dense head), on the same data, for comparison.
"""

from __future__ import annotations

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

import torch
import torch.distributed as dist
from torch import nn

from fastmask import baselines, data
from fastmask.train.config import HF_BASELINE, Config, parse_args
from fastmask.train.model import Pretrainer
from fastmask.train.run_folder import (
    CHECKPOINT,
    EXPORT_DIR,
    TOKENIZER_DIR,
    export_model,
    load_checkpoint,
    plot,
    run_folder,
    save_checkpoint,
    write_run_records,
)


class Batches:
    """Micro-batch m of this rank, as (data epoch, global sample ids, rows): a pure function of (seed, m)."""

    def __init__(self, rows: torch.Tensor, batch_size: int, seed: int, rank: int, world: int):
        self.rows, self.batch_size, self.seed, self.rank, self.world = rows, batch_size, seed, rank, world
        self.per_epoch = len(rows) // world // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"{len(rows)} training sequences are too few for --batch-size {batch_size} on {world} rank(s)")

    def __call__(self, micro_step: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        data_epoch, offset = divmod(micro_step, self.per_epoch)
        shuffle = torch.Generator().manual_seed(self.seed * 100_003 + data_epoch)
        order = torch.randperm(len(self.rows), generator=shuffle)
        shard = order[self.rank::self.world]
        ids = shard[offset * self.batch_size:(offset + 1) * self.batch_size]
        return data_epoch, ids, self.rows[ids]


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


def _hf_batch(collator, rows: torch.Tensor, special_ids: torch.Tensor, device: torch.device):
    """The baseline's masking: Hugging Face's collator on CPU tensors, then a copy to the device.
    `special_ids` (CPU) are those the fastmask path never masks: the tokenizer's special tokens."""
    out = collator.torch_mask_tokens(rows.long().clone(), special_tokens_mask=torch.isin(rows, special_ids))
    return out[0].to(device, non_blocking=True), out[1].to(device, non_blocking=True)


class Interrupted(Exception):
    pass


class MaskingTimer:
    """Time spent in the masking strategy's forward (fastmask's ops; MAPNet's scoring included),
    from hooks on the strategy module: CUDA events on a GPU, the CPU clock otherwise. Read at
    log time. Under torch.compile masking is fused into the graph: nothing is timed (null)."""

    def __init__(self, strategy: nn.Module, device: torch.device):
        self.cuda, self.seconds, self._events, self._start = device.type == "cuda", 0.0, [], None
        strategy.register_forward_pre_hook(self._before)
        strategy.register_forward_hook(self._after)

    def _before(self, module, args):
        if torch.compiler.is_compiling():
            return
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._start.record()
        else:
            self._start = time.perf_counter()

    def _after(self, module, args, output):
        if torch.compiler.is_compiling() or self._start is None:
            return
        if self.cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            self._events.append((self._start, end))
        else:
            self.seconds += time.perf_counter() - self._start
        self._start = None

    def take(self) -> float:
        """Masking seconds since the last call (reads GPU events: log time only)."""
        seconds = self.seconds + sum(s.elapsed_time(e) for s, e in self._events) / 1e3
        self.seconds, self._events = 0.0, []
        return seconds


def train(cfg: Config) -> dict:
    cfg = cfg.resolved()
    rank, world, device = _setup_distributed(cfg)
    try:
        with run_folder(cfg, rank == 0, world) as out:  # a run that fails before its first checkpoint leaves nothing
            return _train(dataclasses.replace(cfg, out=out), rank, world, device)
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
    if main:
        print(f"fastmask pretrain: output folder {cfg.out}", flush=True)
    torch.manual_seed(cfg.seed)

    # Data. A checkpoint is read (and checked) before the corpus: a bad one fails in seconds. Rank 0
    # prepares (and caches) the tokenizer and rows first; the other ranks then load them.
    state = load_checkpoint(os.path.join(cfg.out, CHECKPOINT), cfg) if cfg.resume else None
    stored_tokenizer = os.path.join(cfg.out, TOKENIZER_DIR)
    if cfg.resume and os.path.isdir(stored_tokenizer):
        cfg = dataclasses.replace(cfg, tokenizer=stored_tokenizer)  # the run's own vocabulary, whatever the cache holds
    if world > 1 and not main:
        dist.barrier()
    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=cfg.progress and main)
    if main and not cfg.resume:
        write_run_records(cfg, prepared.tokenizer, device)
    if world > 1 and main:
        dist.barrier()
    if len(prepared.tokenizer) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(prepared.tokenizer)} tokens, above --vocab-size {cfg.vocab_size}")
    batches = Batches(prepared.train, cfg.batch_size, cfg.seed, rank, world)
    passes = cfg.steps * cfg.grad_accum / batches.per_epoch
    if main and passes > 20:
        print(f"warning: {len(prepared.train)} training sequences: {cfg.steps} steps read them {passes:.0f} times over "
              "(a small corpus overfits; give a larger --corpus or fewer --steps)", file=sys.stderr, flush=True)

    # Model, optimizer, schedule; the state of a resumed run.
    model = Pretrainer(cfg, prepared.tokenizer).to(device)
    timer = MaskingTimer(model.masking, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, (cfg.steps - s) / max(1, cfg.steps - cfg.warmup)))
    step = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]  # the data position too: micro-batch m is a pure function of (seed, m)
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(trained) if cfg.compile else trained
    to_device = _batch_transfer(cfg, prepared.tokenizer, model, rank, device, timer)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def checkpoint(at_step: int) -> None:
        if main:
            save_checkpoint(os.path.join(cfg.out, CHECKPOINT), dict(
                model=model.state_dict(), optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                step=at_step, config=dataclasses.asdict(cfg)))
            export_model(model, prepared.tokenizer, os.path.join(cfg.out, EXPORT_DIR))

    # The loop: micro-steps, an optimizer step; at log steps the loss is read (the one host sync),
    # evaluated, logged and checkpointed.
    progress = Progress(cfg, main, world, step, device, model)
    window_loss = torch.zeros((), device=device)
    data_epoch_tensor = torch.zeros((), dtype=torch.int64, device=device)
    first_step, good_step = step, step
    with _stop_on_signals(main or world == 1) as stop, progress:
        while step < cfg.steps:
            # Any host sync in the step itself raises under --sync-debug; logging steps may sync. With
            # --compile the first step compiles (Inductor syncs while compiling): checked from the
            # second, where a recompilation would raise too.
            if cfg.sync_debug and device.type == "cuda" and not (cfg.compile and step == first_step):
                torch.cuda.set_sync_debug_mode("error")
            for micro in range(cfg.grad_accum):
                data_epoch, sample_ids, rows = batches(step * cfg.grad_accum + micro)
                ids, hf_labels = to_device(rows)
                data_epoch_tensor.fill_(data_epoch)  # in place, no host sync: the kernels read it on the device
                with autocast:
                    loss, objective = forward(ids, sample_ids.to(device, non_blocking=True), data_epoch_tensor,
                                              hf_labels)
                (loss + cfg.mapnet_weight * objective).div(cfg.grad_accum).backward()
                window_loss += loss.detach().float() / cfg.grad_accum
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.stepped()
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            if step % cfg.log_interval == 0 or step == cfg.steps:
                mean_loss = window_loss.item() / progress.window_steps  # the one host sync, at log time
                if not math.isfinite(mean_loss):
                    kept = (f"The last good checkpoint ({os.path.join(cfg.out, CHECKPOINT)}) is from step {good_step}."
                            if good_step > 0 else "There is no checkpoint yet: the run leaves nothing behind.")
                    raise FloatingPointError(f"the training loss became {mean_loss} between steps "
                                             f"{step - progress.window_steps} and {step}; stopping. {kept}")
                evaluated = step % cfg.eval_interval == 0 or step == cfg.steps
                eval_loss = evaluate(model, prepared.eval, cfg, device, world, autocast) if evaluated else None
                progress.log(step, mean_loss, eval_loss, timer, schedule.get_last_lr()[0])
                window_loss.zero_()
                if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                    checkpoint(step)
                    good_step = step
            if stop["signal"] is not None:
                checkpoint(step)
                raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved to "
                                  f"{os.path.join(cfg.out, CHECKPOINT)} (continue with --resume)")
    return {**progress.summary, "out": cfg.out}


def _batch_transfer(cfg: Config, tokenizer, model: Pretrainer, rank: int, device: torch.device, timer: MaskingTimer):
    """rows (CPU) -> (the model's input ids on the device, labels or None): the one place the HF
    baseline differs. fastmask's strategies mask on the device inside the model; the baseline
    masks on the CPU with transformers' collator first (timed as masking), never masking the
    tokens the fastmask path never masks."""
    if cfg.masking != HF_BASELINE:
        return lambda rows: (rows.to(device, non_blocking=True), None)
    collator = baselines.hf_collator(tokenizer, cfg.mlm_probability, cfg.mask_replace_prob, cfg.random_replace_prob)
    collator.generator = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
    special_ids = model.masking.special_ids.cpu()

    def masked_on_the_cpu(rows):
        start = time.perf_counter()
        batch = _hf_batch(collator, rows, special_ids, device)
        timer.seconds += time.perf_counter() - start
        return batch

    return masked_on_the_cpu


def evaluate(model: Pretrainer, rows: torch.Tensor, cfg: Config, device: torch.device, world: int, autocast) -> float:
    """Mean MLM loss over the first --eval-batches held-out batches, under the strategies' common
    evaluation masks, averaged over ranks (a host sync)."""
    model.eval()
    total, count = torch.zeros((), device=device), 0
    with torch.no_grad(), autocast:
        for start in range(0, min(len(rows), cfg.eval_batches * cfg.batch_size), cfg.batch_size):
            batch = rows[start:start + cfg.batch_size].to(device)
            total += model.eval_loss(batch, torch.arange(start, start + len(batch), device=device)).float()
            count += 1
    model.train()
    if world > 1:
        dist.all_reduce(total)
        count *= world
    return total.item() / max(1, count)


@contextlib.contextmanager
def _stop_on_signals(handle: bool):
    """SIGTERM / SIGINT recorded (not raised) so the loop can checkpoint first; the previous handlers restored."""
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)} if handle else {}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Progress:
    """What a run tells its user: a start-up line; a bar on a terminal (eval losses above it),
    elsewhere (Slurm, nohup, a log file) a line per log step; metrics.jsonl; the summary; and on
    exit, stopped or not, the curves."""

    def __init__(self, cfg: Config, main: bool, world: int, step: int, device: torch.device, model: Pretrainer):
        from tqdm import tqdm

        self.cfg, self.main, self.model = cfg, main, model
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * world
        self.metrics_path = os.path.join(cfg.out, "metrics.jsonl")
        self.use_bar = data.progress_bars(cfg.progress and main)
        self.bar = tqdm(total=cfg.steps, initial=step, disable=not self.use_bar, desc="pretrain", unit="step")
        if main:
            parameters = sum(p.numel() for p in model.parameters())
            print(f"fastmask pretrain: --masking {cfg.masking}, preset {cfg.preset} ({cfg.hidden_size} wide, "
                  f"{cfg.num_layers} layers, {parameters / 1e6:.2f}M parameters), {device} x {world}, "
                  f"steps {step}..{cfg.steps} of {self.tokens_per_step} tokens", flush=True)
        self.first_step, self.run_start = step, time.perf_counter()
        self.window_start, self.window_steps, self.summary = time.perf_counter(), 0, {}

    def stepped(self) -> None:
        self.window_steps += 1
        self.bar.update(1)

    def log(self, step: int, mean_loss: float, eval_loss: float | None, timer: MaskingTimer, lr: float) -> None:
        elapsed = time.perf_counter() - self.window_start
        masking = self.model.masking
        record = dict(step=step, tokens=step * self.tokens_per_step, loss=round(mean_loss, 5),
                      eval_loss=None if eval_loss is None else round(eval_loss, 5),
                      tokens_per_s=round(self.window_steps * self.tokens_per_step / elapsed, 1),
                      masking_share=None if self.cfg.compile else round(timer.take() / elapsed, 5), lr=lr,
                      dropped_labels=masking.take_dropped_labels(), **masking.take_proposal_stats())
        if self.main:
            if record["dropped_labels"]:
                self.bar.write(f"warning: {record['dropped_labels']} labelled tokens exceeded the gather capacity "
                               f"between steps {step - self.window_steps} and {step} and were left out of the loss",
                               file=sys.stderr)
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            self.bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            line = (f"step {step}/{self.cfg.steps}  loss {mean_loss:.4f}"
                    + ("" if eval_loss is None else f"  eval loss {eval_loss:.4f}")
                    + f"  {record['tokens_per_s']:.0f} tokens/s")
            if not self.use_bar:
                print(line, flush=True)
            elif eval_loss is not None:
                self.bar.write(line)
        self.summary = dict(record, run_tokens_per_s=round(
            (step - self.first_step) * self.tokens_per_step / (time.perf_counter() - self.run_start), 1))
        self.window_start, self.window_steps = time.perf_counter(), 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        if self.main and os.path.exists(self.metrics_path):  # also when stopped: the curves so far
            plot(self.metrics_path, os.path.join(self.cfg.out, "curves.png"),
                 f"--masking {self.cfg.masking}, preset {self.cfg.preset}: {self.cfg.out}")


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, print_config = parse_args(argv)
        if print_config:
            print(json.dumps(dataclasses.asdict(cfg.resolved()), indent=2))
            return 0
        summary = train(cfg)
    except (ValueError, FloatingPointError, Interrupted) as exc:
        print(f"fastmask pretrain: {exc}", file=sys.stderr)
        return 1 if not isinstance(exc, Interrupted) else 130
    if "step" in summary and int(os.environ.get("RANK", "0")) == 0:
        print(f"done: {summary['step']} steps, {summary['tokens']} tokens, train loss {summary['loss']:.4f}, "
              f"eval loss {summary['eval_loss']}, {summary['run_tokens_per_s']:.0f} tokens/s over the run, "
              + ("" if summary["masking_share"] is None else f"masking {summary['masking_share']:.2%} of step time ")
              + f"-> {summary['out']}")
    return 0
