"""fastmask.hf.DataCollatorForLanguageModeling against transformers' own collator on the same features.

The drop-in's contract: the same batch (keys, shapes, dtypes, padding, every field but the masked
input_ids and labels equal to transformers' padded batch), labels -100 off the mask and the
original id on it, specials and padding never masked, transformers' statistics, masks fresh on
every call and across DataLoader workers and epochs, reproducible from the seeds, and
transformers' errors for bad arguments.
"""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
import torch
import transformers

import fastmask
from fastmask.baselines import in_memory_tokenizer
from fastmask.hf import DataCollatorForLanguageModeling
from fastmask.hf import collator as collator_module

VOCAB = 1000
IGNORE = -100
# A statistic within K standard errors of its expectation; K = 5 keeps false alarms below 1e-6 per check.
K = 5


def make_tokenizer(token_type_ids: bool = False, padding_side: str = "right"):
    tokenizer = in_memory_tokenizer(VOCAB)
    if token_type_ids:  # BERT's inputs: the tokenizer then returns (and pads) token_type_ids
        tokenizer.model_input_names = ["input_ids", "token_type_ids", "attention_mask"]
    tokenizer.padding_side = padding_side
    return tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def texts(rows: int, low: int, high: int, seed: int = 0) -> list[str]:
    """Ragged rows of random words, with words outside the vocabulary ([UNK], a special id) and
    a literal [MASK] among them."""
    rng = random.Random(seed)
    words = lambda: [rng.choice(("zz", "[MASK]")) if rng.random() < 0.03 else f"w{rng.randrange(5, VOCAB)}"
                     for _ in range(rng.randint(low, high))]
    return [" ".join(words()) for _ in range(rows)]


def features(tokenizer, rows=12, low=3, high=40, special_tokens_mask=False, seed=0) -> list[dict]:
    """What a tokenized dataset yields: one dict of lists of ints per row."""
    encoded = tokenizer(texts(rows, low, high, seed), return_special_tokens_mask=special_tokens_mask)
    return [{key: encoded[key][i] for key in encoded.keys()} for i in range(rows)]


def padded(tokenizer, feats, pad_to_multiple_of=None, return_tensors="pt"):
    """transformers' padded batch of the features (what its collator masks)."""
    return tokenizer.pad(feats, return_tensors=return_tensors, pad_to_multiple_of=pad_to_multiple_of)


def not_maskable(tokenizer, batch) -> torch.Tensor:
    """Where no token may be masked: the special-tokens mask, or the special ids (the pad id among them)."""
    if "special_tokens_mask" in batch:
        return batch["special_tokens_mask"].bool()
    return torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids))


def check_masked(tokenizer, out, reference) -> torch.Tensor:
    """The invariants of a masked batch against the padded one; returns the chosen positions."""
    ids, labels, original = out["input_ids"], out["labels"], reference["input_ids"]
    chosen = labels != IGNORE
    assert torch.equal(labels[chosen], original[chosen])
    assert torch.equal(ids[~chosen], original[~chosen])
    assert not (chosen & not_maskable(tokenizer, reference)).any()
    return chosen


