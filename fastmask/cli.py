"""Command line: fastmask pretrain, prepare, experiment, bench, info and demo (also python -m fastmask ...)."""

from __future__ import annotations

import argparse
import platform
import sys

import torch

from fastmask import library


def info(_args) -> int:
    """Versions, and which backends loaded on this machine and why not."""
    import fastmask
    from fastmask import backends

    a = backends.availability()
    print(f"fastmask {fastmask.__version__}  python {platform.python_version()}  torch {torch.__version__}")
    try:
        import triton

        print(f"triton {triton.__version__}  TRITON_INTERPRET={'1' if a.triton_interpret else 'unset'}")
    except ImportError:
        print("triton: not installed")
    cuda = torch.cuda.is_available()
    print(f"torch CUDA build: {torch.version.cuda or 'no'}  CUDA device visible: {cuda}")
    device_types = ["cpu"] + (["cuda"] if cuda else [])
    for device_type in device_types:
        auto = backends.resolve("auto", torch.device(device_type))
        print(f"\n{device_type} tensors (auto -> {auto}):")
        for backend in backends.BACKENDS[1:]:
            reason = backends.why_unavailable(backend, device_type)
            print(f"  {backend:9s} {'available' if reason is None else 'unavailable: ' + reason}")
    if not cuda:
        reason = backends.why_unavailable("cuda", "cuda")
        print(f"\ncuda kernels: {'built' if reason is None else reason}")
    return 0


def _demo_tokens() -> list[str]:
    """A sentence of the built-in corpus (text every Python install carries) in WordPiece-like tokens:
    words longer than 5 characters are cut into a head and ##-continuations, so the word strategies
    have words of several tokens to show."""
    import json

    return [piece for word in json.__doc__.split("\n\n")[0].split()
            for piece in (word[:5], *("##" + word[i:i + 5] for i in range(5, len(word), 5)))]


DEMO_TITLES = {  # per strategy (fastmask.strategy.STRATEGIES), the heading of its masked sentence
    "random": "random (exactly round(p n) tokens, p = 0.15)",
    "bernoulli": "bernoulli (each token with probability p = 0.15, as the HF collator, so the count varies; "
                 "drawn from random's keys, so one of the two sets holds the other)",
    "fully-explored": "fully-explored (K = 3 disjoint views here, all in one step; the default K is round(1/p) = 7)",
    "mapnet": "mapnet (drawn from a proposal net, with importance weights; this one is untrained: q uniform)",
    "whole-word": "whole-word (whole words, ##-continuations with their head, within the budget of round(p n) "
                  "tokens)",
    "span": "span (spans of whole words, geometric lengths as SpanBERT's, within the same budget)",
}


def demo(args) -> int:
    """Masks a sentence with each strategy, then times the C++ CPU kernel against the HF collator."""
    import fastmask
    from fastmask import baselines, data
    from fastmask.mapnet import proposal_width
    from fastmask.strategy import STRATEGIES, MaskingStrategy

    words = ["[CLS]", *_demo_tokens(), "[SEP]"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(list(data.SPECIAL_TOKENS) + words))}
    word_starts = torch.tensor([not w.startswith("##") for w in vocab])  # fastmask.word_start_table's rule
    itos = {i: w for w, i in vocab.items()}
    ids = torch.tensor([[vocab[w] for w in words]])
    specials = [vocab[t] for t in data.SPECIAL_TOKENS]
    mask_id, vocab_size = vocab["[MASK]"], len(vocab)

    def show(view, out_ids, labels):
        shown = [
            f"{itos[int(i)]}<-{itos[int(lab)]}" if lab != -100 and i != lab else
            (f"({itos[int(i)]})" if lab != -100 else itos[int(i)])
            for i, lab in zip(out_ids.tolist(), labels.tolist())
        ]
        print(f"  {view + ': ' if view else ''}{' '.join(shown)}")

    print("masked tokens show as NEW<-ORIGINAL, or (ORIGINAL) where the 10% 'keep' rule applied\n")
    for name in STRATEGIES:
        proposal = None
        if name == "mapnet":
            embedding = torch.nn.Embedding(vocab_size, 16)
            proposal = fastmask.MaskProposalNet(embedding, num_layers=1, hidden_size=proposal_width(16),
                                              max_len=ids.shape[1])
        strategy = MaskingStrategy(name, mask_token_id=mask_id, vocab_size=vocab_size, special_ids=specials,
                                   num_segments=3, seed=args.seed, proposal=proposal, word_start_table=word_starts)
        with torch.no_grad():
            step = strategy(ids, row_ids=torch.zeros(1, dtype=torch.int64), epoch=0)
        print(f"{DEMO_TITLES[name]}:")
        for view in range(step.views):
            show(f"view {view + 1} of {step.views}" if step.views > 1 else "", step.input_ids[view], step.labels[view])

    print(f"\nCPU speed at B={args.batch}, L={args.length} on {torch.get_num_threads()} threads:")
    import torch.utils.benchmark as benchmark

    tokenizer = baselines.in_memory_tokenizer(30522)
    collator = baselines.hf_collator(tokenizer)
    batch = torch.randint(len(data.SPECIAL_TOKENS), 30522, (args.batch, args.length))
    batch[:, 0], batch[:, -1] = tokenizer.cls_token_id, tokenizer.sep_token_id
    special_mask = fastmask.maskable_mask(batch, special_ids=[tokenizer.cls_token_id, tokenizer.sep_token_id])
    timers = {
        "HF collator": lambda: collator.torch_mask_tokens(batch.clone(), special_tokens_mask=~special_mask),
        "fastmask cpp": lambda: fastmask.mask_tokens(batch, special_mask, tokenizer.mask_token_id, 30522),
    }
    medians = {}
    for name, fn in timers.items():
        m = benchmark.Timer(stmt="fn()", globals={"fn": fn}).blocked_autorange(min_run_time=args.min_run_time)
        medians[name] = m.median
        print(f"  {name:13s} median {m.median * 1e3:8.2f} ms")
    print(f"  fastmask is {medians['HF collator'] / medians['fastmask cpp']:.1f}x faster than the HF collator")
    return 0


