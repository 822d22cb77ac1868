"""``fastmask pretrain``: the training loop, top to bottom.

One process trains on a CPU or a GPU; under torchrun every rank trains on its own shard with
DDP (nccl on GPUs, gloo on CPUs). Masks are made on the training device inside the step, keyed
by (seed, epoch, global sample id): they do not depend on the number of ranks. ``--baseline hf``
trains the same model the way most users do today (Hugging Face's collator on the CPU,
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
from fastmask.train.config import Config, parse_args
from fastmask.train.model import Pretrainer
from fastmask.train.run_folder import (
    EXPORT_DIR,
    TOKENIZER_DIR,
    export_model,
    load_checkpoint,
    output_folder,
    plot,
    save_checkpoint,
    write_run_records,
)


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
    cfg = dataclasses.replace(cfg, out=output_folder(cfg, main, world))
    if main:
        print(f"fastmask pretrain: output folder {cfg.out}", flush=True)
    torch.manual_seed(cfg.seed)
    # Rank 0 prepares (and caches) the tokenizer and rows first; the other ranks then load them.
    if world > 1 and not main:
        dist.barrier()
    # Read (and check) a checkpoint before the corpus: a bad one fails in seconds, not minutes.
    state = load_checkpoint(os.path.join(cfg.out, "checkpoint.pt"), cfg) if cfg.resume else None
    stored_tokenizer = os.path.join(cfg.out, TOKENIZER_DIR)
    if cfg.resume and os.path.isdir(stored_tokenizer):
        cfg = dataclasses.replace(cfg, tokenizer=stored_tokenizer)  # the run's own vocabulary, whatever the cache holds
    prepared = data.prepare(cfg.corpus, cfg.tokenizer, cfg.vocab_size, cfg.seq_len, cfg.eval_fraction, cfg.cache_dir,
                            show_progress=cfg.progress and main)
    if main and not cfg.resume:
        write_run_records(cfg, prepared.tokenizer, device)
    if world > 1 and main:
        dist.barrier()
    if len(prepared.tokenizer) > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {len(prepared.tokenizer)} tokens, above --vocab-size {cfg.vocab_size}")
    model = Pretrainer(cfg, prepared.tokenizer).to(device)
    timer = MaskingTimer(model.masking, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / cfg.warmup) * max(0.0, (cfg.steps - s) / max(1, cfg.steps - cfg.warmup)))
    checkpoint_path = os.path.join(cfg.out, "checkpoint.pt")
    metrics_path = os.path.join(cfg.out, "metrics.jsonl")
    step = 0
    if cfg.resume:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        step = state["step"]  # the data position too: micro-batch m is a pure function of (seed, m)
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    forward = torch.compile(trained) if cfg.compile else trained
    batches = Batches(prepared.train, cfg.batch_size, cfg.seed, rank, world)
    passes = cfg.steps * cfg.grad_accum / batches.per_epoch
    if main and passes > 20:
        print(f"warning: {len(prepared.train)} training sequences: {cfg.steps} steps read them {passes:.0f} times over "
              "(a small corpus overfits; give a larger --corpus or fewer --steps)", file=sys.stderr, flush=True)
    collator = None
    if cfg.baseline == "hf":
        collator = baselines.hf_collator(prepared.tokenizer, cfg.mlm_probability)
        collator.generator = torch.Generator().manual_seed(cfg.seed * 7919 + rank)
        special_ids = model.masking.special_ids.cpu()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * world

    def checkpoint(at_step: int) -> None:
        if main:
            save_checkpoint(checkpoint_path, dict(model=model.state_dict(), optimizer=optimizer.state_dict(),
                                                  schedule=schedule.state_dict(), rng=torch.get_rng_state(),
                                                  cuda_rng=torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                                                  step=at_step, config=dataclasses.asdict(cfg)))
            export_model(model, prepared.tokenizer, os.path.join(cfg.out, EXPORT_DIR))

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

    # A bar on a terminal; elsewhere (Slurm, nohup, a log file) a line per log interval.
    use_bar = cfg.progress and main and sys.stderr.isatty()
    bar = tqdm(total=cfg.steps, initial=step, disable=not use_bar, desc="pretrain", unit="step")
    if main:
        parameters = sum(p.numel() for p in model.parameters())
        print(f"fastmask pretrain: {cfg.masking if cfg.baseline is None else 'hf baseline'} masking, preset "
              f"{cfg.preset} ({cfg.hidden_size} wide, {cfg.num_layers} layers, {parameters / 1e6:.2f}M parameters), "
              f"{device} x {world}, steps {step}..{cfg.steps} of {tokens_per_step} tokens", flush=True)
    run_start = time.perf_counter()
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
                    ids, hf_labels = _hf_batch(collator, rows, special_ids, device)
                    timer.seconds += time.perf_counter() - start
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
                              masking_share=None if cfg.compile else round(timer.take() / elapsed, 5),
                              lr=schedule.get_last_lr()[0],
                              dropped_labels=model.masking.take_dropped_labels(),
                              **model.masking.take_proposal_stats())
                if record["dropped_labels"] and main:
                    bar.write(f"warning: {record['dropped_labels']} labelled tokens exceeded the gather capacity "
                              f"between steps {step - window_steps} and {step} and were left out of the loss", file=sys.stderr)
                if main:
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps(record) + "\n")
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
                line = (f"step {step}/{cfg.steps}  loss {mean_loss:.4f}"
                        + ("" if eval_loss is None else f"  eval loss {eval_loss:.4f}")
                        + f"  {record['tokens_per_s']:.0f} tokens/s")
                if main and not use_bar:
                    print(line, flush=True)
                elif main and eval_loss is not None:
                    bar.write(line)
                summary = dict(record, run_tokens_per_s=round(
                    (step - first_step) * tokens_per_step / (time.perf_counter() - run_start), 1))
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
        if main and os.path.exists(metrics_path):  # also when stopped: the curves so far
            title = f"{cfg.masking if cfg.baseline is None else 'hf baseline'} masking, preset {cfg.preset}: {cfg.out}"
            plot(metrics_path, os.path.join(cfg.out, "curves.png"), title)
    return {**summary, "out": cfg.out}


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
