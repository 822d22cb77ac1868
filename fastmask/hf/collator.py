"""A drop-in for transformers' DataCollatorForLanguageModeling: changing the import is the migration.

transformers' collator spends its time in Python: ``tokenizer.pad`` pads every field of every row
one list at a time, a batch without a special-tokens mask gets one from a per-row loop over the
ids, and the masking is a chain of eager ops. This one pads the features tokenizers and datasets
produce (dicts of lists of ints) in bulk into the same batch, finds the special tokens with one
:func:`fastmask.maskable_mask` pass and masks with fastmask's fused kernel
(:func:`fastmask.mask_tokens`; whole words with :func:`fastmask.whole_word_mask`). Everything
else (other features, ``mlm=False``, the argument checks and their messages and warnings) is
transformers' own code. :class:`DataCollatorForWholeWordMask` stands in for transformers 4.x's
class of that name, which transformers 5 removed.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from transformers import BatchEncoding, PreTrainedTokenizerBase
from transformers.data.data_collator import (
    _numpy_collate_batch,
    _torch_collate_batch,
    pad_without_fast_tokenizer_warning,
)

import fastmask
from fastmask import backends, checks
from fastmask.hf.patch import rank_and_world

try:  # lists of Python ints to int64 in one C loop (the collator's floor is reading them)
    from fastmask._C import int64_rows as _read_int64_rows
except ImportError:
    _read_int64_rows = None


@dataclass
class DataCollatorForLanguageModeling(transformers.DataCollatorForLanguageModeling):
    """transformers' ``DataCollatorForLanguageModeling`` masking with fastmask's C++ kernel.

    The same arguments, padding, outputs and statistics: each maskable token is chosen with
    probability ``mlm_probability``, then replaced by [MASK] with ``mask_replace_prob``, by a token
    drawn uniformly from ``len(tokenizer)`` with ``random_replace_prob``, else kept; labels hold
    the original id where chosen, -100 elsewhere. Maskable tokens are those the features'
    ``special_tokens_mask`` marks 0 (the field is consumed, as transformers does) or, without it,
    those whose id is not in ``tokenizer.all_special_ids`` (which holds the pad id).

    ``whole_word_mask=True`` (transformers' semantics): each word is chosen with probability
    ``mlm_probability`` and masked whole, every token of it replaced by [MASK]
    (``mask_replace_prob`` is set to 1, with transformers' warning). Words start where
    transformers' rule says when the features carry ``offset_mapping`` (a gap before the token or
    a special token before it: :func:`fastmask.word_start_from_offsets`), else where the
    vocabulary's subword markers say (:func:`fastmask.word_start_table`, built once per collator:
    one gather per batch). The two agree on text whose words are separated by spaces;
    punctuation is a word of its own by the vocabulary, joined to its word by offsets.
    ``offset_mapping`` is padded here (``tokenizer.pad`` cannot pad it) and never reaches the
    batch. The Trainer's ``remove_unused_columns=True`` (its default) drops ``offset_mapping`` from
    the features before any collator sees them, so words then come from the vocabulary. Arguments
    of its own:

    - ``exact_count``: choose exactly ``fastmask.masked_count(n, mlm_probability)`` of each row's
      n maskable tokens (Google's BERT and Megatron) instead of a Bernoulli draw per token; with
      whole words, words while they fit that budget (:func:`fastmask.whole_word_mask`).
    - ``keep_random_replacement``: with ``whole_word_mask=True``, keep ``mask_replace_prob`` and
      ``random_replace_prob`` (BERT's 80/10/10 by default, decided per token) instead of
      transformers' all-[MASK].
    - ``mask_in_model``: only pad, for a model patched by ``fastmask.hf.apply_fastmask``, which
      masks the batch inside its forward on its own device. ``input_ids`` come back uncorrupted
      and ``labels`` is an int64 tensor of shape (B, 0), "no position labelled yet": the patched
      model recognises width-0 labels, the Trainer still sees ``labels`` (so ``evaluate()``
      reports ``eval_loss``), and an unpatched model fails loudly on the shape. Needs ``mlm=True``,
      and not ``whole_word_mask`` (whole words masked in the model are
      ``apply_fastmask(..., masking="whole-word")``).
    - ``backend``: the kernels' backend, as fastmask's ops take it (``"auto"``: the C++ kernel on
      CPU tensors; ``"reference"``: the pure-PyTorch specification).

    Randomness is fastmask's counter-based Philox keyed by (seed word, epoch, row id, position):
    row ids are the row indices 0..B-1 and epoch (the mask counter) counts this process's calls,
    so masks are fresh on every call without bookkeeping. The seed word is set at a process's first call (again
    whenever ``os.getpid()`` changes, as after a fork):

    - outside a DataLoader worker: ``seed``; with ``seed=None`` one draw from torch's global RNG,
      so ``torch.manual_seed`` (Trainer's ``set_seed``) reproduces the masks, as transformers'
      ``seed=None`` does;
    - in a DataLoader worker: the top 63 bits of ``blake2b(seed or 0, get_worker_info().seed)``.
      The DataLoader draws the worker seeds from the main process's RNG each time it starts its
      workers, distinct per worker, so masks repeat neither across workers nor across epochs
      (``seed + worker id``, transformers' rule, repeats every epoch when workers restart), and
      the same ``torch.manual_seed`` and ``seed`` reproduce them;
    - on data-parallel rank r > 0 (torch.distributed, else the ``RANK`` variable) the rank joins
      the hash, so ranks seeded alike never share a mask.

    The epoch is a 32-bit word: one process's 2**32-th call raises.
    """

    exact_count: bool = False
    mask_in_model: bool = False
    keep_random_replacement: bool = False
    backend: str = "auto"

    def __post_init__(self):
        replace = self.mask_replace_prob, self.random_replace_prob
        with warnings.catch_warnings():
            if self.keep_random_replacement:  # transformers would force [MASK]: keep the probabilities given
                warnings.filterwarnings("ignore", "Random token replacement is not supported with whole word masking")
            super().__post_init__()  # transformers' checks, messages and warnings
        if self.keep_random_replacement:
            self.mask_replace_prob, self.random_replace_prob = float(replace[0]), float(replace[1])
        if self.mask_in_model and not self.mlm:
            raise ValueError("mask_in_model=True needs mlm=True: the patched model masks for masked language modeling")
        if self.mask_in_model and self.whole_word_mask:
            raise ValueError("mask_in_model=True with whole_word_mask=True: this collator only pads for a patched "
                             "model; whole-word masking in the model is apply_fastmask(model, tokenizer, "
                             "masking=\"whole-word\") with whole_word_mask=False here")
        if self.seed is not None:
            checks.integer(type(self).__name__, "seed", self.seed, 0, checks.SEED_LIMIT)
        if self.backend not in backends.BACKENDS:
            raise ValueError(f"backend must be one of {backends.BACKENDS}, got {self.backend!r}")
        self._seed_pid = None
        self._word_start_table = None

    def _philox_key(self) -> tuple[int, int]:
        """The Philox key (seed word, epoch) of this call's masks, as the class docstring says: the
        process's seed word and its count of mask calls so far (the ops' epoch, the mask counter)."""
        if self._seed_pid != os.getpid():
            worker, (rank, _) = torch.utils.data.get_worker_info(), rank_and_world()
            if worker is None and self.seed is None:
                seed = int(torch.randint(checks.SEED_LIMIT - 1, ()))
            else:
                seed = self.seed or 0
            salt = ([f"worker {worker.seed}"] if worker is not None else []) + ([f"rank {rank}"] if rank else [])
            if salt:
                key = " ".join([str(seed), *salt]).encode()
                seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
            self._process_seed, self._seed_pid, self._mask_calls = seed, os.getpid(), 0
        self._mask_calls += 1
        return self._process_seed, self._mask_calls - 1

    def torch_call(self, examples):
        return self._collate(examples, "pt") if self.mlm else super().torch_call(examples)

    def numpy_call(self, examples):
        return self._collate(examples, "np") if self.mlm else super().numpy_call(examples)

    def _collate(self, examples, return_tensors: str):
        """transformers' torch_call / numpy_call with mlm=True, the common features padded in bulk."""
        offsets = None
        if isinstance(examples[0], Mapping) and "offset_mapping" in examples[0]:
            # not a model input, and tokenizer.pad cannot pad its pairs: set apart, padded below
            offsets = [example["offset_mapping"] for example in examples]
            examples = [{key: value for key, value in example.items() if key != "offset_mapping"}
                        for example in examples]
        if not isinstance(examples[0], Mapping):
            collate = _torch_collate_batch if return_tensors == "pt" else _numpy_collate_batch
            batch = {"input_ids": collate(examples, self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)}
        else:
            batch = _pad_lists(self.tokenizer, examples, self.pad_to_multiple_of, return_tensors)
            if batch is None:
                batch = pad_without_fast_tokenizer_warning(
                    self.tokenizer, examples, return_tensors=return_tensors, pad_to_multiple_of=self.pad_to_multiple_of
                )
        special_tokens_mask = batch.pop("special_tokens_mask", None)
        offset_mapping = None
        if offsets is not None and self.whole_word_mask:
            lengths = [len(example["input_ids"]) for example in examples]
            offset_mapping = _pad_offsets(offsets, lengths, batch["input_ids"].shape[1], self.tokenizer.padding_side)
        mask = self.torch_mask_tokens if return_tensors == "pt" else self.numpy_mask_tokens
        batch["input_ids"], batch["labels"] = mask(
            batch["input_ids"], special_tokens_mask=special_tokens_mask, offset_mapping=offset_mapping)
        return batch

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        """(input_ids, labels) of a padded batch, as new tensors (transformers' version corrupts
        ``inputs`` in place). With ``mask_in_model``: ``inputs`` itself and width-0 labels.
        ``offset_mapping`` (B, L, 2) places the word starts of whole-word masking; without it the
        vocabulary does."""
        if self.mask_in_model:
            return inputs, torch.empty((inputs.shape[0], 0), dtype=torch.int64)
        if special_tokens_mask is None:
            maskable = fastmask.maskable_mask(inputs, special_ids=self.tokenizer.all_special_ids, backend=self.backend)
        else:
            maskable = torch.as_tensor(special_tokens_mask) == 0
        seed, epoch = self._philox_key()
        vocabulary = (self.tokenizer.mask_token_id, len(self.tokenizer))
        options = dict(mlm_probability=self.mlm_probability, mask_replace_prob=self.mask_replace_prob,
                       random_replace_prob=self.random_replace_prob, exact_count=self.exact_count, seed=seed,
                       epoch=epoch, backend=self.backend)
        if not self.whole_word_mask:
            return fastmask.mask_tokens(inputs, maskable, *vocabulary, **options)
        word_start = self._word_start(inputs, maskable, offset_mapping)
        return fastmask.whole_word_mask(inputs, maskable, word_start, *vocabulary, **options)

    def _word_start(self, inputs, maskable, offset_mapping) -> torch.Tensor:
        """Bool (B, L): where words start, by transformers' offsets rule when the batch has offsets,
        else by the vocabulary's table (built at the first such batch, moved when the device changes)."""
        if offset_mapping is not None:
            return fastmask.word_start_from_offsets(torch.as_tensor(offset_mapping, device=inputs.device), ~maskable)
        if self._word_start_table is None:
            self._word_start_table = fastmask.word_start_table(self.tokenizer)
        if self._word_start_table.device != inputs.device:
            self._word_start_table = self._word_start_table.to(inputs.device)
        return self._word_start_table[inputs]

    def numpy_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        """torch_mask_tokens on NumPy arrays."""
        special, offsets = (None if x is None else torch.as_tensor(np.asarray(x))
                            for x in (special_tokens_mask, offset_mapping))
        ids, labels = self.torch_mask_tokens(torch.from_numpy(np.asarray(inputs)), special, offsets)
        return ids.numpy(), labels.numpy()


class DataCollatorForWholeWordMask(DataCollatorForLanguageModeling):
    """transformers 4.x's ``DataCollatorForWholeWordMask`` (gone in transformers 5), on fastmask's kernel.

    Takes 4.x's arguments, in the order of its last releases (``tf_experimental_compile`` is
    accepted and ignored: transformers 5 has no TensorFlow), and masks as 4.x did:

    - whole words, a fixed count per row: 4.x took words in a random order while they fit
      ``round(mlm_probability * len(row))`` tokens; this takes them while they fit
      ``fastmask.masked_count(n, mlm_probability)`` of the row's n maskable tokens, stopping at the
      first word that does not (4.x skipped it and tried the next): ``exact_count=True``;
    - the 80/10/10 rule per token (``mask_replace_prob``, ``random_replace_prob``), not
      transformers 5's all-[MASK]: ``keep_random_replacement=True``;
    - words by the vocabulary's markers: 4.x's ``##`` rule for WordPiece, and the starts that
      byte-level BPE (``Ġ``) and SentencePiece (``▁``) mark, where 4.x made every token a word.

    It is ``DataCollatorForLanguageModeling(whole_word_mask=True, exact_count=True,
    keep_random_replacement=True)``, and the batch is that collator's: every feature padded
    (4.x returned ``input_ids`` and ``labels`` only, no attention mask), ``offset_mapping`` used
    when the features carry it. fastmask's own arguments are keywords after 4.x's.
    """

    def __init__(self, tokenizer, mlm=True, mlm_probability=0.15, mask_replace_prob=0.8, random_replace_prob=0.1,
                 pad_to_multiple_of=None, tf_experimental_compile=False, return_tensors="pt", seed=None, *,
                 exact_count=True, keep_random_replacement=True, **fastmask_options):
        super().__init__(tokenizer, mlm=mlm, whole_word_mask=True, mlm_probability=mlm_probability,
                         mask_replace_prob=mask_replace_prob, random_replace_prob=random_replace_prob,
                         pad_to_multiple_of=pad_to_multiple_of, return_tensors=return_tensors, seed=seed,
                         exact_count=exact_count, keep_random_replacement=keep_random_replacement,
                         **fastmask_options)


def _pad_lists(tokenizer, examples, pad_to_multiple_of: int | None, return_tensors: str) -> BatchEncoding | None:
    """``tokenizer.pad(examples, return_tensors=...)`` for dicts of lists of ints, built in bulk.

    The same BatchEncoding (keys in the same order, int64 values, padded on the tokenizer's side
    to the longest row, rounded up to ``pad_to_multiple_of``, with the values ``tokenizer.pad``
    uses, the attention mask added if missing) without its per-row Python padding. None for
    anything else (tensors or arrays, fields ``tokenizer.pad`` does not pad, fields of unequal
    lengths, values that are not all ints, a tokenizer that pads its own way, no C++ extension to
    read the ids): the caller then pads through the tokenizer, whose result or error is
    transformers' own.
    """
    if _read_int64_rows is None:
        return None
    base = PreTrainedTokenizerBase
    if getattr(type(tokenizer), "pad", None) is not base.pad or getattr(type(tokenizer), "_pad", None) is not base._pad:
        return None
    names = tokenizer.model_input_names
    fill = {names[0]: tokenizer.pad_token_id, "token_type_ids": tokenizer.pad_token_type_id, "special_tokens_mask": 1}
    if "attention_mask" in names:
        fill["attention_mask"] = 0
    keys = examples[0].keys()
    if (tokenizer.pad_token_id is None or tokenizer.padding_side not in ("right", "left") or names[0] not in keys
            or any(key not in fill for key in keys) or any(example.keys() != keys for example in examples)):
        return None
    columns = {key: [example[key] for example in examples] for key in keys}
    if any(type(row) is not list for column in columns.values() for row in column):
        return None
    lengths = [len(row) for row in columns[names[0]]]
    if not any(lengths) or any([len(row) for row in column] != lengths for column in columns.values()):
        return None
    first = next(i for i, length in enumerate(lengths) if length)
    if any(type(column[first][0]) is not int for column in columns.values()):  # bools or floats: tokenizer.pad's dtype
        return None

    width = max(lengths)
    if pad_to_multiple_of is not None and width % pad_to_multiple_of != 0:
        width = (width // pad_to_multiple_of + 1) * pad_to_multiple_of
    filled = _filled(lengths, width, tokenizer.padding_side)
    batch = {}
    for key, column in columns.items():
        flat = _concatenate(column, small=key != names[0])
        if flat is None:
            return None
        batch[key] = _place(flat, filled, fill[key])
    if "attention_mask" in fill and "attention_mask" not in batch:
        batch["attention_mask"] = filled.astype(np.int64)
    if return_tensors == "pt":
        batch = {key: torch.from_numpy(value) for key, value in batch.items()}
    return BatchEncoding(batch)


def _filled(lengths: list[int], width: int, padding_side: str) -> np.ndarray:
    """Bool (B, width): where each row's tokens go, padded on `padding_side`."""
    ends = np.array(lengths)[:, None]
    return np.arange(width) < ends if padding_side == "right" else np.arange(width) >= width - ends


def _place(flat: np.ndarray, filled: np.ndarray, fill: int) -> np.ndarray:
    """Int64 (B, width, ...): the rows' values end to end (``flat``, (N, ...)) where ``filled`` (B, width)
    is True, ``fill`` elsewhere. Rows that are all the same width (padding="max_length") are reshaped,
    not scattered: the scatter costs as much as reading the lists."""
    if filled.all():
        return flat.astype(np.int64, copy=False).reshape(filled.shape + flat.shape[1:])
    placed = np.full(filled.shape + flat.shape[1:], fill, dtype=np.int64)
    placed[filled] = flat
    return placed


def _pad_offsets(offsets: list, lengths: list[int], width: int, padding_side: str) -> np.ndarray:
    """Int64 (B, width, 2): the features' ``offset_mapping`` rows, (0, 0) on the padding."""
    for i, (row, length) in enumerate(zip(offsets, lengths)):
        if len(row) != length:
            raise ValueError(f"offset_mapping of feature {i} has {len(row)} pairs for its {length} input_ids")
    return _place(_offset_pairs(offsets), _filled(lengths, width, padding_side), 0)


def _offset_pairs(rows: list) -> np.ndarray:
    """The rows' (start, end) pairs end to end, (N, 2) int64: pairs of Python ints read by the C++
    extension, anything else (arrays, tensors; or no extension) by numpy, row by row."""
    if _read_int64_rows is not None:
        try:
            return np.frombuffer(_read_int64_rows(rows, 2), dtype=np.int64).reshape(-1, 2)
        except (TypeError, ValueError, OverflowError):  # not lists of pairs of ints
            pass
    return np.concatenate([np.asarray(row, dtype=np.int64).reshape(-1, 2) for row in rows])


def _concatenate(rows: list[list], small: bool) -> np.ndarray | None:
    """The rows' ints end to end, exactly as torch.tensor would read them (ints and bools), or None
    for anything else. ``small``: try one byte per value first (masks and token types are 0/1)."""
    if small:
        try:
            return np.frombuffer(b"".join(map(bytes, rows)), dtype=np.uint8)
        except (TypeError, ValueError):  # not all ints, or not all in [0, 256)
            pass
    try:
        return np.frombuffer(_read_int64_rows(rows, 0), dtype=np.int64)
    except (TypeError, ValueError, OverflowError):  # not all int64s
        return None
