"""``fastmask pretrain``'s configuration: one table of flags (the Config fields, each with its help
text, type and choices), the presets, and the checks that run before anything is loaded.

The masking flags are :class:`fastmask.MaskingConfig`'s fields (Config is a MaskingConfig plus the
run's fields): each field is a flag of the same name (``mapnet_objective`` -> ``--mapnet-objective``),
with its default and help from there, and MaskingConfig.validate checks them."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields

from fastmask.masking_config import FLAGS, MaskingConfig, STRATEGIES, setting

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


_flag = setting  # a Config field and its command-line flag: help text, value type (default: the default's), choices


PRESET = "None: the preset's value"
HF_BASELINE = "hf"
MASKINGS = (*STRATEGIES, HF_BASELINE)  # fastmask's strategies, and the baseline they are compared with


@dataclass
class Config(MaskingConfig):
    """Every field is a command-line flag (``--field-name value``); None takes the preset's value.

    The masking fields come from :class:`fastmask.MaskingConfig` (``--masking`` adds ``hf``, the
    baseline); :meth:`masking_config` is the MaskingConfig the run masks with."""

    preset: str = _flag("tiny", "model size, data shape and schedule: " + "; ".join(
        f"{name}: width {p['hidden_size']}, {p['num_layers']} layers, seq {p['seq_len']}, vocab {p['vocab_size']}, "
        f"batch {p['batch_size']}, {p['steps']} steps" for name, p in PRESETS.items()), choices=tuple(PRESETS))
    corpus: str | None = _flag(None, "a folder `fastmask prepare` wrote (read as it is), or raw text, prepared into "
                                     "the cache first: a text file (one document per line), a .jsonl file "
                                     "({\"text\": ...} per line), a .parquet file, a datasets save_to_disk folder, or "
                                     "a folder of such files; None: the built-in corpus (Python's standard-library "
                                     "docstrings)", kind=str)
    tokenizer: str | None = _flag(None, "a local Hugging Face tokenizer folder; None: train a WordPiece tokenizer on "
                                        "the corpus (cached)", kind=str)
    text_column: str = _flag("text", "the field of .jsonl objects and the column of .parquet files and datasets "
                                     "folders that holds the text")
    workers: int | None = _flag(None, "processes tokenising a raw corpus into token shards (once, cached); None: "
                                      "every core", kind=int)
    out: str | None = _flag(None, "the run's folder; None: a new runs/pretrain-<date>-<time>, printed at start. "
                                  "A folder holding files is refused unless --resume or --overwrite", kind=str)
    overwrite: bool = _flag(False, "replace the run files already in --out")
    masking: str = _flag("random", MaskingConfig.__dataclass_fields__["masking"].metadata["help"] + "; hf: the "
                                   "baseline, trained the way most users do today (transformers' collator on the CPU, "
                                   "BertForMaskedLM's dense head)", choices=MASKINGS)
    # model (None: from the preset)
    hidden_size: int | None = _flag(None, f"encoder width ({PRESET})", kind=int)
    num_layers: int | None = _flag(None, f"encoder layers ({PRESET})", kind=int)
    num_heads: int | None = _flag(None, f"attention heads ({PRESET})", kind=int)
    intermediate_size: int | None = _flag(None, f"feed-forward width ({PRESET})", kind=int)
    seq_len: int | None = _flag(None, f"tokens per training sequence, 8..{MAX_SEQ_LEN} ({PRESET})", kind=int)
    vocab_size: int | None = _flag(None, f"tokenizer and embedding size ({PRESET})", kind=int)
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
    progress: bool = _flag(True, "progress: bars on a terminal, plain lines elsewhere (a log file, Slurm)")
    sync_debug: bool = _flag(False, "GPU: torch.cuda.set_sync_debug_mode('error') outside logging steps")

    def resolved(self) -> "Config":
        if self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        values = {k: (PRESETS[self.preset].get(k) if v is None and k in PRESETS[self.preset] else v)
                  for k, v in dataclasses.asdict(self).items()}
        cfg = Config(**values).with_defaults(values["hidden_size"])  # num_segments, mapnet_hidden
        if cfg.log_interval is None:
            cfg.log_interval = min(10, max(1, cfg.steps // 50))
        if cfg.warmup is None:
            cfg.warmup = max(1, cfg.steps // 20)
        cfg.validate()
        return cfg

    def masking_config(self) -> MaskingConfig:
        """The run's masking settings; the hf baseline's evaluation masks (and special ids) are random's."""
        return dataclasses.replace(super().masking_config(), masking="random" if self.masking == HF_BASELINE
                                   else self.masking)

    def validate(self) -> None:
        checks = [
            (self.masking in MASKINGS, f"--masking must be one of {MASKINGS}, got {self.masking!r}"),
            # pretrain masks fewer than every token (MaskingConfig allows p = 1: rows of [MASK] only)
            (0 < self.mlm_probability < 1, f"--mlm-probability must be in (0, 1), got {self.mlm_probability}"),
            (self.masks_per_row == 1 or self.masking != HF_BASELINE,
             f"--masks-per-row applies to --masking random or bernoulli, not {self.masking}"),
        ]
        self._raise_first(checks)
        self.masking_config().validate(FLAGS)  # every masking flag, named as a flag
        checks = [
            (self.hidden_size % self.num_heads == 0,
             f"--hidden-size {self.hidden_size} must be divisible by --num-heads {self.num_heads}"),
            (8 <= self.seq_len <= MAX_SEQ_LEN, f"--seq-len must be in [8, {MAX_SEQ_LEN}], got {self.seq_len}"),
            (not self.resume or self.out is not None, "--resume needs --out: the folder of the run to continue"),
            (not (self.resume and self.overwrite), "--resume continues the run in --out; --overwrite replaces it: "
                                                   "give one of them"),
        ]
        for name in ("batch_size", "grad_accum", "steps", "eval_interval", "eval_batches", "log_interval",
                     "checkpoint_interval", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "vocab_size"):
            checks.append((getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"))
        checks += [(self.lr > 0, f"--lr must be > 0, got {self.lr}"), (self.clip > 0, f"--clip must be > 0, got {self.clip}"),
                   (0 < self.eval_fraction < 1, f"--eval-fraction must be in (0, 1), got {self.eval_fraction}"),
                   (self.workers is None or self.workers >= 1, f"--workers must be >= 1, got {self.workers}")]
        self._raise_first(checks)

    @staticmethod
    def _raise_first(checks) -> None:
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


# The fields that fix the model's shape: a checkpoint must agree on them to be resumed.
MODEL_FIELDS = ("hidden_size", "num_layers", "num_heads", "intermediate_size", "seq_len", "vocab_size", "masking",
                "mapnet_layers", "mapnet_hidden")


DESCRIPTION = """Pretrains a BERT encoder by masked-language modelling, with fastmask's masking kernels and
sparse MLM head, on a CPU or a GPU (torchrun: one process per GPU or CPU process, DDP).

Output (--out; default: a new runs/pretrain-<date>-<time>): checkpoint.pt (model, optimizer,
schedule, RNG and step: continue with --resume), metrics.jsonl (a line per --log-interval),
curves.png (the losses and tokens/s), config.json (every resolved field), versions.json
(fastmask, torch, transformers, CUDA, Python, device, git commit), tokenizer/ (the run's own) and
hf-model/ (a Hugging Face folder: AutoModelForMaskedLM.from_pretrained loads it). Ctrl-C or
SIGTERM writes a checkpoint first; a run that fails before its first checkpoint leaves nothing.

examples:
  fastmask pretrain                                        # the tiny preset on the built-in corpus
  fastmask pretrain --masking fully-explored --preset small --corpus my_texts.jsonl
  fastmask pretrain --masking span --span-lengths ngram    # whole-word n-grams (Megatron-LM), as spans
  fastmask pretrain --masking hf                           # the same model the usual way, for comparison
  fastmask pretrain --out runs/a --resume                  # continue runs/a
  torchrun --nproc_per_node 8 -m fastmask pretrain --preset base
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastmask pretrain", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    masking = parser.add_argument_group("masking", "fastmask.MaskingConfig's fields: apply_fastmask and "
                                                   "MaskingStrategy take the same names (mlm_probability, ...)")
    masking_fields = {f.name for f in fields(MaskingConfig)}
    for f in fields(Config):
        flag, meta = "--" + f.name.replace("_", "-"), f.metadata
        group = masking if f.name in masking_fields else parser
        shown = f"{meta['help']} (default: {f.default})"
        if meta["kind"] is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=meta["help"])
        else:
            group.add_argument(flag, type=meta["kind"], default=f.default, choices=meta["choices"], help=shown,
                               metavar=None if meta["choices"] else f.name.upper())
    parser.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    return parser


def parse_args(argv: list[str] | None) -> tuple[Config, bool]:
    """(the configuration, whether --print-config was given)."""
    args = vars(_parser().parse_args(argv))
    print_config = args.pop("print_config")
    return Config(**args), print_config
