"""The headline comparison: the training step people pick fastmask for against the step they run
today, BERT-base at sequence lengths 128 and 512 in bf16 autocast, all in one run.

  fastmask          `fastmask pretrain` (random masking on the device, the sparse MLM head), eager
  fastmask-compile  the same with --compile (its first step compiles: left out with the first window)
  hf-pretrain       `fastmask pretrain --masking hf`: transformers' collator on the CPU, the dense head
  apply_fastmask    a Trainer-shaped step (bench_hf_step.trainer_step: collate, copy, forward,
                    backward, clipping, AdamW) with the padding-only collator and the model patched
                    by fastmask.hf.apply_fastmask
  hf-trainer-step   the same step with transformers' DataCollatorForLanguageModeling and the
                    unpatched BertForMaskedLM (dense head)

Each row is the median of milliseconds per step over windows of steps, each window ending with a
device sync (the pretrain runs' metrics.jsonl windows, the first one, warm-up or compile, and the
last one, which evaluates, left out; harness.time_steps for the Trainer-shaped steps), with
tokens/s, the peak allocated GPU memory (MiB), masking's share of the step (fastmask's masking
ops timed by CUDA events; the CPU collator's wall time for the baselines; none under --compile,
where masking is fused into the graph) and `sync`: "checked" when the timed steps ran under
torch.cuda.set_sync_debug_mode("error"), else what raised (the contender is then timed again
unchecked). Rows go in rounds of value: both pairs at seq 128, then at 512, then the compiled
runs, so a --budget leaves out the compiled ones first.

    fastmask bench headline --profile gpu    # the GPU kit's step (scripts/gpu/03_headline.sh)
    fastmask bench headline --quick          # smoke run: tiny models, a few steps
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_hf_step  # noqa: E402
import harness  # noqa: E402

from fastmask import baselines  # noqa: E402
from fastmask.hf import apply_fastmask  # noqa: E402

BASELINES = harness.baselines("hf-pretrain", "hf-trainer-step")
PAIRS = {"fastmask": "hf-pretrain", "fastmask-compile": "hf-pretrain", "apply_fastmask": "hf-trainer-step"}
# Seconds a contender is expected to take at BERT-base on an H100/H200 (estimates: the budget starts
# none with less left; a compiled run is mostly Inductor compiling the step).
NEEDS = {"pretrain": 15, "trainer": 10, "compile": 60}


@dataclasses.dataclass(frozen=True)
class Settings:
    pretrain_preset: str  # fastmask pretrain's --preset
    trainer_preset: str  # bench_hf_step.PRESETS: the same model shape
    shapes: tuple  # (seq_len, batch): equal tokens per step
    steps: int  # pretrain --steps; --log-interval log_interval: steps / log_interval windows
    log_interval: int
    windows: int  # Trainer-shaped steps: windows of per_window steps
    per_window: int


def settings(device: torch.device, profile: harness.Profile) -> Settings:
    if profile.quick:
        return Settings("tiny", "small", ((64, 4),), 4, 1, 2, 1)
    if device.type == "cpu":
        return Settings("tiny", "small", ((128, 32),), 12, 2, 4, 2)
    return Settings("base", "base", ((128, 256), (512, 64)), 18, 3, 6, 3)


class TimedCollator:
    """A collator whose calls' wall time adds up (the CPU masking of the baseline step)."""

    def __init__(self, collator):
        self.collator, self.seconds = collator, 0.0

    def __call__(self, rows):
        start = time.perf_counter()
        out = self.collator(rows)
        self.seconds += time.perf_counter() - start
        return out

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def _is_sync_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "synchroniz" in str(exc)


def _sync_note(exc: BaseException) -> str:
    return "raised: " + str(exc).strip().splitlines()[0][:160]


def _peak_mib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else None


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def pretrain(s: Settings, seq: int, batch: int, masking: str, compile: bool, device, work: str, sync: bool):
    """(ms per step of each kept window, masking shares, peak MiB) of one `fastmask pretrain` run."""
    from fastmask.train.config import Config
    from fastmask.train.loop import train

    out = tempfile.mkdtemp(prefix="run-", dir=work)  # its checkpoint is large: removed after reading
    cfg = Config(preset=s.pretrain_preset, masking=masking, compile=compile, seq_len=seq, batch_size=batch,
                 steps=s.steps, log_interval=s.log_interval, eval_interval=s.steps, eval_batches=1,
                 checkpoint_interval=s.steps, device=device.type, progress=False, sync_debug=sync, out=out,
                 cache_dir=os.path.join(work, "cache"))
    _reset_peak(device)
    try:
        train(cfg)
        peak = _peak_mib(device)
        with open(os.path.join(out, "metrics.jsonl")) as f:
            windows = [json.loads(line) for line in f][1:-1]  # warm-up (or compile), and the evaluating one
    finally:
        shutil.rmtree(out, ignore_errors=True)
    ms = [batch * seq / w["tokens_per_s"] * 1e3 for w in windows]
    return ms, [w["masking_share"] for w in windows if w["masking_share"] is not None], peak


