"""The word strategies, whole-word and span, wherever a strategy is chosen: MaskingStrategy (whole
words, within the exact capacity, as the ops mask them), MaskingConfig (round-trip, bad values
named), apply_fastmask (a tiny BERT with a WordPiece tokenizer trains) and fastmask pretrain."""

import json
import os
import re

import pytest
import torch

import fastmask
from fastmask import MaskingConfig, reference
from fastmask.hf import apply_fastmask
from fastmask.masking_config import FLAGS
from fastmask.train import loop

from conftest import SENTENCES
from hf_models import tiny_model
from test_pretrain import metrics, micro_args

SPAN = dict(span_lengths="ngram", span_p=0.3, max_span=5, max_ngram=4, replace_per="token")
CONFIGS = [MaskingConfig("whole-word", mlm_probability=0.3), MaskingConfig("span", mlm_probability=0.3),
           MaskingConfig("span", mlm_probability=0.3, **SPAN)]
CONFIG_IDS = ["whole-word", "span-geometric", "span-ngram"]


@pytest.fixture(scope="module")
def wordpiece(tmp_path_factory):
    """A WordPiece tokenizer (## continuations) small enough for tiny_model's 128-token vocabulary."""
    return fastmask.data.train_tokenizer(SENTENCES * 20, 120, cache_dir=tmp_path_factory.mktemp("tokenizer"))


def _batch(tokenizer):
    return tokenizer(SENTENCES, padding=True, return_tensors="pt")


def _words_are_whole(labels, maskable, word_start):
    """Every word (reference.word_index) labelled in full or not at all; and some word of several
    tokens is labelled (so the check is not passed by one-token words alone)."""
    word, _, _ = reference.word_index(maskable, word_start)
    rows = torch.arange(word.shape[0])[:, None].expand_as(word)
    key = (rows * (word.shape[1] + 1) + word + 1)[maskable]  # (row, word) pairs of the maskable tokens
    size = torch.bincount(key, minlength=word.numel() + word.shape[0])
    taken = torch.bincount(key, weights=(labels != -100)[maskable].double(), minlength=size.numel()).long()
    assert ((taken == 0) | (taken == size)).all()
    assert ((taken > 1) & (taken == size)).any()


def test_the_wordpiece_tokenizer_splits_words(wordpiece):
    tokens = wordpiece.convert_ids_to_tokens(_batch(wordpiece)["input_ids"].flatten().tolist())
    assert any(t.startswith("##") for t in tokens)
    assert len(wordpiece) <= tiny_model("BertForMaskedLM", wordpiece).config.vocab_size


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_the_strategy_masks_whole_words_within_the_capacity_as_the_op(wordpiece, config):
    strategy = fastmask.MaskingStrategy.from_tokenizer(config, wordpiece, seed=4)
    batch = _batch(wordpiece)
    ids, attention = batch["input_ids"], batch["attention_mask"]
    table = fastmask.word_start_table(wordpiece)
    assert torch.equal(strategy.word_start_table, table)
    capacity = strategy.capacity(ids.shape[1])
    assert capacity == fastmask.gather_capacity(ids.shape[1], 0.3)
    op = fastmask.whole_word_mask if config.masking == "whole-word" else fastmask.span_mask
    settings = dict(exact_count=True) if config.masking == "whole-word" else dict(
        lengths=config.span_lengths, span_p=config.span_p, max_span=config.max_span, max_ngram=config.max_ngram,
        replace_per=config.replace_per)
    rows = torch.arange(ids.shape[0])
    for epoch in range(3):
        step = strategy(ids, attention, row_ids=rows, epoch=epoch)
        assert step.views == 1 and step.weights is None
        _words_are_whole(step.labels, step.maskable, table[ids])
        assert (step.positions.count <= capacity).all()
        want = op(ids, step.maskable, table[ids], wordpiece.mask_token_id, len(wordpiece), mlm_probability=0.3,
                  seed=4, row_ids=rows, epoch=epoch, **settings)
        assert torch.equal(step.input_ids, want.input_ids) and torch.equal(step.labels, want.labels)
    assert strategy.take_dropped_labels() == 0


def test_ids_past_the_table_are_words_of_their_own_and_the_table_is_needed():
    table = torch.tensor([True, True, False, True])
    strategy = fastmask.MaskingStrategy("whole-word", mask_token_id=0, vocab_size=6, word_start_table=table)
    assert strategy.word_start_table.tolist() == [True, True, False, True, True, True]
    with pytest.raises(ValueError, match=re.escape("masking='span' needs word_start_table=")):
        fastmask.MaskingStrategy("span", mask_token_id=0, vocab_size=6)
    with pytest.raises(ValueError, match="word_start_table must be a bool"):
        fastmask.MaskingStrategy("span", mask_token_id=0, vocab_size=6, word_start_table=table.long())
    derived = strategy.derived(MaskingConfig("span"), seed=1)
    assert torch.equal(derived.word_start_table, strategy.word_start_table)