@pytest.mark.parametrize("special_tokens_mask", [False, True], ids=["no-stm", "stm"])
@pytest.mark.parametrize("pad_to_multiple_of", [None, 8])
@pytest.mark.parametrize("padding_side,token_type_ids", [("right", False), ("left", True)])
@pytest.mark.parametrize("same_length", [False, True], ids=["ragged", "same-length"])
def test_batch_matches_transformers(special_tokens_mask, pad_to_multiple_of, padding_side, token_type_ids, same_length,
                                    monkeypatch):
    tokenizer = make_tokenizer(token_type_ids, padding_side)
    feats = features(tokenizer, special_tokens_mask=special_tokens_mask)
    if same_length:  # as padding="max_length" gives them: reshaped, not scattered (unless padded to a multiple)
        width = min(len(f["input_ids"]) for f in feats)
        feats = [{key: value[:width] for key, value in f.items()} for f in feats]
    if special_tokens_mask:  # a mask of the user's own: every third token special, so only it can tell
        for f in feats:
            f["special_tokens_mask"] = [int(i % 3 == 0) for i in range(len(f["input_ids"]))]
    theirs = transformers.DataCollatorForLanguageModeling(tokenizer, pad_to_multiple_of=pad_to_multiple_of)(feats)
    reference = padded(tokenizer, feats, pad_to_multiple_of)
    # transformers' per-row special-tokens loop is what the drop-in replaces: it must not run
    monkeypatch.setattr(tokenizer, "get_special_tokens_mask", lambda *a, **k: pytest.fail("per-row loop called"))
    ours = DataCollatorForLanguageModeling(tokenizer, pad_to_multiple_of=pad_to_multiple_of)(feats)

    assert type(ours) is type(theirs)
    assert list(ours.keys()) == list(theirs.keys())
    assert "special_tokens_mask" not in ours and ("token_type_ids" in ours) == token_type_ids
    for key in ours:
        assert (ours[key].shape, ours[key].dtype) == (theirs[key].shape, theirs[key].dtype), key
    assert ours["input_ids"].shape[1] % (pad_to_multiple_of or 1) == 0
    for key in set(ours) - {"input_ids", "labels"}:
        assert torch.equal(ours[key], reference[key]), key
    chosen = check_masked(tokenizer, ours, reference)
    assert chosen.any()


