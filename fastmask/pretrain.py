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
from dataclasses import dataclass, field, fields

import torch
import torch.distributed as dist
from torch import nn

import fastmask
from fastmask import baselines, data
from fastmask.strategy import STRATEGIES, MaskingStrategy


MAX_SEQ_LEN = 8192  # the longest rows the packer, the model and the kernels are sized for here

# width, layers, heads, ffn, seq_len, vocab, batch, steps, lr
PRESETS = {
    "tiny": dict(hidden_size=128, num_layers=2, num_heads=2, intermediate_size=512, seq_len=128, vocab_size=4096,
                 batch_size=32, steps=600, lr=1e-3),
    "small": dict(hidden_size=256, num_layers=4, num_heads=4, intermediate_size=1024, seq_len=128, vocab_size=16384,
                  batch_size=64, steps=5000, lr=5e-4),
    "base": dict(hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, seq_len=128, vocab_size=30522,
                 batch_size=256, steps=100_000, lr=1e-4),
}


def _flag(default, help: str, kind=None, choices=None):
    """A Config field and its command-line flag: help text, value type (default: the default's), choices."""
    return field(default=default, metadata=dict(help=help, kind=kind or type(default), choices=choices))


PRESET = "None: the preset's value"


@dataclass
class Config:
    """Every field is a command-line flag (``--field-name value``); None takes the preset's value."""

    preset: str = _flag("tiny", "model size, data shape and schedule: " + "; ".join(
        f"{name}: width {p['hidden_size']}, {p['num_layers']} layers, seq {p['seq_len']}, vocab {p['vocab_size']}, "
        f"batch {p['batch_size']}, {p['steps']} steps" for name, p in PRESETS.items()), choices=tuple(PRESETS))
    corpus: str | None = _flag(None, "a text file (one document per line), a .jsonl file ({\"text\": ...} per line) or "
                                     "a folder of them; None: the built-in corpus (Python's standard-library docstrings)",
                               kind=str)
    tokenizer: str | None = _flag(None, "a local Hugging Face tokenizer folder; None: train a WordPiece tokenizer on "
                                        "the corpus (cached)", kind=str)
    out: str | None = _flag(None, "the run's folder; None: a new runs/pretrain-<date>-<time>, printed at start. "
                                  "A folder holding files is refused unless --resume or --overwrite", kind=str)
    overwrite: bool = _flag(False, "replace the run files already in --out")
    masking: str = _flag("random", "random: exactly round(p n) tokens per row; bernoulli: each token with "
                                   "probability p (BERT, the HF collator); fully-explored: K disjoint views of every "
                                   "row in one step; mapnet: sampled from a jointly trained proposal net, "
                                   "importance-weighted", choices=STRATEGIES)
    baseline: str | None = _flag(None, "hf: train the way most users do today (the HF collator on the CPU, "
                                       "BertForMaskedLM's dense head), for comparison", kind=str, choices=("hf",))
    # model (None: from the preset)
    hidden_size: int | None = _flag(None, f"encoder width ({PRESET})", kind=int)
    num_layers: int | None = _flag(None, f"encoder layers ({PRESET})", kind=int)
    num_heads: int | None = _flag(None, f"attention heads ({PRESET})", kind=int)
    intermediate_size: int | None = _flag(None, f"feed-forward width ({PRESET})", kind=int)
    seq_len: int | None = _flag(None, f"tokens per training sequence, 8..{MAX_SEQ_LEN} ({PRESET})", kind=int)
    vocab_size: int | None = _flag(None, f"tokenizer and embedding size ({PRESET})", kind=int)
    # masking
    mlm_probability: float = _flag(0.15, "share of maskable tokens masked, in (0, 1)")
    num_segments: int | None = _flag(None, "fully-explored K; None: round(1 / mlm-probability)", kind=int)
    mapnet_layers: int = _flag(2, "MAPNet proposal net: Transformer layers")
    mapnet_hidden: int | None = _flag(None, "MAPNet proposal net: width (even); None: a quarter of --hidden-size",
                                      kind=int)
    mapnet_weight: float = _flag(0.1, "MAPNet: weight lambda of the proposal net's REINFORCE objective")
    uniform_mix: float = _flag(0.1, "MAPNet: share of the uniform distribution mixed into the proposal, in [0, 1]")
    weighting: str = _flag("token", "MAPNet importance weights: token (per masked token, unbiased) or sequence "
                                    "(one clipped weight per row)", choices=("token", "sequence"))
    # optimisation
    batch_size: int | None = _flag(None, f"sequences per rank per micro-step ({PRESET})", kind=int)
    grad_accum: int = _flag(1, "micro-steps per optimizer step")
    steps: int | None = _flag(None, f"optimizer steps ({PRESET})", kind=int)
    lr: float | None = _flag(None, f"peak AdamW learning rate ({PRESET})", kind=float)
    warmup: int | None = _flag(None, "linear warm-up steps, then linear decay to 0; None: 5%% of --steps", kind=int)
    weight_decay: float = _flag(0.01, "AdamW weight decay")
    clip: float = _flag(1.0, "gradient-norm clipping threshold")
    compile: bool = _flag(False, "torch.compile the training step")
    # bookkeeping
    eval_interval: int = _flag(100, "steps between evaluations (and at the last step)")
    eval_batches: int = _flag(8, "held-out batches per evaluation")
    eval_fraction: float = _flag(0.02, "share of the packed rows held out for evaluation")
    log_interval: int | None = _flag(None, "steps between lines of metrics.jsonl (each reads the loss: a host "
                                           "sync); None: steps / 50, between 1 and 10", kind=int)
    checkpoint_interval: int = _flag(100, "steps between checkpoints (rounded to a log step)")
    resume: bool = _flag(False, "continue the run in --out from its checkpoint.pt")
    seed: int = _flag(0, "seed of the data order, the initialisation and the masks")
    device: str = _flag("auto", "auto: cuda when available, else cpu", choices=("auto", "cpu", "cuda"))
    cache_dir: str | None = _flag(None, "tokenizer and packed-row cache; None: $FASTMASK_CACHE or ~/.cache/fastmask",
                                  kind=str)
    progress: bool = _flag(True, "a progress bar")
    sync_debug: bool = _flag(False, "GPU: torch.cuda.set_sync_debug_mode('error') outside logging steps")

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
        if cfg.log_interval is None:
            cfg.log_interval = min(10, max(1, cfg.steps // 50))
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
            (8 <= self.seq_len <= MAX_SEQ_LEN, f"--seq-len must be in [8, {MAX_SEQ_LEN}], got {self.seq_len}"),
            (not self.resume or self.out is not None, "--resume needs --out: the folder of the run to continue"),
            (not (self.resume and self.overwrite), "--resume continues the run in --out; --overwrite replaces it: "
                                                   "give one of them"),
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


DESCRIPTION = """Pretrains a BERT encoder by masked-language modelling, with fastmask's masking kernels and
sparse MLM head, on a CPU or a GPU (torchrun: one process per GPU or CPU process, DDP).

Output (--out): metrics.jsonl (a line per --log-interval), curves.png, checkpoint.pt (continue
with --resume). Ctrl-C or SIGTERM writes a checkpoint first.

examples:
  fastmask pretrain                                        # the tiny preset on the built-in corpus
  fastmask pretrain --masking fully-explored --preset small --corpus my_texts.jsonl
  fastmask pretrain --baseline hf                          # the same model the usual way, for comparison
  fastmask pretrain --out runs/a --resume                  # continue runs/a
  torchrun --nproc_per_node 8 -m fastmask pretrain --preset base
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmask pretrain", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in fields(Config):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        shown = f"{meta['help']} (default: {f.default})"
        if meta["kind"] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"])
        else:
            parser.add_argument(flag, type=meta["kind"], default=f.default, choices=meta["choices"], help=shown,
                                metavar=None if meta["choices"] else f.name.upper())
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    return parser


def parse_args(argv: list[str] | None) -> tuple[Config, bool]:
    """(the configuration, whether --print-config was given)."""
    args = vars(_parser().parse_args(argv))
    print_config = args.pop("print_config")
    return Config(**args), print_config


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
            special_ids=sorted(set(tokenizer.all_special_ids)),  # never masked, on either path
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


def _hf_batch(collator, rows: torch.Tensor, special_ids: torch.Tensor, device: torch.device):
    """The baseline's masking: Hugging Face's collator on CPU tensors, then a copy to the device.
    `special_ids` (CPU) are those the fastmask path never masks: the tokenizer's special tokens."""
    out = collator.torch_mask_tokens(rows.long().clone(), special_tokens_mask=torch.isin(rows, special_ids))
    return out[0].to(device, non_blocking=True), out[1].to(device, non_blocking=True)


class Interrupted(Exception):
    pass


TOKENIZER_DIR, EXPORT_DIR = "tokenizer", "hf-model"
# What a run writes in its folder (--overwrite removes exactly these).
RUN_FILES = ("checkpoint.pt", "metrics.jsonl", "curves.png", "config.json", "versions.json", TOKENIZER_DIR, EXPORT_DIR)


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
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(fastmask.__file__)))
    try:
        out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def export_model(model: "Pretrainer", tokenizer, folder: str) -> None:
    """The MLM as a Hugging Face folder: AutoModelForMaskedLM / AutoTokenizer.from_pretrained load it
    (MAPNet's proposal net stays in checkpoint.pt). Written aside, then swapped in whole."""
    import shutil

    staging = f"{folder}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    model.mlm.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    previous = f"{folder}.old-{os.getpid()}"
    if os.path.exists(folder):
        os.replace(folder, previous)
    os.replace(staging, folder)
    shutil.rmtree(previous, ignore_errors=True)