def trainer(s: Settings, rows: list[dict], device, sync: bool, model, collator, clock):
    """(ms per step of each window, masking shares, peak MiB) of Trainer-shaped steps of `model` on
    the features `rows`; clock.take() -> the masking seconds since its last call."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    step = bench_hf_step.trainer_step(model, collator, rows, device, optimizer)
    _reset_peak(device)
    for _ in range(2):  # warm-up: kernel compilation, allocator growth; not in the masking share
        step()
    harness._synchronize(device)
    clock.take()
    ms = harness.time_steps(step, device, s.windows, s.per_window, sync_check=sync, warmup=0)
    share = clock.take() / (sum(ms) * s.per_window / 1e3)
    return ms, [share], _peak_mib(device)


def _row(op, seq, batch, name, measured, sync_note, device):
    ms, shares, peak = measured
    timing = harness.quantiles(ms)
    metrics = dict(tokens_per_s=round(batch * seq / timing[0] * 1e3, 1), peak_mib=peak,
                   masking_share=round(harness.quantiles(shares)[0], 5) if shares else None, sync=sync_note)
    return harness.make_row(op, f"{batch}x{seq}", "bf16" if device.type == "cuda" else "fp32", name, timing, None,
                            device, metrics)


def _measure(run, device):
    """run(sync) under the sync check (GPU); if a host sync raised, once more unchecked. (measured, note)."""
    if device.type != "cuda":
        return run(False), "n/a (CPU)"
    try:
        return run(True), "checked"
    except RuntimeError as exc:
        if not _is_sync_error(exc):
            raise
        print(f"headline: {_sync_note(exc)}; timed again without the check", file=sys.stderr, flush=True)
        torch.cuda.set_sync_debug_mode("default")
        return run(False), _sync_note(exc)


def collect(device, profile):
    from fastmask.train.loop import Interrupted, MaskingTimer

    s = settings(device, profile)
    work = tempfile.mkdtemp(prefix="fastmask-headline-")

    def attempt(what, make_row, needs):
        harness.check_budget(what, needs if device.type == "cuda" else 0.0)
        print(f"headline: {what}", flush=True)
        try:
            return [make_row()]
        except (harness.OutOfBudget, Interrupted):  # Interrupted: a SIGTERM (the kit's time limit) in a run
            raise
        except Exception as exc:  # one contender failing must not cost the others' rows
            traceback.print_exc()
            harness.FAILED.append(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")
            return []

    def pretrain_row(seq, batch, name, masking, compile):
        measured, note = _measure(lambda sync: pretrain(s, seq, batch, masking, compile, device, work, sync), device)
        return _row(f"pretrain_step_{s.pretrain_preset}", seq, batch, name, measured, note, device)

    def trainer_rows(seq, batch):
        tokenizer = baselines.in_memory_tokenizer(harness.VOCAB)
        masking, padding = bench_hf_step.collators(tokenizer)
        model = bench_hf_step.bert(s.trainer_preset, seq, device)
        features = bench_hf_step.features(tokenizer, batch, (seq, seq))  # full blocks, as run_mlm.py groups texts
        op = f"trainer_step_{s.trainer_preset}"
        timed = TimedCollator(masking)
        yield from attempt(f"hf-trainer-step {batch}x{seq}", lambda: _row(op, seq, batch, "hf-trainer-step", *_measure(
            lambda sync: trainer(s, features, device, sync, model, timed, timed), device), device), NEEDS["trainer"])
        model.zero_grad(set_to_none=True)
        apply_fastmask(model, tokenizer)  # in place: one model on the device at a time, for the peak memory
        clock = MaskingTimer(model.fastmask.masking, device)
        yield from attempt(f"apply_fastmask {batch}x{seq}", lambda: _row(op, seq, batch, "apply_fastmask", *_measure(
            lambda sync: trainer(s, features, device, sync, model, padding, clock), device), device), NEEDS["trainer"])

    try:
        for seq, batch in s.shapes:
            yield from attempt(f"fastmask {batch}x{seq}", lambda: pretrain_row(seq, batch, "fastmask", "random", False),
                               NEEDS["pretrain"])
            yield from attempt(f"hf-pretrain {batch}x{seq}", lambda: pretrain_row(seq, batch, "hf-pretrain", "hf", False),
                               NEEDS["pretrain"])
            yield from trainer_rows(seq, batch)
        for seq, batch in s.shapes:
            yield from attempt(f"fastmask-compile {batch}x{seq}",
                               lambda: pretrain_row(seq, batch, "fastmask-compile", "random", True), NEEDS["compile"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary_table(rows: list[dict]) -> str:
    """The headline as one Markdown table: per step and shape, each contender's tokens/s, its speed-up
    over its baseline of the same run, peak memory, masking's share and the sync check."""
    medians = {(r["git_sha"], r["date"], r["device"], r["shape"], r["backend"]): r["median_ms"] for r in rows}
    lines = ["| step | batch x seq | contender | tokens/s | speed-up (same run) | peak MiB | masking share | sync |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        m = r.get("metrics") or {}
        baseline = PAIRS.get(r["backend"])
        base_ms = medians.get((r["git_sha"], r["date"], r["device"], r["shape"], baseline))
        ratio = f"{base_ms / r['median_ms']:.2f}x vs {baseline}" if base_ms else ("baseline" if not baseline else "-")
        share = "-" if m.get("masking_share") is None else f"{m['masking_share']:.1%}"
        lines.append(f"| {r['op']} | {r['shape']} | {r['backend']} | {harness.metric_text(m.get('tokens_per_s'))} | "
                     f"{ratio} | {harness.metric_text(m.get('peak_mib'))} | {share} | {m.get('sync', '-')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(harness.run("headline", __doc__, collect, BASELINES))
