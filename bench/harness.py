"""Shared benchmark harness: timing, the copy-bandwidth floor, result rows of one schema, the
baselines' table, the profiles (how much a run measures), the contenders every family shares and
the inputs they are timed on.

GPU: ``triton.testing.do_bench`` (median, p20, p80) after warm-up, with inputs rotated through
more than L2 so no contender runs from cache. CPU: ``torch.utils.benchmark`` (median over blocks,
p20/p80 from its raw times). End-to-end steps: windows of steps, each ending with a device sync
(``time_steps``). Every figure is reported next to baselines from the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from typing import Callable, Iterable, Sequence

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import fastmask
from fastmask import reference
from fastmask.data import SPECIAL_TOKENS
from fastmask.reference import IGNORE_INDEX

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
L2_BYTES = 64 << 20  # above the L2 of every current GPU (H100: 50 MiB)

# Every baseline a script may time, in the order of the speed-up columns (scripts and report.py).
BASELINES = {
    "hf-collator": "Hugging Face DataCollatorForLanguageModeling.torch_mask_tokens on CPU tensors, given its "
                   "special-tokens mask: what most trainers run today",
    "hf-collator-call": "Hugging Face DataCollatorForLanguageModeling.__call__ on tokenized features (dicts of lists "
                        "of ints): tokenizer.pad, the per-row special-tokens loop when the features lack a mask, "
                        "the masking (for collator_pad: its tokenizer.pad alone)",
    "megatron-python": "whole-word n-gram masking as Megatron-LM's BERT data writes it: per row in Python and numpy, "
                       "shuffled word starts, P(n) proportional to 1/n, n-grams kept while within the exact budget "
                       "(bench_words.py; on CPU tensors)",
    "eager-torch": "the same masking in eager PyTorch with torch's RNG (no Philox), on the device",
    "eager-isin": "attention_mask & ~torch.isin(ids, special ids) in eager PyTorch",
    "eager-multinomial": "eager PyTorch: softmax + mixing, torch.multinomial without replacement, importance "
                         "weights and 80/10/10 (torch's RNG)",
    "reference": "fastmask's reference backend: the same algorithm and Philox draws in eager PyTorch",
    "compiled-ref": "the reference function under torch.compile (inductor), on the op arguments the public "
                    "function passes (GPU only: inductor on CPU is not the point)",
    "bool-index": "boolean indexing by labels != -100 (hidden[mask]; its scatter out[mask] = values): dynamic "
                  "shape, a host sync on GPU",
    "index-select": "index_select on the flattened positions (its scatter: index_add_): static shape, given the "
                    "positions",
    "eager-nonzero": "the labelled positions by nonzero and index assignment in eager PyTorch: a host sync on GPU",
    "materialised-logits": "the head's loss as transformers computes it: F.linear onto the vocabulary, then "
                           "F.cross_entropy on the (N, V) logits (float32), forward + backward",
    "dense-head": "BertForMaskedLM(input_ids, labels=...): the vocabulary head on every token",
    "sparse-head": "the same encoder with fastmask's sparse head on the same masks (gathered tokens)",
    "hf-pretrain": "fastmask pretrain --masking hf: the same loop, model and data, masked by transformers' "
                   "DataCollatorForLanguageModeling on the CPU and trained through BertForMaskedLM's dense head",
    "tokenizer-alone": "tokenizers' encode_batch_fast on one thread, in memory, writing nothing: the ceiling of "
                       "one prepare worker",
    "hf-data-pipeline": "a datasets.Dataset of input_ids, DataLoader(shuffle=True, num_workers=0) and "
                        "DataCollatorForLanguageModeling (which masks on the CPU too), on one core",
    "in-memory-rows": "fastmask pretrain before token shards (FASTMASK_BENCH_PREVIOUS): every text a Python string, "
                      "the packed corpus one in-memory tensor per process",
    "hf-trainer-step": "what a Trainer step runs today: transformers' DataCollatorForLanguageModeling on the "
                       "features (CPU), the copy to the device, the unpatched model's forward and backward",
}
# fastmask's kernels per device type; Triton on CPU is the interpreter, not a contender.
KERNEL_BACKENDS = {"cpu": ("cpp",), "cuda": ("cuda", "triton")}

# The inputs every family is timed on: BERT's vocabulary, fastmask's special tokens, p = 0.15.
VOCAB, P = 30522, 0.15
MASK_ID = SPECIAL_TOKENS.index("[MASK]")
WORD_START_P = 0.75  # WordPiece on English text: about 3 tokens in 4 begin a word


@dataclass(frozen=True)
class Profile:
    """How much a run measures. Each family's collect() picks its shapes by the profile's name."""

    name: str
    help: str
    quick: bool  # rows marked as a smoke run's: saved only on request, never reported
    min_run_time: float  # CPU: seconds of torch.utils.benchmark per contender
    warmup_ms: int  # GPU: do_bench's warm-up and repetition times
    rep_ms: int


PROFILES = {p.name: p for p in (
    Profile("quick", "small shapes, short timings: a smoke run (rows never reported)", True, 0.05, 5, 20),
    Profile("full", "every shape of every family for the device (the default)", False, 0.5, 25, 100),
    Profile("gpu", "realistic shapes (256x512, 1024x512 and 32x8192 tokens; BERT-base/large widths for gather) "
                   "with shorter GPU timings, sized with --budget for the scripts/gpu/ kit (about 2 minutes of an "
                   "H100/H200 for the op families)", False, 0.5, 10, 40),
)}


class OutOfBudget(Exception):
    """Raised by time_contenders once the run's --budget is spent: the rows measured so far stand."""


