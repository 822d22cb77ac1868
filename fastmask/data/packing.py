"""Documents into the fixed-length int32 rows the model trains on (one tokenizer pass over the corpus,
so the rows are cached), and the deterministic held-out split of them."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from fastmask.data.cache import _progress

if TYPE_CHECKING:  # imported lazily: transformers takes seconds to import
    from transformers import PreTrainedTokenizerFast

_PACK_VERSION = 1  # bump when the row layout changes, so old rows-*.pt entries are never looked up
_ENCODE_CHUNK = 2048  # texts per tokenizer call: large enough for the Rust thread pool, small for progress


def pack(
    texts: Sequence[str], tokenizer: PreTrainedTokenizerFast, seq_len: int, *, show_progress: bool = False
) -> torch.Tensor:
    """Packs documents into int32 rows ``[CLS] + (seq_len - 2) stream tokens + [SEP]`` of shape (N, seq_len).

    The stream is every document's ids (no special tokens) followed by one [SEP]; documents that
    tokenize to nothing are dropped and the ragged tail of the stream is dropped.
    """
    if not isinstance(seq_len, int) or seq_len < 3:
        raise ValueError(f"seq_len must be an int >= 3 ([CLS] + at least one token + [SEP]), got {seq_len!r}")
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError("pack() needs a tokenizer with [CLS] and [SEP] (cls_token/sep_token) tokens")
    from tokenizers import Tokenizer

    # A private copy of the Rust tokenizer: no truncation/padding that a tokenizer.json may carry,
    # and no transformers per-call overhead or "sequence longer than model_max_length" warnings.
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    texts = list(texts)
    sep = [sep_id]
    chunks = []
    starts = range(0, len(texts), _ENCODE_CHUNK)
    for start in _progress(starts, show_progress, desc="packing", unit="chunk", total=len(starts)):
        encodings = backend.encode_batch_fast(texts[start : start + _ENCODE_CHUNK], add_special_tokens=False)
        stream = itertools.chain.from_iterable(x for e in encodings if e.ids for x in (e.ids, sep))
        chunks.append(np.fromiter(stream, dtype=np.int32))
    stream = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int32)
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


def split(rows: torch.Tensor, eval_fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic shuffled (train, held-out) split; >= 1 held-out row when eval_fraction > 0.

    Held-out gets ``round(N * eval_fraction)`` rows (at least 1, at most N - 1); train keeps the rest.
    """
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction!r}")
    n = rows.shape[0]
    if eval_fraction == 0:
        return rows, rows[:0]
    if n < 2:
        raise ValueError(f"cannot hold out rows from {n} row(s): need at least 2 (one to train on)")
    n_eval = min(max(1, round(n * eval_fraction)), n - 1)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return rows[perm[n_eval:]], rows[perm[:n_eval]]


def _load_rows(path: Path, seq_len: int) -> torch.Tensor | None:
    if not path.is_file():
        return None
    try:
        rows = torch.load(path, weights_only=True)
    except Exception as e:
        warnings.warn(f"fastmask: ignoring unreadable cached rows {path}: {e}", stacklevel=3)
        return None
    ok = isinstance(rows, torch.Tensor) and rows.dtype == torch.int32 and rows.dim() == 2 and rows.shape[1] == seq_len
    return rows if ok and rows.shape[0] > 0 else None
