"""Where words start: from a tokenizer's vocabulary (one gather per batch) or from offsets.

:func:`fastmask.whole_word_mask` and :func:`fastmask.span_mask` take a bool ``word_start`` (B, L).
Two ways to get it:

* :func:`word_start_table` (tokenizer) -> a bool (V,) table, True where a token id begins a word;
  ``table[input_ids]`` is then one gather on any device, with no offsets and no host work. The
  tokenizer's own marker decides: WordPiece continuations carry ``##`` (not a start), byte-level
  BPE (RoBERTa, ModernBERT) marks starts with ``Ġ``, SentencePiece (XLM-R) with ``▁``. Special
  tokens are words of their own. Punctuation is its own token in these vocabularies, so it starts
  a word ("hello." is two words), where offsets join what no space separates.
* :func:`word_start_from_offsets` (offset_mapping, special_tokens_mask): transformers' rule
  (``DataCollatorForLanguageModeling(whole_word_mask=True)``): a token starts a word when a gap
  separates it from the previous token's end, or the previous token is special.

The two agree on text whose words are separated by spaces (tests/test_words.py).
"""

from __future__ import annotations

import torch

# The subword markers, in the order they are looked for: (marker, whether it marks a start).
_MARKERS = (("##", False), ("\u0120", True), ("\u2581", True))


def _vocabulary(tokenizer) -> list[str]:
    """Every id's token string, ids 0 .. len(tokenizer) - 1 (added tokens included)."""
    size = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    return [t if isinstance(t, str) else "" for t in tokens]


def _marker(tokens: list[str]) -> tuple[str, bool]:
    """The vocabulary's subword marker: the one most tokens carry."""
    counts = [sum(t.startswith(marker) for t in tokens) for marker, _ in _MARKERS]
    best = max(range(len(_MARKERS)), key=counts.__getitem__)
    if counts[best] == 0:
        raise ValueError("word_start_table: the vocabulary carries none of the subword markers '##' (WordPiece), "
                         "'\u0120' (byte-level BPE) or '\u2581' (SentencePiece): pass word starts from offsets "
                         "(fastmask.word_start_from_offsets) instead")
    return _MARKERS[best]


def word_start_table(tokenizer, device: torch.device | str | None = None) -> torch.Tensor:
    """Bool (V,): True where a token id begins a word (V = ``len(tokenizer)``); see the module doc.

    Built once per tokenizer on the host (a pass over the vocabulary), then moved to `device`:
    index it with a batch's ids (``table[input_ids]``) on that device.
    """
    tokens = _vocabulary(tokenizer)
    marker, marks_start = _marker(tokens)
    starts = [t.startswith(marker) == marks_start for t in tokens]
    for special in getattr(tokenizer, "all_special_ids", ()):
        if 0 <= special < len(starts):
            starts[special] = True
    return torch.tensor(starts, dtype=torch.bool, device=device)


def word_start_from_offsets(offset_mapping: torch.Tensor, special_tokens_mask: torch.Tensor) -> torch.Tensor:
    """Bool (B, L) from a fast tokenizer's ``offset_mapping`` (B, L, 2) and ``special_tokens_mask`` (B, L):
    True where a non-special token follows a gap after the previous token's end, or a special token
    (or is the row's first); transformers' whole-word rule."""
    if offset_mapping.dim() != 3 or offset_mapping.shape[-1] != 2:
        raise ValueError(f"offset_mapping must have shape (B, L, 2), got {tuple(offset_mapping.shape)}")
    if tuple(special_tokens_mask.shape) != tuple(offset_mapping.shape[:2]):
        raise ValueError(f"special_tokens_mask must have shape {tuple(offset_mapping.shape[:2])}, "
                         f"got {tuple(special_tokens_mask.shape)}")
    special = special_tokens_mask.bool()
    starts, ends = offset_mapping.unbind(-1)
    follows_break = torch.ones_like(special)  # a row's first token starts a word
    follows_break[:, 1:] = (starts[:, 1:] != ends[:, :-1]) | special[:, :-1]
    return ~special & follows_break
