"""One metadata check per op, on the op's schema arguments: the op contract.

Each check reads dtypes, shapes, devices and scalar arguments only (never tensor values: that
would sync with the device) and raises TypeError or ValueError naming the op and the argument.
The same function guards every entry point (see :mod:`fastmask.library`): the public wrappers,
the fake kernels that ``torch.compile`` traces, and direct ``torch.ops.fastmask.*`` calls of the
Triton and reference backends. The C++ and CUDA bindings repeat the checks their memory safety
depends on (csrc/binding/), with the same exception types.

Plain Python conditions: they cost microseconds per call in eager mode, and with symbolic sizes
in a fake they become guards. The message is built only on failure.
"""

from __future__ import annotations

import torch

from fastmask import reference

ID_DTYPES = (torch.int32, torch.int64)
ATTENTION_DTYPES = (torch.bool, torch.int32, torch.int64)
SCORE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
HIDDEN_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
INT31 = 2**31  # vocabularies, segment counts, capacities and count denominators stay below this
SEED_LIMIT = 2**63  # seeds given as ints: the non-negative int64 values
EPOCH_LIMIT = 2**32  # epochs given as ints: one 32-bit Philox counter word


def _require(ok, error: type, message) -> None:
    """Raises error(message()) unless ok."""
    if not ok:
        raise error(message())


def _describe(value) -> str:
    if isinstance(value, torch.Tensor):
        return f"{value.dtype} tensor of shape {tuple(value.shape)} on {value.device}"
    return f"{type(value).__name__} {value!r}"


