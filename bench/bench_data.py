"""Benchmark of the pretraining data path: preparing token shards, serving training batches from
them, and what `fastmask pretrain` costs in memory and start-up on corpora of two sizes.

The corpora are generated English: the built-in corpus' documents (Python's docstrings) in a
seeded random order, repeated to 30 MB and 300 MB (3 MB and 12 MB with --quick), one document per
line of a .txt file. The tokenizer: a 4096-token WordPiece trained on the built-in corpus (the
tiny preset's), the same for every contender. Ops:

  prepare       the corpus into token shards (`fastmask.data.prepare_folder`, files written) with 1
                and 2 workers, against the tokenizer alone: tokenizers' encode_batch_fast on one
                thread, in memory, writing nothing (the ceiling of one worker). One run each; the
                row's metrics carry tokens/s and tokens/s per worker
  loader        training batches of 256 x 128 on one core (torch.set_num_threads(1)): fastmask's
                Batches (rows read from the memory-mapped shards, the per-epoch permutation) against
                the transformers-style pipeline on the same rows: a datasets.Dataset of input_ids,
                DataLoader(shuffle=True, num_workers=0) and DataCollatorForLanguageModeling (which
                also masks, on the CPU: fastmask masks on the device, inside the step)
  pretrain      `fastmask pretrain --steps 2` (tiny preset) in a fresh process on each corpus:
                cold (a fresh cache: tokenizer training and prepare included) and warm (the corpus
                prepared before), and warm with 2 DDP ranks on gloo (one row per rank). Metrics:
                peak_rss_mib (the process' resident-set high-water mark, VmHWM), first_step_s
                (process start to the first logged step); median_ms is the whole run's wall time.
                With FASTMASK_BENCH_PREVIOUS=<a checkout of an earlier commit> its loop runs the
                same cold and warm runs as the baseline `in-memory-rows` (every text a Python
                string, the packed corpus one in-memory tensor per process)

    python bench/bench_data.py            # 30 MB and 300 MB corpora (minutes on 2 cores)
    python bench/bench_data.py --quick    # 3 MB and 12 MB
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from fastmask import data  # noqa: E402
from fastmask.data.loader import Batches  # noqa: E402
from fastmask.data.shards import plain_backend  # noqa: E402

BASELINES = harness.baselines("tokenizer-alone", "hf-data-pipeline", "in-memory-rows")
BATCH, SEQ_LEN, VOCAB = 256, 128, 4096
PEAK_RSS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peak_rss.py")


def generated_corpus(path: str, megabytes: int) -> str:
    """A .txt of `megabytes` MB: the built-in documents in a seeded random order, repeated."""
    docs = [t.replace("\n", " ") for t in data.builtin_texts()]
    rng = random.Random(0)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * 1_000_000:
            rng.shuffle(docs)
            for doc in docs:
                f.write(doc + "\n")
                written += len(doc) + 1
                if written >= megabytes * 1_000_000:
                    break
    return path


def one_run(op, shape, backend, seconds, metrics, device) -> harness.Row:
    ms = seconds * 1e3
    return harness.make_row(op, shape, torch.int32, backend, (ms, ms, ms), None, device, metrics)


def bench_prepare(corpus: str, tokenizer_dir: str, work: str, shape: str, device) -> list:
    rows = []
    texts = data.load_texts(corpus)
    backend = plain_backend(data.load_tokenizer(tokenizer_dir))
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread, as in a worker
    start = time.perf_counter()
    tokens = sum(len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False))
    seconds = time.perf_counter() - start
    del os.environ["TOKENIZERS_PARALLELISM"]
    del texts
    rows.append(one_run("prepare", shape, "tokenizer-alone", seconds,
                        dict(tokens_per_s=round(tokens / seconds), tokens_per_s_per_worker=round(tokens / seconds)),
                        device))
    for workers in (1, 2):
        harness.check_budget(f"prepare with {workers} workers")
        start = time.perf_counter()
        shards = data.prepare_folder(corpus, os.path.join(work, f"prepared-{workers}"), tokenizer_dir,
                                     workers=workers, show_progress=False)
        seconds = time.perf_counter() - start  # the corpus fingerprint (a pass hashing its bytes) included
        rows.append(one_run("prepare", shape, f"fastmask-{workers}w", seconds,
                            dict(tokens_per_s=round(shards.tokens / seconds),
                                 tokens_per_s_per_worker=round(shards.tokens / seconds / workers),
                                 shards=len(shards.index["shards"])), device))
    return rows


def bench_loader(prepared: str, tokenizer_dir: str, device, profile) -> list:
    import datasets
    import transformers

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core
    try:
        train = data.split(data.Shards(prepared).rows(SEQ_LEN), 0.0)[0]
        batches = Batches(train, BATCH, seed=0, rank=0, world=1)
        steps = itertools.count()
        ours = lambda: batches(next(steps))  # noqa: E731
        n = min(len(train), 64 * BATCH)  # the pipeline's dataset: the first rows (building it is not timed)
        dataset = datasets.Dataset.from_dict({"input_ids": train[:n].tolist()})
        collator = transformers.DataCollatorForLanguageModeling(data.load_tokenizer(tokenizer_dir), mlm_probability=0.15)
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=0, collate_fn=collator)
        state = {"it": iter(loader)}

        def theirs():
            try:
                return next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                return next(state["it"])

        shape = f"{BATCH}x{SEQ_LEN}"
        rows = harness.time_contenders("loader", shape, torch.int32, {"hf-data-pipeline": theirs, "fastmask": ours},
                                       [()], None, torch.device("cpu"), profile)
    finally:
        torch.set_num_threads(threads)
    for row in rows:
        per_s = BATCH / (row.median_ms / 1e3)
        row.metrics.update(rows_per_s=round(per_s), tokens_per_s=round(per_s * SEQ_LEN))
    return rows


def pretrain(corpus: str, cache: str, out: str, ranks: int, pythonpath: str | None = None) -> tuple[float, float, list]:
    """(wall seconds, seconds to the first logged step, [peak RSS MiB per rank]) of one run."""
    args = ["--corpus", corpus, "--cache-dir", cache, "--out", out, "--steps", "2", "--log-interval", "1",
            "--eval-batches", "1", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1" if ranks > 1 else os.environ.get("OMP_NUM_THREADS", "2"))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = ([sys.executable, PEAK_RSS, *args] if ranks == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks), PEAK_RSS,
            *args])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first, peaks, lines = None, {}, []
    for line in proc.stdout:
        lines.append(line)
        if first is None and line.startswith("step 1/"):
            first = time.perf_counter() - start
        if line.startswith("peak_rss_mib "):
            rank, mib = line.split()[1:3]
            peaks[int(rank)] = float(mib)
    err = proc.stderr.read()
    if proc.wait() != 0:
        raise RuntimeError(f"pretrain failed ({proc.returncode}): {err[-2000:]}")
    return time.perf_counter() - start, first, [peaks[r] for r in sorted(peaks)]


def bench_pretrain(corpus: str, shape: str, work: str, device) -> list:
    rows = []
    previous = os.environ.get("FASTMASK_BENCH_PREVIOUS")
    runs = [("fastmask", None)] + ([("in-memory-rows", previous)] if previous else [])
    for backend, pythonpath in runs:
        cache = tempfile.mkdtemp(dir=work, prefix=f"cache-{backend}-")
        for kind in ("cold", "warm"):
            harness.check_budget(f"pretrain {shape} {backend} {kind}")
            wall, first, peaks = pretrain(corpus, cache, tempfile.mkdtemp(dir=work), 1, pythonpath)
            rows.append(one_run(f"pretrain_{kind}", shape, backend, wall,
                                dict(peak_rss_mib=peaks[0], first_step_s=round(first, 2)), device))
        harness.check_budget(f"pretrain {shape} {backend} 2 ranks")
        wall, first, peaks = pretrain(corpus, cache, tempfile.mkdtemp(dir=work), 2, pythonpath)
        rows.append(one_run("pretrain_ddp2", shape, backend, wall,
                            dict(peak_rss_mib=max(peaks), peak_rss_mib_per_rank=peaks, first_step_s=round(first, 2)),
                            device))
    return rows


def collect(device, profile):
    device = torch.device("cpu")  # the data path runs on the host whatever the device
    sizes = (3, 12) if profile.quick else (30, 300)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastmask-bench-data-") as work:
        tokenizer = data.prepare(None, None, VOCAB, SEQ_LEN, 0.02, os.path.join(work, "cache"), False).tokenizer
        tokenizer_dir = os.path.join(work, "tokenizer")
        tokenizer.save_pretrained(tokenizer_dir)
        for megabytes in sizes:
            corpus = generated_corpus(os.path.join(work, f"corpus-{megabytes}mb.txt"), megabytes)
            shape = f"{megabytes}MB"
            if megabytes == sizes[0]:
                rows += bench_prepare(corpus, tokenizer_dir, work, shape, device)
                rows += bench_loader(os.path.join(work, "prepared-2"), tokenizer_dir, device, profile)
            rows += bench_pretrain(corpus, shape, work, device)
            os.unlink(corpus)
    return rows


if __name__ == "__main__":
    sys.exit(harness.run("data", __doc__, collect, BASELINES))