def output_folder(cfg: Config, main: bool, world: int) -> str:
    """The run's folder. --out must not hold another run's files unless the run continues it
    (--resume) or replaces them (--overwrite); without --out, a new folder (the same on every rank)."""
    if cfg.out is not None:
        existing = sorted(os.listdir(cfg.out)) if os.path.isdir(cfg.out) else []
        if existing and not (cfg.resume or cfg.overwrite):
            raise ValueError(f"--out {cfg.out} already holds files ({', '.join(existing[:4])}"
                             f"{', ...' if len(existing) > 4 else ''}): continue that run with --resume, replace "
                             "it with --overwrite, or choose another --out")
        if cfg.overwrite and main:
            import shutil

            for name in RUN_FILES:
                path = os.path.join(cfg.out, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                elif os.path.exists(path):
                    os.remove(path)
        if main and not cfg.resume:  # a resumed run's folder exists: load_checkpoint says so otherwise
            os.makedirs(cfg.out, exist_ok=True)
        return cfg.out
    folder = None
    if main:
        base = os.path.join("runs", "pretrain-" + time.strftime("%Y%m%d-%H%M%S"))
        folder, n = base, 1
        while os.path.exists(folder):
            folder, n = f"{base}-{n}", n + 1
        os.makedirs(folder)
    if world > 1:
        shared = [folder]
        dist.broadcast_object_list(shared)  # rank 0's name: clocks and folders differ across ranks
        folder = shared[0]
    return folder


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
              f"{cfg.preset} ({cfg.hidden_size} wide, {cfg.num_layers} layers, {parameters / 1e6:.1f}M parameters), "
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
