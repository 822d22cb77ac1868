"""Benchmark of whole-word and span masking: fastmask.whole_word_mask (a Bernoulli draw per word,
and exact count as whole_word_mask_exact) and fastmask.span_mask (span_mask_geometric: SpanBERT's
lengths; span_mask_ngram: Megatron-LM's n-grams), next to fastmask.mask_tokens on the same rows.

The rows are ragged ([CLS] words [SEP] padding, length/8 .. length tokens, about 3 tokens in 4
beginning a word: harness.make_word_inputs). Every row is timed against the baselines named in
BASELINES below (`--help` lists them), the reference backend (on GPU also under torch.compile) and
fastmask's kernels. A words op's rows carry `vs_mask_tokens`: its median over mask_tokens' median
on the same backend in this run (mask_tokens_exact's for the exact-budget ops); the goal is at
most 1.5. The floor is the op's bytes read + written at this run's copy bandwidth.

    python bench/bench_words.py            # sizes for the current device
    python bench/bench_words.py --quick    # CPU smoke run, seconds
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import replace

import numpy as np
import torch
import transformers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

import fastmask  # noqa: E402
from fastmask import baselines  # noqa: E402
from fastmask.reference import IGNORE_INDEX  # noqa: E402

BASELINES = harness.baselines("hf-collator", "megatron-python", "reference")
# transformers' whole-word masking compares every pair of tokens of a row: a (B, L, L) tensor, so
# it is timed on rows of up to 512 tokens only.
HF_MAX_LENGTH = 512


def megatron_python(ids, maskable, word_start, max_ngram, rng):
    """Whole-word n-gram masking one row at a time, as Megatron-LM's BERT dataset does it in its
    workers: the row's words (a head and its continuations), the word indices shuffled as n-gram
    starts, n drawn with P(n) proportional to 1/n (n <= max_ngram), an n-gram kept unless it overlaps
    a kept one or would exceed the budget fastmask.masked_count(n, p), then 80/10/10 per token."""
    ngram_p = 1 / np.arange(1, max_ngram + 1)
    ngram_p /= ngram_p.sum()
    out, labels = ids.tolist(), torch.full_like(ids, IGNORE_INDEX).tolist()
    for row, (row_ids, row_maskable, row_starts) in enumerate(zip(out, maskable.tolist(), word_start.tolist())):
        words = []
        for i, (m, start) in enumerate(zip(row_maskable, row_starts)):
            if m and (start or not words or not row_maskable[i - 1]):
                words.append([i])
            elif m:
                words[-1].append(i)
        budget = fastmask.masked_count(sum(row_maskable), harness.P)
        taken, chosen = [False] * len(words), []
        for first, n in zip(rng.permutation(len(words)), rng.choice(max_ngram, len(words), p=ngram_p) + 1):
            if len(chosen) >= budget:
                break
            ngram = range(first, min(first + n, len(words)))
            size = sum(len(words[w]) for w in ngram)
            if any(taken[w] for w in ngram) or len(chosen) + size > budget:
                continue
            for w in ngram:
                taken[w] = True
                chosen += words[w]
        action, replacements = rng.random(len(chosen)), rng.integers(harness.VOCAB, size=len(chosen))
        for i, a, r in zip(chosen, action, replacements):
            labels[row][i] = row_ids[i]
            row_ids[i] = harness.MASK_ID if a < 0.8 else int(r) if a < 0.9 else row_ids[i]
    return torch.tensor(out), torch.tensor(labels)


def vs_mask_tokens(rows, mask_tokens_ms):
    """The rows with their median over mask_tokens' median on the same backend (where it was timed)."""
    return [replace(row, metrics={**row.metrics, "vs_mask_tokens": round(row.median_ms / mask_tokens_ms[row.backend], 3)})
            if row.backend in mask_tokens_ms else row for row in rows]


def transformers_whole_word_collator():
    """transformers' collator with whole_word_mask=True (it warns that it sets mask_replace_prob to 1:
    every chosen token becomes [MASK], no 80/10/10)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return transformers.DataCollatorForLanguageModeling(baselines.in_memory_tokenizer(harness.VOCAB),
                                                            mlm_probability=harness.P, whole_word_mask=True)


def bench_shape(batch, length, device, profile):
    def make():
        ids, _, special, word_start, offsets = harness.make_word_inputs(batch, length, device)
        return ids, ~special.bool(), word_start, offsets

    inputs = harness.rotating(make, batch * length * (8 + 1 + 1 + 16), device)
    word_inputs = [(ids, maskable, word_start) for ids, maskable, word_start, _ in inputs]
    ms_per_byte = harness.copy_ms_per_byte(device)
    shape = f"{batch}x{length}"
    nbytes = batch * length * (8 + 1 + 1 + 8 + 8)  # read ids, maskable, word_start; write ids, labels

    def time(op, contenders, input_sets=word_inputs):
        return harness.time_contenders(op, shape, torch.int64, contenders, input_sets, nbytes * ms_per_byte, device,
                                       profile)

    mask_tokens_ms = {}  # exact_count -> backend -> median
    for exact, op in ((False, "mask_tokens"), (True, "mask_tokens_exact")):
        def masks(ids, maskable, word_start, backend, exact=exact):
            return fastmask.mask_tokens(ids, maskable, harness.MASK_ID, harness.VOCAB, harness.P, exact_count=exact,
                                        backend=backend)

        rows = time(op, harness.fastmask_contenders(masks, device))
        mask_tokens_ms[exact] = {row.backend: row.median_ms for row in rows}
        yield from rows

    # The baselines run on the CPU whatever the device (in data-loader workers), on (ids, maskable,
    # word_start, offset_mapping).
    rng = np.random.default_rng(0)
    hf = transformers_whole_word_collator()

    def megatron(max_ngram):
        return {"megatron-python": lambda ids, maskable, word_start, offsets: megatron_python(
            ids, maskable, word_start, max_ngram, rng)}

    baseline_contenders = {
        "whole_word_mask": {"hf-collator": lambda ids, maskable, word_start, offsets: hf.torch_mask_tokens(
            ids.clone(), special_tokens_mask=~maskable, offset_mapping=offsets)} if length <= HF_MAX_LENGTH else {},
        "whole_word_mask_exact": megatron(1),
        "span_mask_ngram": megatron(3),
    }
    cpu_inputs = [tuple(x.cpu() for x in inputs[0])]

    def words_op(op, call, exact):
        yield from time(op, baseline_contenders.get(op, {}), cpu_inputs)
        yield from vs_mask_tokens(time(op, harness.fastmask_contenders(call, device)), mask_tokens_ms[exact])

    for exact, op in ((False, "whole_word_mask"), (True, "whole_word_mask_exact")):
        def whole_words(ids, maskable, word_start, backend, exact=exact):
            return fastmask.whole_word_mask(ids, maskable, word_start, harness.MASK_ID, harness.VOCAB, harness.P,
                                            exact_count=exact, backend=backend)

        yield from words_op(op, whole_words, exact)
    for lengths in ("geometric", "ngram"):
        def spans(ids, maskable, word_start, backend, lengths=lengths):
            return fastmask.span_mask(ids, maskable, word_start, harness.MASK_ID, harness.VOCAB, harness.P,
                                      lengths=lengths, backend=backend)

        yield from words_op(f"span_mask_{lengths}", spans, True)


def collect(device, profile):
    for batch, length in harness.sizes(device, profile):
        yield from bench_shape(batch, length, device, profile)


if __name__ == "__main__":
    sys.exit(harness.run("words", __doc__, collect, BASELINES))
