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

from fastmask import data
from fastmask.data.loader import Batches, Prefetcher
from fastmask.train.config import HF_BASELINE, Config, parse_args
from fastmask.train.model import HFBaseline, Pretrainer
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


class Interrupted(Exception):
    pass


class MaskingTimer:
    """Time spent in the masking strategy's forward (fastmask's ops; MAPNet's scoring included),
    from hooks on the strategy module: CUDA events on a GPU, the CPU clock otherwise; the HF
    baseline's CPU masking through :meth:`on_the_cpu`. Read at log time. Under torch.compile
    masking is fused into the graph: nothing is timed (null)."""

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

    @contextlib.contextmanager
    def on_the_cpu(self):
        """Times a block of host-side masking (the HF baseline's collator)."""
        start = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - start

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


def warmup_then_linear_decay(warmup: int, total: int):
    """BERT's learning-rate schedule, as a factor of the peak rate at each optimizer step: a linear
    warm-up over the first `warmup` steps (no large updates while Adam's moments are still noise),
    then a linear decay to 0 at step `total`."""
    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _train(cfg: Config, rank: int, world: int, device: torch.device) -> dict:
    main = rank == 0
    if main:
        print(f"fastmask pretrain: output folder {cfg.out}", flush=True)
    torch.manual_seed(cfg.seed)

    # Data. A checkpoint is read (and checked) before the corpus: a bad one fails in seconds. Rank 0
    # prepares the token shards (cached); the other ranks then map the same files.
    state = load_checkpoint(os.path.join(cfg.out, CHECKPOINT), cfg) if cfg.resume else None
    stored_tokenizer = os.path.join(cfg.out, TOKENIZER_DIR)
    if cfg.resume and os.path.isdir(stored_tokenizer):
        cfg = dataclasses.replace(cfg, tokenizer=stored_tokenizer)  # the run's own vocabulary, whatever the cache holds
    if world > 1 and not main:
        dist.barrier()
    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=cfg.progress and main, text_column=cfg.text_column, workers=cfg.workers)
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

    # Model (the HF baseline: the same model, masked by transformers' collator), optimizer, schedule;
    # the state of a resumed run.
    model = (HFBaseline if cfg.masking == HF_BASELINE else Pretrainer)(cfg, prepared.tokenizer, rank).to(device)
    timer = MaskingTimer(model.masking, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_then_linear_decay(cfg.warmup, cfg.steps))
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
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()

    def checkpoint(at_step: int) -> None:
        if main:
            save_checkpoint(os.path.join(cfg.out, CHECKPOINT), dict(
                model=model.state_dict(), optimizer=optimizer.state_dict(), schedule=schedule.state_dict(),
                rng=torch.get_rng_state(), cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                step=at_step, config=dataclasses.asdict(cfg)))
            export_model(model, prepared.tokenizer, os.path.join(cfg.out, EXPORT_DIR))

    def gradient_sync(micro: int):
        """DDP all-reduces the gradients on the last micro-step of an optimizer step only."""
        return trained.no_sync() if world > 1 and micro < cfg.grad_accum - 1 else contextlib.nullcontext()

    # The loop: micro-steps, an optimizer step; at log steps the counters are read (the one host
    # sync), evaluated, logged and checkpointed.
    progress = Progress(cfg, main, world, step, device, model)
    counters = Counters(device, timer, model)
    data_epoch = torch.zeros((), dtype=torch.int64, device=device)  # the masks' epoch, read by the kernels
    first_step, good_step = step, step
    loader = Prefetcher(batches, first=step * cfg.grad_accum, pin=device.type == "cuda")
    with _stop_on_signals(main or world == 1) as stop, progress, loader:
        while step < cfg.steps:
            # Any host sync in the step itself raises under --sync-debug; logging steps may sync. With
            # --compile the first step compiles (Inductor syncs while compiling): checked from the
            # second, where a recompilation would raise too.
            if cfg.sync_debug and device.type == "cuda" and not (cfg.compile and step == first_step):
                torch.cuda.set_sync_debug_mode("error")
            mlm_probability = cfg.mlm_probability_at(step, cfg.steps)
            if cfg.scheduled:
                model.set_mlm_probability(mlm_probability)
            for micro in range(cfg.grad_accum):
                batch = next(loader)
                with gradient_sync(micro):
                    with autocast:
                        loss, objective = forward(*model.inputs(batch, data_epoch, timer))
                    (loss + cfg.mapnet_weight * objective).div(cfg.grad_accum).backward()
                counters.add_loss(loss, cfg.grad_accum)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            progress.stepped()
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
            if step % cfg.log_interval == 0 or step == cfg.steps:
                read = counters.read(progress.window_steps)  # the one host sync, at log time
                if not math.isfinite(read["loss"]):
                    kept = (f"The last good checkpoint ({os.path.join(cfg.out, CHECKPOINT)}) is from step {good_step}."
                            if good_step > 0 else "There is no checkpoint yet: the run leaves nothing behind.")
                    raise FloatingPointError(f"the training loss became {read['loss']} between steps "
                                             f"{step - progress.window_steps} and {step}; stopping. {kept}")
                evaluated = step % cfg.eval_interval == 0 or step == cfg.steps
                eval_loss = evaluate(model, prepared.eval, cfg, device, world, autocast) if evaluated else None
                progress.log(step, read, eval_loss, schedule.get_last_lr()[0], mlm_probability)
                if step % cfg.checkpoint_interval == 0 or step == cfg.steps:
                    checkpoint(step)
                    good_step = step
            if stop["signal"] is not None:
                checkpoint(step)
                raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; checkpoint saved to "
                                  f"{os.path.join(cfg.out, CHECKPOINT)} (continue with --resume)")
    return {**progress.summary, "out": cfg.out}


class Counters:
    """What the step counts on the device (the loss; the masking's time, dropped labels and MAPNet's
    statistics), accumulated without a host sync and read in one place, at log time."""

    def __init__(self, device: torch.device, timer: MaskingTimer, model: Pretrainer):
        self.window_loss = torch.zeros((), device=device)
        self.timer, self.masking = timer, model.masking

    def add_loss(self, loss: torch.Tensor, grad_accum: int) -> None:
        self.window_loss += loss.detach().float() / grad_accum

    def read(self, window_steps: int) -> dict:
        """The window's mean loss, masking seconds, dropped labels and proposal statistics; resets them."""
        read = dict(loss=self.window_loss.item() / window_steps, masking_seconds=self.timer.take(),
                    dropped_labels=self.masking.take_dropped_labels(), **self.masking.take_proposal_stats())
        self.window_loss.zero_()
        return read


def evaluate(model: Pretrainer, rows: data.RowSet, cfg: Config, device: torch.device, world: int, autocast) -> float:
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

        self.cfg, self.main = cfg, main
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

    def log(self, step: int, read: dict, eval_loss: float | None, lr: float, mlm_probability: float) -> None:
        """`read`: what :meth:`Counters.read` returned for this window."""
        elapsed = time.perf_counter() - self.window_start
        read = dict(read)
        mean_loss, masking_seconds = read.pop("loss"), read.pop("masking_seconds")
        record = dict(step=step, tokens=step * self.tokens_per_step, loss=round(mean_loss, 5),
                      eval_loss=None if eval_loss is None else round(eval_loss, 5),
                      tokens_per_s=round(self.window_steps * self.tokens_per_step / elapsed, 1),
                      masking_share=None if self.cfg.compile else round(masking_seconds / elapsed, 5), lr=lr,
                      mlm_probability=mlm_probability, **read)
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