# The op families of the op table (each OpSpec's bench) and the end-to-end ones, in order of value per
# GPU minute (a --budget leaves out the last ones first): the ranked ones, then any other family of the
# table. `headline` (the training-step comparison, bench/bench_headline.py) and `data` (the data path,
# bench/bench_data.py, on the host) run only when named.
_RANKED_FAMILIES = ("masking", "gather", "proposal", "fully-explored")
BENCH_FAMILIES = (*_RANKED_FAMILIES,
                  *dict.fromkeys(spec.bench for spec in library.OPS.values() if spec.bench not in _RANKED_FAMILIES),
                  "step", "hf-step", "collator")
NAMED_ONLY = ("headline", "data")  # minutes each (a training step per --masking; corpora of 30 and 300 MB)


def bench(args) -> int:
    """Runs the benchmark scripts of the source checkout's bench/ folder (one per op family)."""
    import importlib.util
    import os
    import time
    import traceback

    import fastmask

    bench_dir = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(fastmask.__file__))), "bench")
    if not os.path.exists(os.path.join(bench_dir, "harness.py")):
        print(f"fastmask bench: no bench/ folder next to the package ({bench_dir}); it runs from a source "
              "checkout installed with `pip install -e .`", file=sys.stderr)
        return 2
    unknown = [f for f in args.family if f not in (*BENCH_FAMILIES, *NAMED_ONLY)]
    if unknown:
        print(f"fastmask bench: no family {', '.join(unknown)}; the families: {', '.join(BENCH_FAMILIES + NAMED_ONLY)}",
              file=sys.stderr)
        return 2
    sys.path.insert(0, bench_dir)
    import harness

    flags = ["--profile", "quick" if args.quick else args.profile, "--device", args.device]
    flags += (["--save"] if args.save else []) + (["--results-dir", os.path.abspath(args.results_dir)]
                                                  if args.results_dir else [])
    start, skipped, failed = time.monotonic(), [], []
    for family in args.family or BENCH_FAMILIES:
        left = None if args.budget is None else args.budget - (time.monotonic() - start)
        if left is not None and left <= 0:
            skipped.append(family)
            continue
        path = os.path.join(bench_dir, library.bench_script(family))
        spec = importlib.util.spec_from_file_location(library.bench_script(family)[:-3], path)
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print(f"\n## {family}\n", flush=True)
        try:
            if harness.run(family, module.__doc__, module.collect, module.BASELINES,
                           flags + ([] if left is None else ["--budget", f"{left:.1f}"])):
                failed.append(family)
        except Exception:  # the next families still run; the rows measured were saved
            traceback.print_exc()
            failed.append(family)
    if skipped:
        print(f"\nfastmask bench: the --budget of {args.budget:g} s was spent before {', '.join(skipped)}",
              file=sys.stderr)
    if failed:
        print(f"fastmask bench: failures in {', '.join(failed)} (above)", file=sys.stderr)
    return 1 if failed else 0


