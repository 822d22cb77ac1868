"""Whole-word masking in fastmask.hf's collators: DataCollatorForLanguageModeling(whole_word_mask=True)
with transformers' semantics, its 80/10/10 switch, and the stand-in for transformers 4.x's
DataCollatorForWholeWordMask.

Words are checked against the fast tokenizer's own ``word_ids()`` (its pre-tokenizer's words),
which neither of the collator's word rules (offsets, vocabulary table) uses.
"""

from __future__ import annotations

import math
import random
import re
import warnings

import numpy as np
import pytest
import torch
import transformers as T

import fastmask
import fastmask.data
from fastmask.hf import DataCollatorForLanguageModeling, DataCollatorForWholeWordMask

from conftest import SENTENCES
from hf_models import tiny_model

IGNORE = -100
K = 5  # standard errors: a false alarm below 1e-6 per check
FORCED = "Random token replacement is not supported with whole word masking. Setting mask_replace_prob to 1."
# The collators' backend: the C++ kernel once it serves whole_word_mask on CPU tensors, the reference until then.
BACKEND = "auto" if torch._C._dispatch_has_kernel_for_dispatch_key("fastmask::whole_word_mask_cpp", "CPU") \
    else "reference"
WORDS = sorted({word for sentence in SENTENCES for word in sentence.split()})


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A small WordPiece tokenizer (## continuations: many words span several tokens)."""
    return fastmask.data.train_tokenizer(SENTENCES * 20, 120, cache_dir=tmp_path_factory.mktemp("tokenizer"))


def texts(rows: int, seed: int = 0, low: int = 3, high: int = 14) -> list[str]:
    """Ragged rows of the sentences' words, separated by spaces."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) for _ in range(rows)]


def features(tokenizer, rows: list[str], offsets: bool = True, special_tokens_mask: bool = False) -> list[dict]:
    encoded = tokenizer(rows, return_offsets_mapping=offsets, return_special_tokens_mask=special_tokens_mask)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(len(rows))]


def word_ids(tokenizer, rows: list[str], width: int) -> torch.Tensor:
    """(B, width) int64: the tokenizer's own word of every token, -1 on specials and padding."""
    encoded = tokenizer(rows)
    out = torch.full((len(rows), width), -1, dtype=torch.int64)
    for i in range(len(rows)):
        ids = [-1 if w is None else w for w in encoded.word_ids(i)]
        start = 0 if tokenizer.padding_side == "right" else width - len(ids)
        out[i, start:start + len(ids)] = torch.tensor(ids)
    return out


def collator(tokenizer, **kwargs):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", re.escape(FORCED))
        return DataCollatorForLanguageModeling(tokenizer, **{"whole_word_mask": True, "backend": BACKEND, **kwargs})


def check_whole_words(tokenizer, rows, batch, original_ids) -> tuple[int, int]:
    """Every word labelled whole or not at all, nothing else labelled, labels the original ids;
    returns (words chosen, words)."""
    labels = torch.as_tensor(batch["labels"])
    words = word_ids(tokenizer, rows, labels.shape[1])
    chosen = labels != IGNORE
    assert not (chosen & (words < 0)).any()  # specials and padding never
    assert torch.equal(labels[chosen], original_ids[chosen])
    chosen_words = total = 0
    for row_words, row_chosen in zip(words.tolist(), chosen.tolist()):
        groups = {}
        for w, c in zip(row_words, row_chosen):
            if w >= 0:
                groups.setdefault(w, set()).add(c)
        assert all(len(flags) == 1 for flags in groups.values()), groups
        chosen_words += sum(flags == {True} for flags in groups.values())
        total += len(groups)
    return chosen_words, total


def padded_ids(tokenizer, feats) -> torch.Tensor:
    return tokenizer.pad([{"input_ids": f["input_ids"]} for f in feats], return_tensors="pt")["input_ids"]


# --------------------------------------------------------------------------------------------
# Words: offsets and the vocabulary agree; each word masked whole.


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_offsets_and_vocabulary_give_the_same_words(wordpiece, monkeypatch, padding_side):
    monkeypatch.setattr(wordpiece, "padding_side", padding_side)
    rows = texts(16, seed=1)
    with_offsets = features(wordpiece, rows)
    assert all("offset_mapping" in f for f in with_offsets)
    without = features(wordpiece, rows, offsets=False)
    a = collator(wordpiece, seed=5, mlm_probability=0.4)(with_offsets)
    b = collator(wordpiece, seed=5, mlm_probability=0.4)(without)
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    chosen, total = check_whole_words(wordpiece, rows, a, padded_ids(wordpiece, without))
    assert 0 < chosen < total


def test_words_masked_whole_at_the_rate_and_all_mask(wordpiece):
    with pytest.warns(UserWarning, match=re.escape(FORCED)):
        wwm = DataCollatorForLanguageModeling(wordpiece, whole_word_mask=True, backend=BACKEND, seed=2)
    with pytest.warns(UserWarning, match=re.escape(FORCED)):
        theirs = T.DataCollatorForLanguageModeling(wordpiece, whole_word_mask=True)
    assert (wwm.mask_replace_prob, wwm.random_replace_prob) == (theirs.mask_replace_prob, theirs.random_replace_prob)
    assert (wwm.mask_replace_prob, wwm.random_replace_prob) == (1.0, 0.0)
    chosen = total = 0
    for call in range(4):
        rows = texts(64, seed=10 + call)
        feats = features(wordpiece, rows, offsets=call % 2 == 0, special_tokens_mask=call >= 2)
        batch = wwm(feats)
        original = padded_ids(wordpiece, feats)
        c, t = check_whole_words(wordpiece, rows, batch, original)
        chosen, total = chosen + c, total + t
        masked = batch["labels"] != IGNORE
        assert (batch["input_ids"][masked] == wordpiece.mask_token_id).all()
        assert torch.equal(batch["input_ids"][~masked], original[~masked])
    assert abs(chosen / total - 0.15) < K * math.sqrt(0.15 * 0.85 / total), (chosen, total)


def test_keep_random_replacement_gives_80_10_10_on_whole_words(wordpiece):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: the probabilities are kept
        wwm = DataCollatorForLanguageModeling(wordpiece, whole_word_mask=True, keep_random_replacement=True,
                                              mlm_probability=0.5, backend=BACKEND, seed=3)
    assert (wwm.mask_replace_prob, wwm.random_replace_prob) == (0.8, 0.1)
    rows = texts(64, seed=4)
    feats = features(wordpiece, rows)
    batch, original = wwm(feats), padded_ids(wordpiece, features(wordpiece, rows, offsets=False))
    check_whole_words(wordpiece, rows, batch, original)
    masked = batch["labels"] != IGNORE
    ids, kept = batch["input_ids"][masked], original[masked]
    n = int(masked.sum())
    as_mask = (ids == wordpiece.mask_token_id).float().mean().item()
    assert abs(as_mask - 0.8) < K * math.sqrt(0.8 * 0.2 / n)
    replaced = ((ids != wordpiece.mask_token_id) & (ids != kept)).float().mean().item()
    assert replaced > 0 and abs(replaced - 0.1) < K * math.sqrt(0.1 * 0.9 / n)


def test_the_same_seed_gives_the_same_batches(wordpiece):
    feats = features(wordpiece, texts(12, seed=6))
    first, second = collator(wordpiece, seed=11), collator(wordpiece, seed=11)
    a1, a2, b1 = first(feats), first(feats), second(feats)
    assert all(torch.equal(a1[key], b1[key]) for key in a1)
    assert not torch.equal(a1["labels"], a2["labels"])  # fresh masks on every call
    other = collator(wordpiece, seed=12)(feats)
    assert not torch.equal(a1["labels"], other["labels"])


def test_offsets_in_any_container_give_the_same_batch(wordpiece, monkeypatch):
    """Offset pairs as the tokenizer gives them (lists of tuples), as lists, as numpy ints or one
    array per row, and without the C++ extension: the same batch (the C++ reader takes the first
    three, numpy the last, and tokenizer.pad and numpy everything without the extension)."""
    rows = texts(8, seed=3)
    feats = features(wordpiece, rows)
    reference = collator(wordpiece, seed=2)(feats)
    for convert in (lambda row: [list(pair) for pair in row], lambda row: [tuple(map(np.int64, pair)) for pair in row],
                    np.array):
        batch = collator(wordpiece, seed=2)([{**f, "offset_mapping": convert(f["offset_mapping"])} for f in feats])
        assert batch.keys() == reference.keys() and all(torch.equal(batch[key], reference[key]) for key in batch)
    monkeypatch.setattr("fastmask.hf.collator._read_int64_rows", None)
    batch = collator(wordpiece, seed=2)(feats)
    assert batch.keys() == reference.keys() and all(torch.equal(batch[key], reference[key]) for key in batch)
    with pytest.raises(ValueError, match="offset_mapping of feature 0 has"):
        collator(wordpiece)([{**feats[0], "offset_mapping": feats[0]["offset_mapping"][:-1]}])


def test_int64_rows_reads_python_ints_or_raises():
    from fastmask._C import int64_rows
    assert isinstance(int64_rows([[1]], 0), bytearray)  # writable: numpy arrays over it back the batch's tensors
    assert np.frombuffer(int64_rows([[1, -2], (True, 2**63 - 1), []], 0), np.int64).tolist() == [1, -2, 1, 2**63 - 1]
    assert np.frombuffer(int64_rows([[(0, 1), [1, np.int32(3)]]], 2), np.int64).tolist() == [0, 1, 1, 3]
    for rows, width, error in (([[1.0]], 0, TypeError), ([[2**63]], 0, OverflowError), ([5], 0, TypeError),
                               ("ab", 0, TypeError), ([[(1, 2, 3)]], 2, ValueError), ([[1]], 2, ValueError)):
        with pytest.raises(error):
            int64_rows(rows, width)


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_offset_mapping_never_reaches_the_batch(wordpiece, return_tensors):
    rows = texts(8, seed=7)
    for kwargs in ({}, {"whole_word_mask": False}):
        batch = collator(wordpiece, return_tensors=return_tensors, **kwargs)(features(wordpiece, rows))
        assert set(batch.keys()) == {"input_ids", "attention_mask", "labels"}
    batch = collator(wordpiece, return_tensors=return_tensors, seed=1)(features(wordpiece, rows))
    assert isinstance(batch["labels"], np.ndarray if return_tensors == "np" else torch.Tensor)
    check_whole_words(wordpiece, rows, {"labels": torch.as_tensor(batch["labels"])},
                      padded_ids(wordpiece, features(wordpiece, rows, offsets=False)))


def test_fast_tokenizer_warning_and_own_argument_errors(wordpiece, monkeypatch):
    with pytest.raises(ValueError, match="mask_in_model=True with whole_word_mask=True.*masking=\"whole-word\""):
        collator(wordpiece, mask_in_model=True)
    with pytest.raises(ValueError, match="backend must be one of"):
        collator(wordpiece, backend="fortran")
    monkeypatch.setattr(type(wordpiece), "is_fast", property(lambda self: False))
    with pytest.warns(UserWarning, match="Whole word masking depends on offset mapping"):
        collator(wordpiece)


# --------------------------------------------------------------------------------------------
# transformers 4.x's DataCollatorForWholeWordMask.


def test_whole_word_mask_collator_takes_its_4x_arguments(wordpiece):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 4.x kept 80/10/10: no forcing, no warning
        by_name = DataCollatorForWholeWordMask(tokenizer=wordpiece, mlm=True, mlm_probability=0.2,
                                               pad_to_multiple_of=8, tf_experimental_compile=False,
                                               return_tensors="pt", backend=BACKEND, seed=4)
        positional = DataCollatorForWholeWordMask(wordpiece, True, 0.2, 0.8, 0.1, 8, False, "np", 4, backend=BACKEND)
    for c in (by_name, positional):
        assert isinstance(c, DataCollatorForLanguageModeling)
        assert (c.whole_word_mask, c.exact_count, c.keep_random_replacement) == (True, True, True)
        assert (c.mlm_probability, c.mask_replace_prob, c.random_replace_prob) == (0.2, 0.8, 0.1)
    rows = texts(32, seed=8)
    feats = features(wordpiece, rows, offsets=False)
    pt, np_batch = by_name(feats), positional(feats)
    assert pt["input_ids"].shape[1] % 8 == 0 and isinstance(np_batch["input_ids"], np.ndarray)
    assert np.array_equal(np_batch["labels"], pt["labels"].numpy())  # the same seed: the same masks
    original = T.DataCollatorWithPadding(wordpiece, pad_to_multiple_of=8)(feats)["input_ids"]
    check_whole_words(wordpiece, rows, pt, original)
    # an exact budget per row: at most k = masked_count(n, p) of the n maskable tokens
    n = (torch.as_tensor(pt["attention_mask"]).sum(1) - 2)  # [CLS] and [SEP]
    got = (pt["labels"] != IGNORE).sum(1)
    assert (got <= fastmask.masked_count(n, 0.2)).all() and got.sum() > 0


# --------------------------------------------------------------------------------------------
# The stock Trainer.


def test_stock_trainer_steps_and_the_model_never_sees_offsets(wordpiece, tmp_path):
    model = tiny_model("BertForMaskedLM", wordpiece)
    seen = set()
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    # remove_unused_columns=False: the Trainer would otherwise drop offset_mapping before the collator
    args = T.TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                               remove_unused_columns=False, save_strategy="no", report_to=[], use_cpu=True,
                               disable_tqdm=True, logging_steps=1)
    data = features(wordpiece, texts(8, seed=9))
    trainer = T.Trainer(model=model, args=args, train_dataset=data,
                        data_collator=DataCollatorForWholeWordMask(wordpiece, backend=BACKEND))
    trainer.train()
    (loss,) = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert math.isfinite(loss)
    assert "labels" in seen and "offset_mapping" not in seen
