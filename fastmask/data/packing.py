"""Documents into the fixed-length int32 rows the model trains on, in memory (the layout the token
shards of :mod:`fastmask.data.shards` are read in), and the deterministic held-out split of a
prepared corpus' rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from fastmask.data.shards import PackedRows, Permutation, RowSet, encode_stream, plain_backend

if TYPE_CHECKING:  # imported lazily: transformers takes seconds to import
    from transformers import PreTrainedTokenizerFast


def pack(texts: Sequence[str], tokenizer: PreTrainedTokenizerFast, seq_len: int) -> torch.Tensor:
    """Packs documents into int32 rows ``[CLS] + (seq_len - 2) stream tokens + [SEP]`` of shape (N, seq_len).

    The stream is every document's ids (no special tokens) followed by one [SEP]; documents that
    tokenize to nothing are dropped and the ragged tail of the stream is dropped. Rows cross
    document boundaries (the [SEP]s mark them). What training reads from a prepared corpus is the
    same rows, cut from its token shards.
    """
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3 ([CLS] + at least one token + [SEP]), got {seq_len!r}")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("pack() needs a tokenizer with [CLS] and [SEP] (cls_token/sep_token) tokens")
    stream, _ = encode_stream(plain_backend(tokenizer), list(texts), sep_id, np.int32)
    body = seq_len - 2
    n = len(stream) // body
    if n == 0:
        raise ValueError(
            f"corpus too small for seq_len {seq_len}: {len(stream)} tokens (with [SEP]s) "
            f"but one row needs {body}"
        )
    rows = np.empty((n, seq_len), dtype=np.int32)
    rows[:, 0] = cls_id
    rows[:, 1:-1] = stream[: n * body].reshape(n, body)
    rows[:, -1] = sep_id
    return torch.from_numpy(rows)


def split(rows: PackedRows, eval_fraction: float, seed: int = 0) -> tuple[RowSet, RowSet]:
    """Deterministic shuffled (train, held-out) split of a prepared corpus' rows; >= 1 held-out row
    when eval_fraction > 0.

    Held-out gets ``round(N * eval_fraction)`` rows (at least 1, at most N - 1); train keeps the rest.
    The shuffle is a :class:`~fastmask.data.shards.Permutation` keyed by `seed`: no O(N) table.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    n = rows.n
    order = Permutation(n, seed)
    if eval_fraction == 0:
        return RowSet(rows, order, 0, n), RowSet(rows, order, n, 0)
    if n < 2:
        raise ValueError(f"cannot hold out rows from {n} row(s): need at least 2 (one to train on)")
    n_eval = min(max(1, round(n * eval_fraction)), n - 1)
    return RowSet(rows, order, n_eval, n - n_eval), RowSet(rows, order, 0, n_eval)