@pytest.mark.parametrize("mlm_probability,mask_replace_prob,random_replace_prob", [(0.15, 0.8, 0.1), (0.3, 0.5, 0.4)])
def test_statistics(mlm_probability, mask_replace_prob, random_replace_prob):
    """Masking rate and the replacement split within K standard errors, on 64 rows of 256 tokens;
    random replacements uniform over len(tokenizer), added tokens included."""
    tokenizer = make_tokenizer()
    tokenizer.add_tokens([f"added{i}" for i in range(VOCAB // 2)])
    feats = features(tokenizer, rows=64, low=254, high=254)
    reference = padded(tokenizer, feats)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability,
                                               mask_replace_prob=mask_replace_prob,
                                               random_replace_prob=random_replace_prob, seed=0)
    out = collator(feats)
    chosen = check_masked(tokenizer, out, reference)
    n = (~not_maskable(tokenizer, reference)).sum().item()

    def within(count, total, p):
        assert abs(count / total - p) <= K * math.sqrt(p * (1 - p) / total), (count, total, p)

    masked = chosen.sum().item()
    within(masked, n, mlm_probability)
    ids, original = out["input_ids"][chosen], reference["input_ids"][chosen]
    is_mask = ids == tokenizer.mask_token_id
    kept = ids == original
    # A random replacement equals [MASK] or the original with probability 1/len(tokenizer) each: counted as those.
    p_random = random_replace_prob * (1 - 2 / len(tokenizer))
    within(is_mask.sum().item(), masked, mask_replace_prob + random_replace_prob / len(tokenizer))
    within((~is_mask & ~kept).sum().item(), masked, p_random)
    # random replacements are uniform over len(tokenizer): their mean within K standard errors
    random_ids = ids[~is_mask & ~kept].double()
    mean, sd = (len(tokenizer) - 1) / 2, len(tokenizer) / math.sqrt(12)
    assert abs(random_ids.mean().item() - mean) <= K * sd / math.sqrt(len(random_ids))
    assert random_ids.max() < len(tokenizer)


def test_exact_count(tokenizer):
    feats = features(tokenizer, rows=32, low=1, high=60, special_tokens_mask=True)
    reference = padded(tokenizer, feats)
    out = DataCollatorForLanguageModeling(tokenizer, exact_count=True, mlm_probability=0.2)(feats)
    chosen = check_masked(tokenizer, out, reference)
    n = (~not_maskable(tokenizer, reference)).sum(1)
    assert torch.equal(chosen.sum(1), fastmask.masked_count(n, 0.2))


def test_seed_reproduces_and_calls_are_fresh(tokenizer):
    feats = features(tokenizer, rows=8, low=30, high=30)

    def batches(**kwargs):
        collator = DataCollatorForLanguageModeling(tokenizer, **kwargs)
        return [collator(feats)["input_ids"] for _ in range(2)]

    first, second = batches(seed=3)
    assert not torch.equal(first, second)  # fresh on every call
    assert all(torch.equal(a, b) for a, b in zip(batches(seed=3), (first, second)))
    assert not torch.equal(batches(seed=4)[0], first)
    # seed=None: one draw from torch's global RNG, so torch.manual_seed reproduces the masks
    torch.manual_seed(0)
    unseeded = batches()
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(batches(), unseeded))
    torch.manual_seed(1)
    assert not torch.equal(batches()[0], unseeded[0])


def test_data_parallel_ranks_never_share_masks(tokenizer, monkeypatch):
    feats = features(tokenizer, rows=8, low=30, high=30)
    rank0 = DataCollatorForLanguageModeling(tokenizer, seed=3)(feats)["labels"]
    monkeypatch.setattr(collator_module, "rank_and_world", lambda: (1, 2))
    rank1 = DataCollatorForLanguageModeling(tokenizer, seed=3)(feats)["labels"]
    assert not torch.equal(rank0, rank1)  # the same seed, data and call: rank 1 draws its own masks


def test_dataloader_workers_never_repeat_and_reproduce(tokenizer):
    """Every item is the same row, so two batches with equal masks would mean a repeated Philox key:
    2 workers, workers re-created each epoch, two epochs; then the same seeds reproduce it all."""
    row = features(tokenizer, rows=1, low=40, high=40)[0]

    def run():
        torch.manual_seed(0)
        loader = torch.utils.data.DataLoader([row] * 8, batch_size=2, num_workers=2, persistent_workers=False,
                                             collate_fn=DataCollatorForLanguageModeling(tokenizer, seed=5))
        return [batch["labels"] for _ in range(2) for batch in loader]

    masks = run()
    assert len(masks) == 8
    patterns = {tuple((labels != IGNORE).flatten().tolist()) for labels in masks}
    assert len(patterns) == len(masks)
    assert all(torch.equal(a, b) for a, b in zip(run(), masks))


def test_mlm_false_is_transformers(tokenizer):
    feats = features(tokenizer, special_tokens_mask=True)
    ours = DataCollatorForLanguageModeling(tokenizer, mlm=False, pad_to_multiple_of=8)(feats)
    theirs = transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False, pad_to_multiple_of=8)(feats)
    assert list(ours.keys()) == list(theirs.keys())
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


@pytest.mark.parametrize("special_tokens_mask", [False, True], ids=["no-stm", "stm"])
@pytest.mark.parametrize("padding_side,token_type_ids", [("right", False), ("left", True)])
def test_mask_in_model_only_pads(special_tokens_mask, padding_side, token_type_ids):
    """labels (B, 0) int64, input_ids uncorrupted: the rest is transformers' padded batch, whose
    padding the bulk path builds (also checked here without the attention mask in the features)."""
    tokenizer = make_tokenizer(token_type_ids, padding_side)
    feats = features(tokenizer, special_tokens_mask=special_tokens_mask)
    for feats_ in (feats, [{k: v for k, v in f.items() if k != "attention_mask"} for f in feats]):
        reference = padded(tokenizer, feats_, 8)
        reference.pop("special_tokens_mask", None)
        out = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True, pad_to_multiple_of=8)(feats_)
        labels = out.pop("labels")
        assert labels.shape == (len(feats_), 0) and labels.dtype == torch.int64
        assert list(out.keys()) == list(reference.keys())
        assert all(torch.equal(out[key], reference[key]) and out[key].dtype == reference[key].dtype for key in out)


