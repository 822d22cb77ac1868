"""Benchmark of the drop-in collator: fastmask.hf.DataCollatorForLanguageModeling.__call__ against
transformers' DataCollatorForLanguageModeling.__call__ on the same features, in the same run.

The features are what a tokenized dataset yields: one dict of lists of ints per row, ragged rows
of 64-512 tokens ([CLS] ... [SEP], 256 rows; the shape column is rows x longest row). Ops:

  collator_call      features with input_ids and attention_mask (transformers builds the
                     special-tokens mask with a per-row loop over the ids)
  collator_call_stm  features with special_tokens_mask too (tokenizer(..., return_special_tokens_mask=True))
  collator_pad       the padding alone, on the features with special_tokens_mask: transformers'
                     tokenizer.pad as its collator calls it, against the drop-in with
                     mask_in_model=True (which only pads)
  collator_call_wwm  whole_word_mask=True on both, on features with special_tokens_mask and
                     offset_mapping (transformers reads word starts from the offsets), padded
                     to the longest row as tokenizer(..., padding="max_length") gives them:
                     transformers' tokenizer.pad cannot pad offset_mapping. Rows of
                     harness.make_word_inputs (about 3 tokens in 4 begin a word); transformers
                     makes every chosen token [MASK] under whole_word_mask, and so does the drop-in

Timed on the CPU whatever --device says (collators run there, in data-loader workers); the
drop-in's rows are labelled cpp, the kernel it masks with. There is no byte floor: both sides
are bound by reading Python lists, not by memory bandwidth.

    python bench/bench_collator.py            # 256 rows of 64-512 tokens
    python bench/bench_collator.py --quick    # 32 rows of 16-128 tokens, seconds
"""

from __future__ import annotations

import os
import random
import sys
import warnings

import torch
import transformers
from transformers.data.data_collator import pad_without_fast_tokenizer_warning

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

from fastmask import baselines  # noqa: E402
from fastmask.hf import DataCollatorForLanguageModeling  # noqa: E402

BASELINES = harness.baselines("hf-collator-call")


def make_features(tokenizer, rows: int, low: int, high: int, special_tokens_mask: bool) -> list[dict]:
    """`rows` tokenized texts of random vocabulary words, low..high tokens each with [CLS] and [SEP]."""
    rng = random.Random(0)
    texts = [" ".join(f"w{rng.randrange(5, harness.VOCAB)}" for _ in range(rng.randint(low - 2, high - 2)))
             for _ in range(rows)]
    encoded = tokenizer(texts, return_special_tokens_mask=special_tokens_mask)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(rows)]


def whole_word_features(rows: int, length: int) -> list[dict]:
    """`rows` padded rows of harness.make_word_inputs as features: ids, attention and special-tokens
    masks and offset_mapping, lists of ints (the offsets pairs of ints)."""
    ids, attention_mask, special, _, offsets = harness.make_word_inputs(rows, length, torch.device("cpu"))
    return [{"input_ids": i, "attention_mask": a, "special_tokens_mask": s, "offset_mapping": o}
            for i, a, s, o in zip(ids.tolist(), attention_mask.tolist(), special.tolist(), offsets.tolist())]


def collect(device, profile):
    device = torch.device("cpu")  # whatever --device says: collators run on the CPU, in data-loader workers
    rows, low, high = (32, 16, 128) if profile.quick else (256, 64, 512)
    tokenizer = baselines.in_memory_tokenizer(harness.VOCAB)
    theirs = transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=harness.P)
    ours = DataCollatorForLanguageModeling(tokenizer, mlm_probability=harness.P)
    pads_only = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True)
    result = []
    for op, special_tokens_mask in (("collator_call", False), ("collator_call_stm", True)):
        features = make_features(tokenizer, rows, low, high, special_tokens_mask)
        shape = f"{rows}x{max(len(f['input_ids']) for f in features)}"
        result += harness.time_contenders(op, shape, torch.int64, {"hf-collator-call": theirs, "cpp": ours},
                                          [(features,)], None, device, profile)
    result += harness.time_contenders("collator_pad", shape, torch.int64, {
        "hf-collator-call": lambda f: pad_without_fast_tokenizer_warning(tokenizer, f, return_tensors="pt"),
        "cpp": pads_only,
    }, [(features,)], None, device, profile)
    with warnings.catch_warnings():  # both say that whole_word_mask makes every chosen token [MASK]
        warnings.simplefilter("ignore", UserWarning)
        whole_words = {
            "hf-collator-call": transformers.DataCollatorForLanguageModeling(tokenizer, mlm_probability=harness.P,
                                                                             whole_word_mask=True),
            "cpp": DataCollatorForLanguageModeling(tokenizer, mlm_probability=harness.P, whole_word_mask=True),
        }
    result += harness.time_contenders("collator_call_wwm", f"{rows}x{high}", torch.int64, whole_words,
                                      [(whole_word_features(rows, high),)], None, device, profile)
    return result


if __name__ == "__main__":
    sys.exit(harness.run("collator", __doc__, collect, BASELINES))
