"""The WordPiece tokenizer: trained on the corpus and cached by content, or loaded from a local
Hugging Face tokenizer directory (never downloaded)."""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from fastmask.data.cache import _atomic_write, _cache_dir, _digest, _log, _texts_hash, progress_bars

if TYPE_CHECKING:  # transformers/tokenizers are imported lazily: they take seconds to import
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4 in every trained tokenizer
_TOKENIZER_VERSION = 2  # bump when the recipe changes (old tokenizer-*.json never looked up); 2: canonical ids


def _wrap(backend) -> PreTrainedTokenizerFast:
    from transformers import PreTrainedTokenizerFast

    pad, unk, cls, sep, mask = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=pad, unk_token=unk, cls_token=cls, sep_token=sep, mask_token=mask
    )


def _train_backend(texts: Iterable[str], vocab_size: int, show_progress: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),  # first, so they get ids 0..4
        continuing_subword_prefix="##",
        show_progress=show_progress,
    )
    # Streamed: the trainer keeps word counts, never the texts.
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts) if isinstance(texts, Sequence) else None)
    # The trainer breaks frequency ties in hash-map order, which differs run to run: the same
    # vocabulary comes out under different ids. Canonical ids (specials first, then the tokens in
    # code-point order) make the trained tokenizer a function of the texts and vocab_size alone.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS))
    tok.model = models.WordPiece({t: i for i, t in enumerate([*SPECIAL_TOKENS, *learned])}, unk_token="[UNK]",
                                 continuing_subword_prefix="##")
    ids = [tok.token_to_id(t) for t in SPECIAL_TOKENS]
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"trained tokenizer has special token ids {ids}, expected 0..{len(SPECIAL_TOKENS) - 1}")
    # BERT-style [CLS] a [SEP] (b [SEP]) when callers ask for special tokens; pack() does not.
    cls_id, sep_id = ids[2], ids[3]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tok


def _check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an int > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")


def _tokenizer_for(
    texts_hash: str, get_texts: Callable[[], Iterable[str]], vocab_size: int, cache: Path, show_progress: bool
) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer

    key = _digest("wordpiece", _TOKENIZER_VERSION, vocab_size, texts_hash)
    path = cache / f"tokenizer-{key}.json"
    if path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)))
        except Exception as e:  # a corrupt/foreign file: retrain and replace it
            warnings.warn(f"fastmask: ignoring unreadable cached tokenizer {path}: {e}", stacklevel=3)
            with contextlib.suppress(OSError):
                path.unlink()
    t0 = time.perf_counter()
    _log(show_progress, f"training a WordPiece tokenizer (vocab {vocab_size}) on the corpus ...")
    backend = _train_backend(get_texts(), vocab_size, progress_bars(show_progress))
    _log(show_progress, f"tokenizer trained ({backend.get_vocab_size()} tokens, {time.perf_counter() - t0:.1f} s)")
    # The tokenizers WordPiece trainer is not deterministic (hash-map order breaks ties; upstream
    # huggingface/tokenizers#1794), so processes sharing a cache that train at once (one per rank)
    # would disagree: the first to publish wins and everyone returns the published file.
    if not _atomic_write(path, lambda tmp: backend.save(tmp), overwrite=False) and path.is_file():
        try:
            return _wrap(Tokenizer.from_file(str(path)))
        except Exception:
            pass
    return _wrap(backend)


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, cache_dir: str | os.PathLike | None = None, *, show_progress: bool = False
) -> PreTrainedTokenizerFast:
    """A BERT-style WordPiece tokenizer trained on ``texts``, cached as ``tokenizer-<key>.json``.

    Lowercasing BertNormalizer, BertPreTokenizer, WordPiece with the ``##`` continuing prefix and
    decoder; :data:`SPECIAL_TOKENS` get ids 0..4 and are set as pad/unk/cls/sep/mask. The key is a hash
    of (vocab_size, the texts' content hash): a cache hit skips training.
    """
    _check_vocab_size(vocab_size)
    texts = list(texts)
    return _tokenizer_for(_texts_hash(texts), lambda: texts, vocab_size, _cache_dir(cache_dir), show_progress)


def load_tokenizer(path: str | os.PathLike) -> PreTrainedTokenizerFast:
    """A local Hugging Face tokenizer directory (never downloads); it needs mask/cls/sep/pad tokens."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if not Path(path).expanduser().is_dir():
        raise ValueError(f"tokenizer {str(path)!r}: not a directory (expected a local Hugging Face tokenizer dir)")
    try:
        tok = AutoTokenizer.from_pretrained(str(Path(path).expanduser()), local_files_only=True)
    except Exception as e:  # transformers raises OSError/ValueError/KeyError/... depending on what is wrong
        raise ValueError(f"tokenizer {str(path)!r}: cannot be loaded ({type(e).__name__}: {e})") from e
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise ValueError(f"tokenizer {str(path)!r}: not a fast (tokenizers-backed) tokenizer: {type(tok).__name__}")
    missing = [name for name in ("mask", "cls", "sep", "pad") if getattr(tok, f"{name}_token_id", None) is None]
    if missing:
        raise ValueError(f"tokenizer {str(path)!r}: lacks a {'/'.join(missing)} token (BERT-style MLM needs them)")
    return tok


def _tokenizer_identity(tokenizer: PreTrainedTokenizerFast) -> str:
    """Hash of what determines pack()'s output: the tokenizer pipeline and vocabulary, and cls/sep ids."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    for volatile in ("truncation", "padding"):  # per-call settings transformers toggles; irrelevant here
        spec.pop(volatile, None)
    return _digest(json.dumps(spec, sort_keys=True), tokenizer.cls_token_id, tokenizer.sep_token_id)