_deadline: float | None = None  # time.monotonic() after which no further contender starts
FAILED: list[str] = []  # contenders that raised during the current run(): reported, the others timed


def set_budget(seconds: float | None) -> None:
    """No contender starts more than `seconds` from now (None: no limit)."""
    global _deadline
    _deadline = None if seconds is None else time.monotonic() + seconds


def check_budget(what: str, needs: float = 0.0) -> None:
    """Raises OutOfBudget unless `needs` seconds are left of the budget for `what`."""
    if _deadline is not None and time.monotonic() + needs > _deadline:
        raise OutOfBudget(f"the --budget was spent before {what}" + (f" (which needs about {needs:.0f} s)" if needs else ""))


def baselines(*names: str) -> tuple[str, ...]:
    """A script's speed-up columns, picked from BASELINES by name."""
    unknown = [name for name in names if name not in BASELINES]
    if unknown:
        raise KeyError(f"not in harness.BASELINES: {unknown}")
    return names


def kernel_backends(device: torch.device) -> list[str]:
    """fastmask's kernels that can run here."""
    return [b for b in KERNEL_BACKENDS[device.type] if fastmask.backends.why_unavailable(b, device.type) is None]


class _FirstOpCall(TorchDispatchMode):
    """Records the first fastmask op a call dispatches, with its arguments."""

    def __init__(self):
        super().__init__()
        self.op, self.args = None, None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.op is None and func.namespace == "fastmask":
            self.op, self.args = func, args
        return func(*args, **(kwargs or {}))


_COMPILED: dict[str, Callable] = {}  # reference function name -> its torch.compile, once per process


def _compiled(name: str) -> Callable:
    """The reference function `name` under torch.compile with dynamic shapes: compiled once for every
    shape of a family (the constant arguments, such as exact_count, may add a graph each)."""
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(getattr(reference, name), dynamic=True)
    return _COMPILED[name]


class CompiledReference:
    """The reference function of the op that ``call(*inputs, backend="reference")`` runs, compiled by
    torch.compile (dynamic shapes): compiling the public call would only wrap the opaque custom op.
    Bound at the first call from the op arguments the public function passes; later inputs take
    their positions. ``prepare`` makes the first call at a shape outside any timing and says how
    long it took and whether Dynamo compiled a graph for it."""

    def __init__(self, call: Callable):
        self.call, self.run = call, None

    def _bind(self, inputs):
        with _FirstOpCall() as first:
            self.call(*inputs, backend="reference")
        compiled = _compiled(first.op._opname.removesuffix("_reference"))
        slots = [next((i for i, x in enumerate(inputs) if a is x), None) for a in first.args]
        constants = first.args

        def run(*xs):
            return compiled(*(a if slot is None else xs[slot] for a, slot in zip(constants, slots)))

        self.run = run

    def prepare(self, *inputs) -> dict:
        if self.run is None:
            self._bind(inputs)
        return first_call(self.run, inputs)

    def __call__(self, *inputs):
        if self.run is None:
            self._bind(inputs)
        return self.run(*inputs)