PREPARE_DESCRIPTION = """Tokenises a corpus once, in parallel, into memory-mapped token shards that
`fastmask pretrain --corpus DIR` trains from (every rank and loader thread sharing the OS page cache).

The corpus is streamed, never held in memory: .txt/.md files (a document per non-empty line), .jsonl
files (--text-column of each object), .parquet files and datasets save_to_disk folders (their
--text-column; need pyarrow: pip install 'fastmask[datasets]'), or a folder of such files; none:
the built-in corpus. DIR gets the shards (uint16 ids when the vocabulary fits, else uint32), an index
of documents and shards, the tokenizer and a content hash. Every file is written under a temporary
name and renamed: an interrupted prepare leaves whole shards only and continues when rerun; a
finished one is reused; a folder holding anything else is refused.

examples:
  fastmask prepare --corpus my_texts.jsonl --out data/my_texts           # trains a 30522-token WordPiece
  fastmask prepare --corpus data.parquet --text-column body --tokenizer my_tokenizer/ --out data/p
  fastmask pretrain --corpus data/my_texts --vocab-size 30522
"""


def prepare(args) -> int:
    from fastmask import data

    try:
        data.prepare_folder(args.corpus, args.out, args.tokenizer, args.vocab_size, text_column=args.text_column,
                            workers=args.workers, cache_dir=args.cache_dir, show_progress=args.progress)
    except ValueError as exc:
        print(f"fastmask prepare: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pretrain"]:  # its own parser: every Config field is a flag
        from fastmask.train import main as pretrain

        return pretrain(argv[1:])
    if argv[:1] == ["experiment"]:
        from fastmask import experiments

        return experiments.main(argv[1:])
    import fastmask

    parser = argparse.ArgumentParser(prog="fastmask", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastmask {fastmask.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions and available backends").set_defaults(fn=info)
    sub.add_parser("pretrain", help="BERT MLM pretraining (fastmask pretrain --help)")
    p = sub.add_parser("prepare", help="tokenise a corpus into token shards for pretraining (fastmask prepare --help)",
                       description=PREPARE_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", help="a file or folder (see above); default: the built-in corpus")
    p.add_argument("--out", required=True, help="the folder to write (new, empty, or an earlier prepare's)")
    p.add_argument("--tokenizer", help="a local Hugging Face tokenizer folder; default: train a WordPiece tokenizer "
                                       "on the corpus (cached in --cache-dir)")
    p.add_argument("--vocab-size", type=int, default=30522, help="tokens of the trained tokenizer (default: 30522)")
    p.add_argument("--text-column", default="text", help="the .jsonl field / parquet or datasets column holding "
                                                          "the text (default: text)")
    p.add_argument("--workers", type=int, help="tokenising processes (default: every core)")
    p.add_argument("--cache-dir", help="where a trained tokenizer is cached (default: $FASTMASK_CACHE or "
                                       "~/.cache/fastmask)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="a progress bar (tokens/s) on a terminal and the summary line")
    p.set_defaults(fn=prepare)
    sub.add_parser("experiment", help="gradient variance and convergence per masking strategy (fastmask experiment --help)")
    p = sub.add_parser("bench", help="benchmark every op family against its baselines (bench/ scripts)")
    p.add_argument("family", nargs="*", metavar="FAMILY",
                   help=f"families to run, of {', '.join(BENCH_FAMILIES)} (the default: all of them) and headline "
                        "(the training step of fastmask pretrain and of a Trainer with apply_fastmask against "
                        "their baselines) and data (prepare, the training loader and pretrain's memory on 30 and "
                        "300 MB corpora), which run only when named")
    p.add_argument("--profile", choices=("quick", "full", "gpu"), default="full",
                   help="quick: small shapes, a smoke run; full: every shape for the device; gpu: realistic "
                        "shapes sized for the scripts/gpu/ kit (bench/harness.py PROFILES)")
    p.add_argument("--quick", action="store_true", help="--profile quick")
    p.add_argument("--budget", type=float, help="seconds for the whole run: no contender starts after them, the "
                                                "rows measured stand")
    p.add_argument("--save", action="store_true", help="append the rows to bench/results/ (tracked: for full runs)")
    p.add_argument("--results-dir", help="append the rows here instead (implies --save)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.set_defaults(fn=bench)
    p = sub.add_parser("demo", help="mask an example and time the CPU kernel against the HF collator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--min-run-time", type=float, default=1.0, help="seconds of timing per contender")
    p.set_defaults(fn=demo)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