def test_other_inputs_pad_as_transformers(tokenizer):
    """Features the bulk path does not take (tensors, plain lists of ids, a feature tokenizer.pad
    does not pad, a float among the ints) go through transformers' padding, and a mask field with
    values past one byte through the bulk path's int64 reading: the same batch either way."""
    feats = features(tokenizer, rows=6)
    as_tensors = [{key: torch.tensor(value) for key, value in f.items()} for f in feats]
    with_label = [{**f, "label": i} for i, f in enumerate(feats)]
    ids_only = [f["input_ids"] for f in feats]
    with_float = [{**f, "attention_mask": f["attention_mask"][:-1] + [1.0]} for f in feats]
    wide_mask = [{**f, "attention_mask": f["attention_mask"][:-1] + [300]} for f in feats]
    for examples in (as_tensors, with_label, ids_only, with_float, wide_mask):
        ours = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True)(examples)
        theirs = transformers.DataCollatorForLanguageModeling(tokenizer, mlm=False)(examples)
        assert list(ours.keys()) == list(theirs.keys())
        assert all(torch.equal(ours[key], theirs[key]) and ours[key].dtype == theirs[key].dtype
                   for key in ours if key != "labels")
        masked = DataCollatorForLanguageModeling(tokenizer)(examples)
        check_masked(tokenizer, masked, {"input_ids": theirs["input_ids"]})


def test_numpy_matches_torch(tokenizer):
    feats = features(tokenizer, special_tokens_mask=True)
    pt = DataCollatorForLanguageModeling(tokenizer, seed=7)(feats)
    np_batch = DataCollatorForLanguageModeling(tokenizer, seed=7, return_tensors="np")(feats)
    also_np = DataCollatorForLanguageModeling(tokenizer, seed=7)(feats, return_tensors="np")
    assert list(np_batch.keys()) == list(pt.keys())
    for key in pt:
        assert isinstance(np_batch[key], np.ndarray) and np_batch[key].dtype == np.int64
        assert np.array_equal(np_batch[key], pt[key].numpy()) and np.array_equal(also_np[key], pt[key].numpy())
    in_model = DataCollatorForLanguageModeling(tokenizer, mask_in_model=True, return_tensors="np")(feats)
    assert in_model["labels"].shape == (len(feats), 0) and in_model["labels"].dtype == np.int64


def no_mask_token_tokenizer():
    return transformers.PreTrainedTokenizerFast(tokenizer_object=in_memory_tokenizer(VOCAB).backend_tokenizer,
                                                pad_token="[PAD]")


@pytest.mark.parametrize("kwargs", [
    {"mlm_probability": 1.5}, {"mlm_probability": -0.1}, {"mlm_probability": None},
    {"mask_replace_prob": 0.7, "random_replace_prob": 0.4}, {"mask_replace_prob": -0.2},
    {"random_replace_prob": -0.1}, {"tokenizer": None},
    {"whole_word_mask": True, "mlm": False},
], ids=["p>1", "p<0", "p=None", "sum>1", "mask<0", "random<0", "no-mask-token", "wwm-clm"])
def test_bad_arguments_rejected_as_transformers_does(tokenizer, kwargs):
    kwargs = {"tokenizer": tokenizer, **kwargs}
    if kwargs["tokenizer"] is None:
        kwargs["tokenizer"] = no_mask_token_tokenizer()
    with pytest.raises(ValueError) as theirs:
        transformers.DataCollatorForLanguageModeling(**kwargs)
    with pytest.raises(ValueError, match=re.escape(str(theirs.value))):
        DataCollatorForLanguageModeling(**kwargs)


def test_own_arguments_rejected(tokenizer):
    with pytest.raises(ValueError, match="mask_in_model=True needs mlm=True"):
        DataCollatorForLanguageModeling(tokenizer, mlm=False, mask_in_model=True)
    with pytest.raises(ValueError, match="seed must be in"):
        DataCollatorForLanguageModeling(tokenizer, seed=-1)
