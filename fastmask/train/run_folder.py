"""A run's folder: chosen so that no run loses another's files, the records that make it
reproducible (configuration, versions, tokenizer), atomic checkpoints, a Hugging Face export
and the curves."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time

import torch
import torch.distributed as dist

import fastmask
from fastmask.train.config import MODEL_FIELDS, Config

CHECKPOINT, TOKENIZER_DIR, EXPORT_DIR = "checkpoint.pt", "tokenizer", "hf-model"
# What a run writes in its folder (--overwrite, and a failed start, remove exactly these).
RUN_FILES = (CHECKPOINT, "metrics.jsonl", "curves.png", "config.json", "versions.json", TOKENIZER_DIR, EXPORT_DIR)


def write_run_records(cfg: Config, tokenizer, device: torch.device) -> None:
    """config.json (every resolved field), versions.json and the run's tokenizer, in --out."""
    import transformers

    with open(os.path.join(cfg.out, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=2)
    versions = dict(fastmask=fastmask.__version__, torch=torch.__version__, transformers=transformers.__version__,
                    cuda=torch.version.cuda, python=sys.version.split()[0],
                    device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    git_commit=_git_commit())
    with open(os.path.join(cfg.out, "versions.json"), "w") as f:
        json.dump(versions, f, indent=2)
    tokenizer.save_pretrained(os.path.join(cfg.out, TOKENIZER_DIR))


def _git_commit() -> str | None:
    """The commit of the source checkout fastmask runs from, if it is one."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmask.__file__)))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def export_model(model, tokenizer, folder: str) -> None:
    """The MLM as a Hugging Face folder: AutoModelForMaskedLM / AutoTokenizer.from_pretrained load it
    (MAPNet's proposal net stays in checkpoint.pt). Written aside, then swapped in whole."""
    from transformers.utils import logging as transformers_logging

    staging = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shown = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # its "Writing model shards" bar, at every checkpoint, is noise
    try:
        model.mlm.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if shown:
            transformers_logging.enable_progress_bar()
    previous = f"{folder}.old-{os.getpid()}"
    if os.path.exists(folder):
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


@contextlib.contextmanager
def run_folder(cfg: Config, main: bool, world: int):
    """The run's folder (see `output_folder`), for the duration of the run. A run that fails
    before its first checkpoint leaves nothing: the run files it wrote go, and the folders it
    created. Another run's files, and a folder this run did not create, are never removed; nor is
    anything of a resumed run (its checkpoint predates it)."""
    folder, created = output_folder(cfg, main, world)
    try:
        yield folder
    except BaseException:
        if main and not cfg.resume and not os.path.exists(os.path.join(folder, CHECKPOINT)):
            _remove_run_files(folder)
            for path in reversed(created):
                try:
                    os.rmdir(path)  # only if empty: whatever else is there stays
                except OSError:
                    break
        raise


def output_folder(cfg: Config, main: bool, world: int) -> tuple[str, list[str]]:
    """(the run's folder, the folders made for it, outermost first). --out must not hold another
    run's files unless the run continues it (--resume) or replaces them (--overwrite); without
    --out, a new folder (the same on every rank)."""
    if cfg.out is not None:
        existing = sorted(os.listdir(cfg.out)) if os.path.isdir(cfg.out) else []
        if existing and not (cfg.resume or cfg.overwrite):
            raise ValueError(f"--out {cfg.out} already holds files ({', '.join(existing[:4])}"
                             f"{', ...' if len(existing) > 4 else ''}): continue that run with --resume, replace "
                             "it with --overwrite, or choose another --out")
        if cfg.overwrite and main:
            _remove_run_files(cfg.out)
        created = []
        if main and not cfg.resume:  # a resumed run's folder exists: load_checkpoint says so otherwise
            created = _make_folder(cfg.out, exist_ok=True)
        return cfg.out, created
    folder, created = None, []
    if main:
        base = os.path.join("runs", "pretrain-" + time.strftime("%Y%m%d-%H%M%S"))
        folder, n = base, 1
        while os.path.exists(folder):
            folder, n = f"{base}-{n}", n + 1
        created = _make_folder(folder, exist_ok=False)
    if world > 1:
        shared = [folder]
        dist.broadcast_object_list(shared)  # rank 0's name: clocks and folders differ across ranks
        folder = shared[0]
    return folder, created


def _make_folder(path: str, exist_ok: bool) -> list[str]:
    """Creates `path` (and its missing parents); the folders it created, outermost first."""
    missing, parent = [], os.path.abspath(path)
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    os.makedirs(path, exist_ok=exist_ok)
    return missing[::-1]


def _remove_run_files(folder: str) -> None:
    for name in RUN_FILES:
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def save_checkpoint(path: str, state: dict) -> None:
    """Written aside, then renamed: a checkpoint is whole or absent (a failed write leaves no part)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def plot(metrics_path: str, png_path: str, title: str) -> None:
    """Training and evaluation loss against steps, and throughput, under `title`."""
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
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
