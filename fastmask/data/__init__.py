"""Pretraining data for ``fastmask pretrain``: corpus, WordPiece tokenizer, token shards, the rows
training reads from them and the held-out split.

Built-in corpus: the docstrings of the running Python's own standard library, read with :mod:`ast`
from the ``.py`` sources (never imported), so every install has a corpus of English text and nothing
is downloaded. Otherwise ``.txt``/``.md`` files (one document per non-empty line), ``.jsonl`` files
(one JSON object per line, its ``text`` field), ``.parquet`` files and ``datasets`` folders written by
``save_to_disk`` (their ``text`` column; both need pyarrow), or a directory of such files. Or a
folder ``fastmask prepare`` wrote: read as it is.

Caching (``$FASTMASK_CACHE``, else ``~/.cache/fastmask``; every file written to a temp name and then
``os.replace``-d, so concurrent or interrupted runs never leave a half-written file):

* ``corpus-<fingerprint>.json``: the content hash of the corpus texts, keyed by a cheap fingerprint of
  the source (stdlib: file names, sizes and mtimes; a path: the raw bytes), so a warm run never parses.
* ``tokenizer-<key>.json``: a trained tokenizer, key = hash(vocab_size, texts hash). WordPiece training
  is not deterministic, so the first process to publish an entry wins and racing ones load it.
* ``shards-<key>/``: the corpus prepared (:mod:`fastmask.data.shards`), key = hash(source fingerprint,
  tokenizer identity); rows of any seq_len and the held-out split are cut from it when read.

cache      the cache folder, atomic writes, the hashes keys are made of; log lines; whether bars are drawn
corpus     the built-in corpus, corpus files and directories (streamed), the source fingerprint
tokenizer  the WordPiece tokenizer: trained (streamed) and cached, or loaded from a directory
shards     tokenising in parallel into memory-mapped token shards; rows, permutations and row sets of them
packing    documents into rows in memory (the shards' layout), the held-out split
loader     the training batches of a rank: a pure function of the micro-step, prefetched in the background
``prepare`` (here) runs the whole pipeline.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastmask.data.cache import _cache_dir, _digest, progress_bars
from fastmask.data.corpus import TEXT_COLUMN, _Corpus, builtin_texts, iter_texts, load_texts
from fastmask.data.packing import pack, split
from fastmask.data.shards import SHARD_CHARS, SHARDS_VERSION, RowSet, Shards, is_prepared, prepare_shards
from fastmask.data.tokenizer import (
    SPECIAL_TOKENS,
    _check_vocab_size,
    _tokenizer_for,
    _tokenizer_identity,
    load_tokenizer,
    train_tokenizer,
)

if TYPE_CHECKING:  # transformers/tokenizers are imported lazily: they take seconds to import
    from transformers import PreTrainedTokenizerFast


__all__ = [
    "SPECIAL_TOKENS",
    "Prepared",
    "RowSet",
    "Shards",
    "builtin_texts",
    "is_prepared",
    "iter_texts",
    "load_texts",
    "load_tokenizer",
    "pack",
    "prepare",
    "prepare_folder",
    "prepare_shards",
    "progress_bars",
    "split",
    "train_tokenizer",
]


@dataclass
class Prepared:
    """What the pretraining loop needs: the tokenizer, the shards and their train / held-out rows."""

    tokenizer: PreTrainedTokenizerFast
    shards: Shards
    train: RowSet  # int32 rows of seq_len, read from the shards' memory map when indexed
    eval: RowSet  # >= 1 row when eval_fraction > 0


def prepare(
    corpus: str | os.PathLike | None,
    tokenizer_path: str | os.PathLike | None,
    vocab_size: int,
    seq_len: int,
    eval_fraction: float,
    cache_dir: str | os.PathLike | None,
    show_progress: bool = True,
    *,
    text_column: str = TEXT_COLUMN,
    workers: int | None = None,
) -> Prepared:
    """The whole pipeline: corpus -> tokenizer (loaded, or trained and cached) -> token shards (cached)
    -> rows of seq_len -> split. A folder ``fastmask prepare`` wrote is read as it is (with its own
    tokenizer, unless `tokenizer_path` names the same one).

    ``vocab_size`` only matters when training (``tokenizer_path`` is None). A warm run reads neither
    the corpus (beyond hashing its bytes) nor trains nor tokenizes: it maps the cached shards.
    """
    # Validate first, so a typo fails before seconds of parsing and training.
    if tokenizer_path is None and not is_prepared(corpus):
        _check_vocab_size(vocab_size)
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3, got {seq_len!r}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    if is_prepared(corpus):
        shards = Shards(corpus)
        tokenizer = shards.tokenizer()
        if tokenizer_path is not None and _tokenizer_identity(load_tokenizer(tokenizer_path)) != _tokenizer_identity(
                tokenizer):
            raise ValueError(f"corpus {str(corpus)!r} was prepared with another tokenizer than {str(tokenizer_path)!r}")
    else:
        cache = _cache_dir(cache_dir)
        source, tokenizer = _source_and_tokenizer(corpus, tokenizer_path, vocab_size, cache, show_progress, text_column)
        key = _digest("shards", SHARDS_VERSION, source.fingerprint, _tokenizer_identity(tokenizer))
        shards = prepare_shards(source.texts, cache / f"shards-{key}", tokenizer, source=source.fingerprint,
                                corpus_name=source.name, workers=workers, show_progress=show_progress)
    train_rows, eval_rows = split(shards.rows(seq_len), eval_fraction)
    return Prepared(tokenizer=tokenizer, shards=shards, train=train_rows, eval=eval_rows)


def _source_and_tokenizer(corpus, tokenizer_path, vocab_size: int, cache, show_progress: bool, text_column: str):
    """(the corpus, streamed when read; the tokenizer: loaded from `tokenizer_path`, or trained on the
    corpus with `vocab_size` tokens and cached)."""
    source = _Corpus(corpus, cache, show_progress, text_column)
    if tokenizer_path is not None:
        return source, load_tokenizer(tokenizer_path)
    return source, _tokenizer_for(source.texts_hash, source.texts, vocab_size, cache, show_progress)


def prepare_folder(
    corpus: str | os.PathLike | None,
    out: str | os.PathLike,
    tokenizer_path: str | os.PathLike | None = None,
    vocab_size: int = 30522,
    *,
    text_column: str = TEXT_COLUMN,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    shard_chars: int = SHARD_CHARS,
    show_progress: bool = True,
) -> Shards:
    """``fastmask prepare``: the corpus tokenised into token shards in folder `out` (a trained
    tokenizer is cached in `cache_dir` as for pretraining). Training reads `out` as its --corpus.
    A finished `out` of the same corpus and tokenizer is reused; an unfinished one is continued."""
    if tokenizer_path is None:
        _check_vocab_size(vocab_size)
    if is_prepared(corpus):
        raise ValueError(f"corpus {str(corpus)!r} is already a prepared folder: train on it as it is")
    source, tokenizer = _source_and_tokenizer(corpus, tokenizer_path, vocab_size, _cache_dir(cache_dir), show_progress,
                                              text_column)
    return prepare_shards(source.texts, out, tokenizer, source=source.fingerprint, corpus_name=source.name,
                          workers=workers, shard_chars=shard_chars, show_progress=show_progress)
