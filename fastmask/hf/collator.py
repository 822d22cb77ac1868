"""A drop-in for transformers' DataCollatorForLanguageModeling: changing the import is the migration.

transformers' collator spends its time in Python: ``tokenizer.pad`` pads every field of every row
one list at a time, a batch without a special-tokens mask gets one from a per-row loop over the
ids, and the masking is a chain of eager ops. This one pads the features tokenizers and datasets
produce (dicts of lists of ints) in bulk into the same batch, finds the special tokens with one
:func:`fastmask.maskable_mask` pass and masks with fastmask's fused kernel
(:func:`fastmask.mask_tokens`). Everything else (other features, ``mlm=False``, the argument
checks and their messages) is transformers' own code.
"""

from __future__ import annotations

import hashlib
import os
import struct
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
from fastmask import checks
from fastmask.hf.patch import rank_and_world


@dataclass
class DataCollatorForLanguageModeling(transformers.DataCollatorForLanguageModeling):
    """transformers' ``DataCollatorForLanguageModeling`` masking with fastmask's C++ kernel.

    The same arguments, padding, outputs and statistics: each maskable token is chosen with
    probability ``mlm_probability``, then replaced by [MASK] with ``mask_replace_prob``, by a token
    drawn uniformly from ``len(tokenizer)`` with ``random_replace_prob``, else kept; labels hold
    the original id where chosen, -100 elsewhere. Maskable tokens are those the features'
    ``special_tokens_mask`` marks 0 (the field is consumed, as transformers does) or, without it,
    those whose id is not in ``tokenizer.all_special_ids`` (which holds the pad id).
    ``whole_word_mask=True`` is not supported (NotImplementedError). Two arguments of its own:

    - ``exact_count``: choose exactly ``fastmask.masked_count(n, mlm_probability)`` of each row's
      n maskable tokens (Google's BERT and Megatron) instead of a Bernoulli draw per token.
    - ``mask_in_model``: only pad, for a model patched by ``fastmask.hf.apply_fastmask``, which
      masks the batch inside its forward on its own device. ``input_ids`` come back uncorrupted
      and ``labels`` is an int64 tensor of shape (B, 0), "no position labelled yet": the patched
      model recognises width-0 labels, the Trainer still sees ``labels`` (so ``evaluate()``
      reports ``eval_loss``), and an unpatched model fails loudly on the shape. Needs ``mlm=True``.

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

    def __post_init__(self):
        if self.mlm and self.whole_word_mask:
            raise NotImplementedError(
                "whole_word_mask=True: fastmask has no whole-word masking yet; use "
                "transformers.DataCollatorForLanguageModeling for whole-word masking"
            )
        super().__post_init__()  # transformers' checks and messages
        if self.mask_in_model and not self.mlm:
            raise ValueError("mask_in_model=True needs mlm=True: the patched model masks for masked language modeling")
        if self.seed is not None:
            checks.integer(type(self).__name__, "seed", self.seed, 0, checks.SEED_LIMIT)
        self._seed_pid = None

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
        batch.pop("offset_mapping", None)
        mask = self.torch_mask_tokens if return_tensors == "pt" else self.numpy_mask_tokens
        batch["input_ids"], batch["labels"] = mask(batch["input_ids"], special_tokens_mask=special_tokens_mask)
        return batch

    def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        """(input_ids, labels) of a padded batch, as new tensors (transformers' version corrupts
        ``inputs`` in place). With ``mask_in_model``: ``inputs`` itself and width-0 labels.
        ``offset_mapping`` serves whole-word masking only, which fastmask does not have."""
        if self.mask_in_model:
            return inputs, torch.empty((inputs.shape[0], 0), dtype=torch.int64)
        if special_tokens_mask is None:
            maskable = fastmask.maskable_mask(inputs, special_ids=self.tokenizer.all_special_ids)
        else:
            maskable = torch.as_tensor(special_tokens_mask) == 0
        seed, epoch = self._philox_key()
        return fastmask.mask_tokens(
            inputs, maskable, self.tokenizer.mask_token_id, len(self.tokenizer), self.mlm_probability,
            self.mask_replace_prob, self.random_replace_prob, exact_count=self.exact_count, seed=seed, epoch=epoch,
        )

    def numpy_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
        """torch_mask_tokens on NumPy arrays."""
        special = None if special_tokens_mask is None else torch.as_tensor(np.asarray(special_tokens_mask))
        ids, labels = self.torch_mask_tokens(torch.from_numpy(np.asarray(inputs)), special)
        return ids.numpy(), labels.numpy()


def _pad_lists(tokenizer, examples, pad_to_multiple_of: int | None, return_tensors: str) -> BatchEncoding | None:
    """``tokenizer.pad(examples, return_tensors=...)`` for dicts of lists of ints, built in bulk.

    The same BatchEncoding (keys in the same order, int64 values, padded on the tokenizer's side
    to the longest row, rounded up to ``pad_to_multiple_of``, with the values ``tokenizer.pad``
    uses, the attention mask added if missing) without its per-row Python padding. None for
    anything else (tensors or arrays, fields ``tokenizer.pad`` does not pad, fields of unequal
    lengths, values that are not all ints, a tokenizer that pads its own way): the caller then
    pads through the tokenizer, whose result or error is transformers' own.
    """
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
    ends = np.array(lengths)[:, None]
    filled = np.arange(width) < ends if tokenizer.padding_side == "right" else np.arange(width) >= width - ends
    batch = {}
    for key, column in columns.items():
        flat = _concatenate(column, small=key != names[0])
        if flat is None:
            return None
        batch[key] = np.full(filled.shape, fill[key], dtype=np.int64)
        batch[key][filled] = flat
    if "attention_mask" in fill and "attention_mask" not in batch:
        batch["attention_mask"] = filled.astype(np.int64)
    if return_tensors == "pt":
        batch = {key: torch.from_numpy(value) for key, value in batch.items()}
    return BatchEncoding(batch)


def _concatenate(rows: list[list], small: bool) -> np.ndarray | None:
    """The rows' ints end to end, exactly as torch.tensor would read them (ints and bools), or None
    for anything else. ``small``: try one byte per value first (masks and token types are 0/1)."""
    if small:
        try:
            return np.frombuffer(b"".join(map(bytes, rows)), dtype=np.uint8)
        except (TypeError, ValueError):  # not all ints, or not all in [0, 256)
            pass
    try:
        return np.frombuffer(b"".join([struct.pack(f"{len(row)}q", *row) for row in rows]), dtype=np.int64)
    except struct.error:  # not all int64s
        return None
