"""Pretraining data for ``fastmask pretrain``: corpus, WordPiece tokenizer, packed rows, held-out split.

Built-in corpus: the docstrings of the running Python's own standard library, read with :mod:`ast`
from the ``.py`` sources (never imported), so every install has a corpus of English text and nothing
is downloaded. Otherwise a ``.txt``/``.md`` file (one document per non-empty line), a ``.jsonl`` file
(one ``{"text": ...}`` object per line) or a directory of such files.

Caching (``$FASTMASK_CACHE``, else ``~/.cache/fastmask``; every file written to a temp name and then
``os.replace``-d, so concurrent or interrupted runs never leave a half-written file):

* ``corpus-<fingerprint>.json``: the content hash of the corpus texts, keyed by a cheap fingerprint of
  the source (stdlib: file names, sizes and mtimes; a path: the raw bytes), so a warm run never parses.
* ``tokenizer-<key>.json``: a trained tokenizer, key = hash(vocab_size, texts hash). WordPiece training
  is not deterministic, so the first process to publish an entry wins and racing ones load it.
* ``rows-<key>.pt``: packed rows, key = hash(texts hash, tokenizer identity, seq_len); the held-out
  split is recomputed (cheap and deterministic), so it is not part of the key.

cache      the cache folder, atomic writes, the hashes keys are made of; log lines; whether bars are drawn
corpus     the built-in corpus, corpus files and directories, the source fingerprint
tokenizer  the WordPiece tokenizer: trained and cached, or loaded from a directory
packing    documents into rows, the held-out split
``prepare`` (here) runs the whole pipeline.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fastmask.data.cache import _atomic_write, _cache_dir, _digest, _log, progress_bars
from fastmask.data.corpus import _Corpus, builtin_texts, load_texts
from fastmask.data.packing import _PACK_VERSION, _load_rows, pack, split
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
    "builtin_texts",
    "load_texts",
    "load_tokenizer",
    "pack",
    "prepare",
    "progress_bars",
    "split",
    "train_tokenizer",
]


@dataclass
class Prepared:
    """What the pretraining loop needs: the tokenizer and int32 (N, seq_len) train / held-out rows."""

    tokenizer: PreTrainedTokenizerFast
    train: torch.Tensor  # int32 (N_train, seq_len)
    eval: torch.Tensor  # int32 (N_eval, seq_len), N_eval >= 1 when eval_fraction > 0


def prepare(
    corpus: str | os.PathLike | None,
    tokenizer_path: str | os.PathLike | None,
    vocab_size: int,
    seq_len: int,
    eval_fraction: float,
    cache_dir: str | os.PathLike | None,
    show_progress: bool = True,
) -> Prepared:
    """The whole pipeline: corpus -> tokenizer (loaded, or trained and cached) -> packed rows (cached) -> split.

    ``vocab_size`` only matters when training (``tokenizer_path`` is None). A warm run reads neither
    the corpus nor trains nor tokenizes: it loads two cache files.
    """
    # Validate first, so a typo fails before seconds of parsing and training.
    if tokenizer_path is None:
        _check_vocab_size(vocab_size)
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3, got {seq_len!r}")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    cache = _cache_dir(cache_dir)
    source = _Corpus(corpus, cache, show_progress)

    if tokenizer_path is not None:
        tokenizer = load_tokenizer(tokenizer_path)
    else:
        tokenizer = _tokenizer_for(source.texts_hash, lambda: source.texts, vocab_size, cache, show_progress)

    key = _digest("rows", _PACK_VERSION, source.texts_hash, _tokenizer_identity(tokenizer), seq_len)
    path = cache / f"rows-{key}.pt"
    rows = _load_rows(path, seq_len)
    if rows is None:
        texts = source.texts
        t0 = time.perf_counter()
        rows = pack(texts, tokenizer, seq_len, show_progress=show_progress)
        _log(show_progress, f"packed {rows.shape[0]} rows of {seq_len} tokens ({time.perf_counter() - t0:.1f} s)")
        _atomic_write(path, lambda tmp: torch.save(rows, tmp))
    else:
        _log(show_progress, f"{rows.shape[0]} packed rows of {seq_len} tokens from the cache ({path.name})")
    train_rows, eval_rows = split(rows, eval_fraction)
    return Prepared(tokenizer=tokenizer, train=train_rows, eval=eval_rows)