def _tensor(op: str, name: str, t, dtypes, dim: int) -> None:
    _require(isinstance(t, torch.Tensor), TypeError, lambda: f"{op}: {name} must be a torch.Tensor, got {_describe(t)}")
    _require(t.dtype in dtypes, TypeError,
             lambda: f"{op}: {name} must have dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    _require(t.dim() == dim, ValueError, lambda: f"{op}: {name} must be {dim}-D, got shape {tuple(t.shape)}")


def _same_device(op: str, name: str, t: torch.Tensor, other: torch.Tensor, other_name: str) -> None:
    _require(t.device == other.device, ValueError,
             lambda: f"{op}: {name} must be on the device of {other_name} ({other.device}), got {t.device}")


def _companion(op: str, name: str, t, input_ids: torch.Tensor, dtypes) -> None:
    """A (B, L) tensor that travels with input_ids."""
    _tensor(op, name, t, dtypes, 2)
    _require(t.shape == input_ids.shape, ValueError,
             lambda: f"{op}: {name} must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(t.shape)}")
    _same_device(op, name, t, input_ids, "input_ids")


def integer(op: str, name: str, value, low: int, high: int) -> None:
    """An int (or SymInt) in [low, high)."""
    _require(isinstance(value, (int, torch.SymInt)) and not isinstance(value, bool), TypeError,
             lambda: f"{op}: {name} must be an int, got {_describe(value)}")
    _require(low <= value < high, ValueError, lambda: f"{op}: {name} must be in [{low}, {high}), got {value}")


def _real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ids(op: str, input_ids) -> None:
    _tensor(op, "input_ids", input_ids, ID_DTYPES, 2)
    _require(input_ids.shape[1] <= INT31, ValueError, lambda: f"{op}: input_ids rows must be at most 2**31 long")


def _row_ids(op: str, row_ids, input_ids: torch.Tensor) -> None:
    _tensor(op, "row_ids", row_ids, (torch.int64,), 1)
    _require(row_ids.shape[0] == input_ids.shape[0], ValueError,
             lambda: f"{op}: row_ids must have shape ({input_ids.shape[0]},), got {tuple(row_ids.shape)}")
    _same_device(op, "row_ids", row_ids, input_ids, "input_ids")


def _philox_key(op: str, seed, epoch, input_ids: torch.Tensor) -> None:
    """The Philox key, seed and epoch (the mask counter): 0-dim int64 tensors, on the device of
    input_ids (read by the kernel when it runs: graph-safe) or on the CPU (read at launch, like an
    int)."""
    for name, t in (("seed", seed), ("epoch", epoch)):
        _tensor(op, name, t, (torch.int64,), 0)
        _require(t.device == input_ids.device or t.device.type == "cpu", ValueError,
                 lambda: f"{op}: {name} must be on the device of input_ids ({input_ids.device}) or the CPU, "
                         f"got {t.device}")


def _rate(op: str, rate, input_ids: torch.Tensor) -> None:
    """The masking rate, when given: an int64 (3,) tensor (select_threshold, count_num, count_den)
    overriding the ints, on the device of input_ids (read by the kernel: a schedule writes it in
    place) or on the CPU (read at launch). Its values are the kernels' to clamp: reading them here
    would be a host sync."""
    if rate is None:
        return
    _tensor(op, "rate", rate, (torch.int64,), 1)
    _require(rate.shape[0] == 3, ValueError,
             lambda: f"{op}: rate must have shape (3,) (select_threshold, count_num, count_den), got {tuple(rate.shape)}")
    _require(rate.device == input_ids.device or rate.device.type == "cpu", ValueError,
             lambda: f"{op}: rate must be on the device of input_ids ({input_ids.device}) or the CPU, got {rate.device}")


def _corruption(op: str, mask_threshold, random_threshold, mask_token_id, vocab_size) -> None:
    integer(op, "mask_threshold", mask_threshold, 0, reference.PROB_ONE + 1)
    integer(op, "random_threshold", random_threshold, 0, reference.PROB_ONE - mask_threshold + 1)
    integer(op, "vocab_size", vocab_size, 1, INT31)
    integer(op, "mask_token_id", mask_token_id, 0, vocab_size)


def _count_fraction(op: str, count_num, count_den) -> None:
    integer(op, "count_den", count_den, 1, INT31)
    integer(op, "count_num", count_num, 0, count_den + 1)


def maskable_mask(input_ids, attention_mask, special_ids) -> None:
    op = "maskable_mask"
    _ids(op, input_ids)
    if attention_mask is not None:
        _companion(op, "attention_mask", attention_mask, input_ids, ATTENTION_DTYPES)
    _tensor(op, "special_ids", special_ids, (torch.int64,), 1)
    _same_device(op, "special_ids", special_ids, input_ids, "input_ids")


def mask_tokens(input_ids, maskable, row_ids, seed, epoch, select_threshold, count_num, count_den, mask_threshold,
                random_threshold, mask_token_id, vocab_size, exact, rate=None) -> None:
    op = "mask_tokens"
    _ids(op, input_ids)
    _companion(op, "maskable", maskable, input_ids, (torch.bool,))
    _row_ids(op, row_ids, input_ids)
    _philox_key(op, seed, epoch, input_ids)
    integer(op, "select_threshold", select_threshold, 0, reference.PROB_ONE + 1)
    _count_fraction(op, count_num, count_den)
    _rate(op, rate, input_ids)
    _corruption(op, mask_threshold, random_threshold, mask_token_id, vocab_size)


def fully_explored_mask(input_ids, maskable, row_ids, seed, epoch, num_segments, contiguous, mask_threshold,
                        random_threshold, mask_token_id, vocab_size, word_start=None) -> None:
    op = "fully_explored_mask"
    _ids(op, input_ids)
    _companion(op, "maskable", maskable, input_ids, (torch.bool,))
    if word_start is not None:
        _companion(op, "word_start", word_start, input_ids, (torch.bool,))
    _row_ids(op, row_ids, input_ids)
    _philox_key(op, seed, epoch, input_ids)
    integer(op, "num_segments", num_segments, 1, INT31)
    _corruption(op, mask_threshold, random_threshold, mask_token_id, vocab_size)


def masked_positions(labels, capacity) -> None:
    op = "masked_positions"
    _tensor(op, "labels", labels, (torch.int64,), 2)
    integer(op, "capacity", capacity, 1, INT31)


def _index(op: str, index, data: torch.Tensor, data_name: str) -> None:
    _tensor(op, "index", index, (torch.int64,), 2)
    _require(index.shape[0] == data.shape[0], ValueError,
             lambda: f"{op}: index must have the batch size of {data_name} ({data.shape[0]}), got {index.shape[0]}")
    _same_device(op, "index", index, data, data_name)


def gather_masked(hidden, index) -> None:
    op = "gather_masked"
    _tensor(op, "hidden", hidden, HIDDEN_DTYPES, 3)
    _index(op, index, hidden, "hidden")


def scatter_masked(values, index, length) -> None:
    op = "scatter_masked"
    _tensor(op, "values", values, HIDDEN_DTYPES, 3)
    _index(op, index, values, "values")
    _require(index.shape[1] == values.shape[1], ValueError,
             lambda: f"{op}: index must have one slot per row of values ({values.shape[1]}), got {index.shape[1]}")
    integer(op, "length", length, 0, INT31)


def proposal_mask(input_ids, scores, maskable, row_ids, seed, epoch, count_num, count_den, uniform_mix, temperature,
                  sampling, sequence_weights, mask_threshold, random_threshold, mask_token_id, vocab_size,
                  rate=None) -> None:
    op = "proposal_mask"
    _ids(op, input_ids)
    _companion(op, "scores", scores, input_ids, SCORE_DTYPES)
    _companion(op, "maskable", maskable, input_ids, (torch.bool,))
    _row_ids(op, row_ids, input_ids)
    _philox_key(op, seed, epoch, input_ids)
    _count_fraction(op, count_num, count_den)
    _rate(op, rate, input_ids)
    _require(sampling in (reference.SAMPLING_TOPK, reference.SAMPLING_POISSON, reference.SAMPLING_SYSTEMATIC)
             and not isinstance(sampling, bool), ValueError,
             lambda: f"{op}: sampling must be 0 (top-k), 1 (Poisson) or 2 (systematic), got {sampling!r}")
    _require(_real(uniform_mix) and 0.0 <= uniform_mix <= 1.0, ValueError,
             lambda: f"{op}: uniform_mix must be in [0, 1], got {uniform_mix!r}")
    _require(_real(temperature) and 0.0 < temperature < float("inf"), ValueError,
             lambda: f"{op}: temperature must be a finite number > 0, got {temperature!r}")
    _corruption(op, mask_threshold, random_threshold, mask_token_id, vocab_size)


def whole_word_mask(input_ids, maskable, word_start, row_ids, seed, epoch, select_threshold, count_num, count_den,
                    mask_threshold, random_threshold, mask_token_id, vocab_size, exact, rate=None) -> None:
    op = "whole_word_mask"
    _ids(op, input_ids)
    _companion(op, "maskable", maskable, input_ids, (torch.bool,))
    _companion(op, "word_start", word_start, input_ids, (torch.bool,))
    _row_ids(op, row_ids, input_ids)
    _philox_key(op, seed, epoch, input_ids)
    integer(op, "select_threshold", select_threshold, 0, reference.PROB_ONE + 1)
    _count_fraction(op, count_num, count_den)
    _rate(op, rate, input_ids)
    _corruption(op, mask_threshold, random_threshold, mask_token_id, vocab_size)


def span_mask(input_ids, maskable, word_start, row_ids, seed, epoch, count_num, count_den, length_thresholds,
              per_span, mask_threshold, random_threshold, mask_token_id, vocab_size, rate=None) -> None:
    op = "span_mask"
    _ids(op, input_ids)
    _companion(op, "maskable", maskable, input_ids, (torch.bool,))
    _companion(op, "word_start", word_start, input_ids, (torch.bool,))
    _row_ids(op, row_ids, input_ids)
    _philox_key(op, seed, epoch, input_ids)
    _count_fraction(op, count_num, count_den)
    _rate(op, rate, input_ids)
    thresholds = list(length_thresholds) if isinstance(length_thresholds, (list, tuple)) else None
    _require(thresholds is not None and len(thresholds) < reference.MAX_SPAN_WORDS, ValueError,
             lambda: f"{op}: length_thresholds must be a list of fewer than {reference.MAX_SPAN_WORDS} ints, "
                     f"got {_describe(length_thresholds)}")
    for t in thresholds:
        integer(op, "length_thresholds", t, 0, reference.PROB_ONE + 1)
    _require(all(a <= b for a, b in zip(thresholds, thresholds[1:])), ValueError,
             lambda: f"{op}: length_thresholds must be non-decreasing, got {thresholds}")
    _corruption(op, mask_threshold, random_threshold, mask_token_id, vocab_size)


def row_weights(op: str, weights, labels: torch.Tensor, hidden: torch.Tensor) -> None:
    """A wrapper's per-row importance weights: a float tensor of labels' shape, on hidden's device."""
    _require(isinstance(weights, torch.Tensor) and weights.is_floating_point() and weights.shape == labels.shape,
             ValueError, lambda: f"{op}: weights must be a float tensor of shape {tuple(labels.shape)}, "
                                 f"got {_describe(weights)}")
    _same_device(op, "weights", weights, hidden, "hidden")


def linear_cross_entropy(hidden, weight, bias, labels, grad_scale, ignore_index, z_loss, chunk_size) -> None:
    op = "linear_cross_entropy"
    _tensor(op, "hidden", hidden, HIDDEN_DTYPES, 2)
    _tensor(op, "weight", weight, HIDDEN_DTYPES, 2)
    _require(weight.dtype == hidden.dtype, TypeError,
             lambda: f"{op}: weight must have the dtype of hidden ({hidden.dtype}), got {weight.dtype}")
    _require(weight.shape[1] == hidden.shape[1], ValueError,
             lambda: f"{op}: weight must be (vocabulary, {hidden.shape[1]}) for hidden of width {hidden.shape[1]}, "
                     f"got width {weight.shape[1]}")
    _require(0 < weight.shape[0] < INT31, ValueError,
             lambda: f"{op}: weight must have between 1 and {INT31 - 1} rows (the vocabulary), got {weight.shape[0]}")
    _same_device(op, "weight", weight, hidden, "hidden")
    if bias is not None:
        _tensor(op, "bias", bias, (hidden.dtype,), 1)
        _require(bias.shape[0] == weight.shape[0], ValueError,
                 lambda: f"{op}: bias must have {weight.shape[0]} values (one per row of weight), got {bias.shape[0]}")
        _same_device(op, "bias", bias, hidden, "hidden")
    _tensor(op, "labels", labels, (torch.int64,), 1)
    _require(labels.shape[0] == hidden.shape[0], ValueError,
             lambda: f"{op}: labels must have {hidden.shape[0]} values (one per row of hidden), got {labels.shape[0]}")
    _same_device(op, "labels", labels, hidden, "hidden")
    if grad_scale is not None:
        _tensor(op, "grad_scale", grad_scale, (reference.accumulation_dtype(hidden.dtype),), 1)
        _require(grad_scale.shape[0] == hidden.shape[0], ValueError,
                 lambda: f"{op}: grad_scale must have {hidden.shape[0]} values (one per row of hidden), "
                         f"got {grad_scale.shape[0]}")
        _same_device(op, "grad_scale", grad_scale, hidden, "hidden")
    integer(op, "ignore_index", ignore_index, -2**63, 2**63)
    _require(_real(z_loss) and 0 <= z_loss < float("inf"), ValueError,
             lambda: f"{op}: z_loss must be a finite float >= 0, got {z_loss!r}")
    integer(op, "chunk_size", chunk_size, 1, INT31)