def first_call(fn: Callable, inputs: tuple) -> dict:
    """Calls fn(*inputs) once, outside any timing: {"compile_s": its seconds, device work included,
    "new_graph": whether Dynamo compiled a graph for it (False: a cached graph served these shapes)}."""
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    start = time.perf_counter()
    fn(*inputs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return dict(compile_s=round(time.perf_counter() - start, 3), new_graph=counters["stats"]["unique_graphs"] > graphs)


def fastmask_contenders(call: Callable, device: torch.device) -> dict[str, Callable]:
    """call(*inputs, backend=...) as the reference, the reference compiled by inductor (GPU) and each kernel here."""
    contenders = {"reference": partial(call, backend="reference")}
    if device.type == "cuda":
        contenders["compiled-ref"] = CompiledReference(call)
    contenders.update({b: partial(call, backend=b) for b in kernel_backends(device)})
    return contenders


def sizes(device: torch.device, profile: Profile) -> list[tuple[int, int]]:
    """(batch, length) of the token-level families."""
    if profile.name == "quick":
        return [(32, 128)]
    if device.type == "cuda":
        if profile.name == "gpu":
            return [(256, 512), (1024, 512), (32, 8192)]
        return [(32, 128), (256, 128), (256, 512), (1024, 512), (64, 8192)]
    return [(32, 128), (256, 512)]


def special_ids(device: torch.device) -> torch.Tensor:
    """The ids of every special token (their indices in SPECIAL_TOKENS)."""
    return torch.arange(len(SPECIAL_TOKENS), device=device)


def random_ids(batch: int, length: int, device: torch.device) -> torch.Tensor:
    """Random word ids: no special token."""
    return torch.randint(len(SPECIAL_TOKENS), VOCAB, (batch, length), device=device)


def make_inputs(batch: int, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Random ids framed by [CLS] ... [SEP], and their maskable mask."""
    ids = random_ids(batch, length, device)
    ids[:, 0], ids[:, -1] = SPECIAL_TOKENS.index("[CLS]"), SPECIAL_TOKENS.index("[SEP]")
    return ids, fastmask.maskable_mask(ids, special_ids=special_ids(device))


def make_word_inputs(batch: int, length: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """Ragged rows padded to `length` as a WordPiece tokenizer gives them: [CLS], words of one or more
    tokens (about WORD_START_P of the tokens begin one), [SEP], then padding; length // 8 .. length
    tokens a row. Returns (ids, attention_mask, special_tokens_mask, word_start, offset_mapping):
    word_start True where a word begins and on the specials (as fastmask.word_start_table marks
    them); offset_mapping (B, L, 2) the tokens' character spans, a space before each word and none
    inside one, (0, 0) on specials and padding (what transformers' whole-word masking reads)."""
    position = torch.arange(length, device=device)
    lengths = torch.randint(max(length // 8, 2), length + 1, (batch, 1), device=device)
    attended = position < lengths
    special = (position == 0) | (position >= lengths - 1)  # [CLS], [SEP] and the padding
    ids = random_ids(batch, length, device).masked_fill(~attended, SPECIAL_TOKENS.index("[PAD]"))
    ids[:, 0] = SPECIAL_TOKENS.index("[CLS]")
    ids.scatter_(1, lengths - 1, SPECIAL_TOKENS.index("[SEP]"))
    word_start = special | (torch.rand(batch, length, device=device) < WORD_START_P)
    characters = torch.randint(1, 5, (batch, length), device=device)
    ends = (characters + word_start.long()).masked_fill(special, 0).cumsum(1)
    offsets = torch.stack([ends - characters, ends], -1).masked_fill(special[..., None], 0)
    return ids, attended.long(), special.long(), word_start, offsets


def eager_replace(ids: torch.Tensor, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 80/10/10 rule on the chosen positions as the eager baselines write it (torch's RNG): (ids, labels)."""
    action = torch.rand(ids.shape, device=ids.device)
    replacements = torch.randint(VOCAB, ids.shape, device=ids.device, dtype=ids.dtype)
    out = torch.where(action < 0.8, MASK_ID, torch.where(action < 0.9, replacements, ids))
    return torch.where(chosen, out, ids), torch.where(chosen, ids, IGNORE_INDEX)


@dataclass
class Row:
    op: str
    shape: str
    dtype: str
    backend: str
    median_ms: float
    p20_ms: float
    p80_ms: float
    floor_fraction: float | None  # copy-bandwidth time of the op's bytes / median (1.0 = at the floor)
    device: str
    torch: str
    triton: str | None
    cuda: str | None
    git_sha: str
    date: str
    quick: bool = False  # a --quick smoke run: saved only on request, never reported
    # Figures beside the timing, per family: compiled-ref's compile_s and new_graph (its first call at
    # the shape, outside the timing); the end-to-end steps' tokens_per_s, peak_mib, masking_share, sync.
    metrics: dict = field(default_factory=dict)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def _git_sha() -> str:
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _triton_version() -> str | None:
    try:
        import triton

        return triton.__version__
    except ImportError:
        return None


def rotating(make_inputs: Callable[[], tuple], bytes_per_set: int, device: torch.device) -> list[tuple]:
    """Enough input sets that cycling through them evicts L2 between calls (one set on CPU)."""
    count = 1 if device.type == "cpu" else max(2, -(-2 * L2_BYTES // max(bytes_per_set, 1)))
    return [make_inputs() for _ in range(min(count, 64))]


def time_fn(fn: Callable, input_sets: Sequence[tuple], device: torch.device, profile: Profile) -> tuple[float, float, float]:
    """(median, p20, p80) in milliseconds of fn(*inputs), cycling through the input sets."""
    state = {"i": 0}

    def call():
        args = input_sets[state["i"] % len(input_sets)]
        state["i"] += 1
        return fn(*args)

    if device.type == "cuda":
        from triton.testing import do_bench

        p50, p20, p80 = do_bench(call, warmup=profile.warmup_ms, rep=profile.rep_ms, quantiles=[0.5, 0.2, 0.8])
        return p50, p20, p80
    import torch.utils.benchmark as benchmark

    call()  # warm-up
    m = benchmark.Timer(stmt="call()", globals={"call": call}).blocked_autorange(min_run_time=profile.min_run_time)
    times = torch.tensor(m.times) * 1e3
    return m.median * 1e3, torch.quantile(times, 0.2).item(), torch.quantile(times, 0.8).item()


@contextlib.contextmanager
def sync_checked(device: torch.device, enabled: bool = True):
    """On a GPU, any host synchronisation inside raises (torch.cuda.set_sync_debug_mode("error"))."""
    if not (enabled and device.type == "cuda"):
        yield
        return
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def time_steps(step: Callable[[], None], device: torch.device, windows: int, per_window: int,
               sync_check: bool = True, warmup: int = 2) -> list[float]:
    """Milliseconds per step of each window of `per_window` steps, after `warmup` steps: wall time
    up to a device sync at the window's end (outside the check), as `fastmask pretrain` logs its
    windows. With sync_check, any host sync inside a window raises (GPU)."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        with sync_checked(device, sync_check):
            for _ in range(per_window):
                step()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1e3 / per_window)
    return times


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, p20, p80) of measurements, as the rows hold them."""
    t = torch.tensor(list(values), dtype=torch.float64)
    return tuple(torch.quantile(t, q).item() for q in (0.5, 0.2, 0.8))


def copy_ms_per_byte(device: torch.device) -> float:
    """Device-to-device copy time per byte moved (read + write), measured now, from a 256 MiB copy."""
    src = torch.empty(64 << 20, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    median, _, _ = time_fn(lambda: dst.copy_(src), [()], device, PROFILES["full"])
    return median / (2 * src.numel() * src.element_size())


def make_row(op, shape, dtype, backend, timing, floor_ms, device, metrics: dict | None = None) -> Row:
    median, p20, p80 = timing
    return Row(
        op=op, shape=shape, dtype=str(dtype).replace("torch.", ""), backend=backend,
        median_ms=round(median, 5), p20_ms=round(p20, 5), p80_ms=round(p80, 5),
        floor_fraction=None if floor_ms is None else round(floor_ms / median, 4),
        device=device_name(device), torch=torch.__version__, triton=_triton_version(), cuda=torch.version.cuda,
        git_sha=_git_sha(), date=datetime.date.today().isoformat(), metrics=metrics or {},
    )


def time_contenders(op, shape, dtype, contenders: dict[str, Callable], input_sets, floor_ms, device,
                    profile: Profile) -> list[Row]:
    """One row per contender (name -> fn(*inputs)), each timed on the same input sets. A contender
    with a ``prepare`` (compiled-ref) makes its first call before, outside the timing, and its row
    carries what that call cost."""
    rows = []
    for name, fn in contenders.items():
        check_budget(f"{op} {shape} {name}")
        try:
            metrics = fn.prepare(*input_sets[0]) if hasattr(fn, "prepare") else None
            timing = time_fn(fn, input_sets, device, profile)
        except Exception as exc:  # one contender failing (a compile error, say) must not cost the others
            traceback.print_exc()
            FAILED.append(f"{op} {shape} {str(dtype).replace('torch.', '')} {name}: {type(exc).__name__}: "
                          f"{str(exc)[:200]}")
            continue
        rows.append(make_row(op, shape, dtype, name, timing, floor_ms, device, metrics))
    return rows


def save(rows: list[Row], name: str, device: torch.device, results_dir: str = RESULTS_DIR) -> str:
    """Appends rows as JSON lines to <results_dir>/<name>-<device>.jsonl (default bench/results/); returns the path."""
    os.makedirs(results_dir, exist_ok=True)
    tag = "cpu" if device.type == "cpu" else device_name(device).replace(" ", "-")
    path = os.path.join(results_dir, f"{name}-{tag}.jsonl")
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(asdict(row)) + "\n")
    return path


def metric_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(rows: Sequence[dict], extra: Sequence[str] = ()) -> str:
    """A Markdown table of rows (dicts of Row's fields), each with its speed-up over every baseline
    of BASELINES measured in the same run (same commit, date, device, op, shape and dtype), then
    the metrics present and the `extra` fields."""
    runs: dict = {}
    for r in rows:
        runs.setdefault(_run_key(r), {})[r["backend"]] = r["median_ms"]
    present = [b for b in BASELINES if any(b in by_backend for by_backend in runs.values())]
    metrics = list(dict.fromkeys(k for r in rows for k in r.get("metrics") or {}))
    header = ["op", "shape", "dtype", "backend", "median ms", "p20-p80 ms", *(f"x vs {b}" for b in present), *metrics,
              "floor fraction", *extra]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "---|" * 4 + "---:|" * (len(header) - 4 - len(extra)) + "---|" * len(extra)]
    for r in rows:
        same_run = runs[_run_key(r)]
        cells = [r["op"], r["shape"], r["dtype"], r["backend"], f"{r['median_ms']:.4f}",
                 f"{r['p20_ms']:.4f}-{r['p80_ms']:.4f}",
                 *(f"{same_run[b] / r['median_ms']:.1f}" if b in same_run else "-" for b in present),
                 *(metric_text((r.get("metrics") or {}).get(m)) for m in metrics),
                 "-" if r["floor_fraction"] is None else f"{r['floor_fraction']:.2f}", *(str(r[e]) for e in extra)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _run_key(r: dict) -> tuple:
    return r["git_sha"], r["date"], r["device"], r["op"], r["shape"], r["dtype"]


def load_rows(path: str, include_quick: bool = False) -> list[dict]:
    """The rows of a results file, smoke-test (--quick) rows left out (they are never reported)
    unless include_quick (the GPU kit's dry run, published into a scratch folder only)."""
    with open(path) as f:
        return [row for row in map(json.loads, filter(str.strip, f)) if include_quick or not row.get("quick")]


def run(name: str, doc: str, collect: Callable[[torch.device, Profile], Iterable[Row]], columns: Sequence[str],
        argv=None) -> int:
    """The command line every bench script shares: collect(device, profile) -> rows, printed as a
    table with a speed-up column per baseline in `columns`; with --save (or --results-dir) appended
    to <results dir>/<name>-<device>.jsonl as each is measured (a killed run loses none), --quick
    rows marked as such. With --budget, the run stops starting contenders once it is spent and says
    what it left out. Exit status 1 if a contender failed (the others are timed all the same)."""
    epilog = "baselines (the speed-up columns):\n" + "\n".join(f"  {b:18s} {BASELINES[b]}" for b in columns)
    epilog += "\n\nprofiles:\n" + "\n".join(f"  {p.name:18s} {p.help}" for p in PROFILES.values())
    parser = argparse.ArgumentParser(description=doc, epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", choices=tuple(PROFILES), default="full", help="how much to measure")
    parser.add_argument("--quick", action="store_true", help="--profile quick")
    parser.add_argument("--budget", type=float, help="seconds: no contender starts after them")
    parser.add_argument("--save", action="store_true", help="append the rows to bench/results/ (tracked: for "
                                                            "full runs worth reporting)")
    parser.add_argument("--results-dir", help="append the rows here instead (implies --save)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    profile = PROFILES["quick" if args.quick else args.profile]
    if args.budget is not None:
        set_budget(args.budget)
    rows, path = [], None
    FAILED.clear()
    try:
        for row in collect(device, profile):
            rows.append(replace(row, quick=profile.quick))
            if args.save or args.results_dir:
                path = save(rows[-1:], name, device, args.results_dir or RESULTS_DIR)
    except OutOfBudget as exc:
        print(f"{name}: {exc}: {len(rows)} rows measured, the rest left out", file=sys.stderr)
    finally:  # also when collect fails: the rows measured before are printed (and were saved)
        set_budget(None)
        print(table([asdict(row) for row in rows]))
        if path:
            print("\nappended to", path)
    if FAILED:
        print(f"{name}: {len(FAILED)} contenders failed (not timed):\n  " + "\n  ".join(FAILED), file=sys.stderr)
    return 1 if FAILED else 0