# (field, bad value, the message as a keyword caller sees it)
BAD = [
    ("span_lengths", "poisson", "span_lengths must be one of ('geometric', 'ngram'), got 'poisson'"),
    ("span_p", 0.0, "span_p must be in (0, 1], got 0.0"),
    ("span_p", 1.5, "span_p must be a probability in [0, 1], got 1.5"),
    ("max_span", 0, "max_span must be an int in [1, 64], got 0"),
    ("max_span", 65, "max_span must be an int in [1, 64], got 65"),
    ("max_ngram", 2.0, "max_ngram must be an int in [1, 64], got 2.0"),
    ("replace_per", "word", "replace_per must be one of ('span', 'token'), got 'word'"),
]


@pytest.mark.parametrize("name,value,message", BAD, ids=[f"{b[0]}={b[1]}" for b in BAD])
def test_bad_span_settings_are_named(name, value, message):
    config = MaskingConfig("span", **{name: value})
    with pytest.raises(ValueError, match=re.escape(message)):
        config.validate()
    with pytest.raises(ValueError, match=re.escape(message.replace(name, "--" + name.replace("_", "-"), 1))):
        config.validate(FLAGS)
    with pytest.raises(ValueError, match=re.escape(message)):
        fastmask.MaskingStrategy(config, mask_token_id=0, vocab_size=4, word_start_table=torch.ones(4, dtype=torch.bool))


def test_the_span_settings_round_trip_through_fastmask_json(wordpiece, tmp_path):
    config = MaskingConfig("span", mlm_probability=0.2, **SPAN)
    assert MaskingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    model = apply_fastmask(tiny_model("BertForMaskedLM", wordpiece), wordpiece, config, seed=3)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "fastmask.json").read_text()) == dict(config.to_dict(), seed=3)
    assert MaskingConfig.load(str(tmp_path)) == config
    older = {k: v for k, v in config.to_dict().items() if k not in SPAN}  # a fastmask.json from before the span fields
    assert MaskingConfig.from_dict(older) == MaskingConfig("span", mlm_probability=0.2)


@pytest.mark.parametrize("masking", ["whole-word", "span"])
def test_apply_fastmask_trains_a_step_masking_whole_words(wordpiece, masking):
    model = apply_fastmask(tiny_model("BertForMaskedLM", wordpiece), wordpiece, masking=masking,
                           mlm_probability=0.3).train()
    batch = _batch(wordpiece)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    length = batch["input_ids"].shape[1]
    assert out.positions.shape == (len(SENTENCES), fastmask.gather_capacity(length, 0.3))
    labelled = torch.zeros(len(SENTENCES), length + 1, dtype=torch.bool)  # unused slots (-1) write column L
    labelled.scatter_(1, torch.where(out.positions >= 0, out.positions, length), True)
    labelled = labelled[:, :length]
    maskable = model.fastmask.masking.maskable(batch["input_ids"], batch["attention_mask"])
    table = model.fastmask.masking.word_start_table
    _words_are_whole(torch.where(labelled, batch["input_ids"], -100), maskable, table[batch["input_ids"]])
    model.eval()
    with torch.no_grad():  # evaluation masks, as every strategy's: random, exact count, keyed by the rows' tokens
        first, again = model(**batch), model(**batch)
    assert torch.isfinite(first.loss) and torch.equal(first.positions, again.positions)


def test_pretrain_masks_spans(corpus, tmp_path, capsys):
    argv = micro_args(corpus, tmp_path / "run", tmp_path / "cache", "--steps", "2", "--eval-interval", "2",
                      "--checkpoint-interval", "2", "--masking", "span", "--span-lengths", "ngram", "--max-ngram",
                      "4", "--replace-per", "token")
    assert loop.main(argv) == 0
    rows = metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["loss"] > 0 and r["dropped_labels"] == 0 for r in rows) and rows[1]["eval_loss"] is not None
    with open(os.path.join(tmp_path / "run", "config.json")) as f:
        saved = json.load(f)
    assert (saved["masking"], saved["span_lengths"], saved["max_ngram"], saved["replace_per"]) == (
        "span", "ngram", 4, "token")
    assert "--masking span" in capsys.readouterr().out
