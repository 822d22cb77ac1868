"""fastmask's op table and the one loop that registers it with ``torch.library``.

Every op is one :class:`OpSpec` in :data:`OPS`, the op's single record: its schema, its metadata
check (:mod:`fastmask.checks`), its output metadata (the fake), the Triton module implementing it
and, where a gradient flows, its autograd; and what the rest of the project reads about it: its
one-line summary (the README's Ops table, :func:`ops_table`), whether :mod:`fastmask.ops` has a
public wrapper of its name (``fastmask.__all__``), its example arguments and bad cases
(tests/test_op_table.py, tests/test_error_messages.py), its sanitizer cases
(scripts/exercise_cuda_kernels.py) and its benchmark family (bench/, ``fastmask bench``). Each op
is registered once per kernel backend, under a name that says which kernel runs::

    fastmask::<op>_cpp        the C++ CPU kernel (csrc/cpu/, registered by fastmask._C)
    fastmask::<op>_cuda       the CUDA kernel (csrc/cuda/, registered by fastmask._C in a CUDA build)
    fastmask::<op>_triton     the Triton kernel (fastmask/triton/<module>.py): CUDA tensors, or CPU
                              tensors under TRITON_INTERPRET=1
    fastmask::<op>_reference  fastmask.reference.<op>, the specification

All four share the schema, the fake and the autograd; the check runs in the fake (so
``torch.compile`` traces checked calls) and before the Triton and reference kernels (so direct
``torch.ops`` calls are checked; the C++ bindings check what their memory safety needs). The
public wrappers (:mod:`fastmask.ops`) convert user arguments, pick the backend and call :func:`call`.
Adding an op: docs/adding-an-op.md (tests/test_op_table.py enforces it).
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Callable

import torch

from fastmask import checks, counts, reference

KERNEL_BACKENDS = ("cpp", "cuda", "triton", "reference")


@dataclass(frozen=True)
class BadCase:
    """A bad value of one schema argument, which every entry point of the op (each backend's direct
    call, the fake) rejects with a TypeError or ValueError whose message names the argument."""

    argument: str  # the schema argument's name
    value: object  # the bad value, or a function of the example's value of that argument
    tail: str | None = None  # for a message carrying numbers, how the compiled kernels' message ends


@dataclass(frozen=True)
class OpSpec:
    name: str
    schema: str  # arguments and returns, without the name
    summary: str  # what it computes, in a few words (the README's Ops table)
    check: Callable[..., None]  # the metadata check of the schema arguments (fastmask.checks)
    fake: Callable[..., object]  # output metadata from the (checked) arguments
    triton_module: str  # fastmask.triton.<module> defines a function <name> with the reference's signature
    bench: str  # the benchmark family timing it: `fastmask bench <bench>` runs bench/bench_<bench, - as _>.py
    example: Callable[[torch.device], tuple]  # (device) -> valid schema arguments on that device
    bad: tuple[BadCase, ...]  # bad arguments every entry point rejects (tests/test_op_table.py)
    # (length, device, generator, ranked) -> schema argument tuples that run the op's kernels at every
    # launch shape of rows that long, on the device (scripts/exercise_cuda_kernels.py, compute-sanitizer);
    # ranked: whether the kernels exercised rank rows that long (the CUDA ones rank bounded lengths)
    sanitizer_cases: Callable[[int, torch.device, torch.Generator, bool], list[tuple]]
    # (backend) -> (setup_context, backward) for torch.library.register_autograd, or None
    autograd: Callable[[str], tuple[Callable, Callable]] | None = None
    wrapper: bool = True  # fastmask.ops has a public wrapper named after the op (exported by fastmask)
    float_rtol: float = 0.0  # the sanitizer run's tolerance for float outputs against the reference (0: bit-exact)
    always_ranks: bool = False  # every call ranks its rows (so no sanitizer case where ranking does not fit)


# The kernels write contiguous outputs whatever the inputs' strides, so the fakes do too (new_empty,
# not empty_like, which would copy a permuted input's strides).
def _masked_ids_fake(input_ids, *args):
    return input_ids.new_empty(input_ids.shape), input_ids.new_empty(input_ids.shape, dtype=torch.int64)


def _fully_explored_fake(input_ids, maskable, row_ids, seed, epoch, num_segments, *args):
    shape = (num_segments, *input_ids.shape)
    return input_ids.new_empty(shape), input_ids.new_empty(shape, dtype=torch.int64)


def _masked_positions_fake(labels, capacity):
    slots = labels.new_empty(labels.shape[0], capacity)
    return slots, torch.empty_like(slots), labels.new_empty(labels.shape[0])


def _proposal_fake(input_ids, *args):
    return (*_masked_ids_fake(input_ids), input_ids.new_empty(input_ids.shape, dtype=torch.float32))


def _linear_cross_entropy_fake(hidden, weight, bias, labels, grad_scale, *args):
    losses = hidden.new_empty(hidden.shape[0], dtype=reference.accumulation_dtype(hidden.dtype))
    if grad_scale is None:
        return losses, hidden.new_empty(0), weight.new_empty(0), weight.new_empty(0)
    return (losses, hidden.new_empty(hidden.shape), weight.new_empty(weight.shape),
            weight.new_empty(0) if bias is None else bias.new_empty(bias.shape))


# Gather and scatter are each other's adjoint, on the same backend (positions are unique per row).
def _gather_autograd(backend: str):
    scatter = op("scatter_masked", backend)

    def setup_context(ctx, inputs, output):
        hidden, index = inputs
        ctx.save_for_backward(index)
        ctx.length = hidden.shape[1]

    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return scatter(grad.contiguous(), index, ctx.length), None

    return setup_context, backward


def _scatter_autograd(backend: str):
    gather = op("gather_masked", backend)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[1])

    def backward(ctx, grad):
        (index,) = ctx.saved_tensors
        return gather(grad.contiguous(), index), None, None

    return setup_context, backward


# Example arguments: two rows of six tokens, BERT's defaults (p = 0.15, 80% [MASK], 10% random).
_T_SELECT = counts.probability_threshold("mlm_probability", 0.15)
_COUNT = counts.count_fraction(0.15)  # (count_num, count_den)
_REPLACE = counts.replacement_thresholds(0.8, 0.1)  # (mask_threshold, random_threshold)


def _example_rows(device) -> tuple:
    """(input_ids, maskable, row_ids, seed, epoch): word ids, all maskable, seed and epoch 0 on the device."""
    seed, epoch = (torch.tensor(0, dtype=torch.int64, device=device) for _ in range(2))
    return (torch.full((2, 6), 9, device=device), torch.ones(2, 6, dtype=torch.bool, device=device),
            torch.arange(2, device=device), seed, epoch)


def _maskable_mask_example(device):
    ids, ok, *_ = _example_rows(device)
    return ids, ok.long(), torch.tensor([1, 2], device=device)


def _mask_tokens_example(device):
    return (*_example_rows(device), _T_SELECT, *_COUNT, *_REPLACE, 4, 10, True, None)


def _word_rows(device) -> tuple:
    """(input_ids, maskable, word_start, row_ids, seed, epoch): the example rows, a word starting every other token."""
    ids, ok, rows, seed, epoch = _example_rows(device)
    return ids, ok, (torch.arange(6, device=device) % 2 == 0).expand(2, 6).contiguous(), rows, seed, epoch


def _fully_explored_mask_example(device):
    """Over words: the example exercises the optional argument too."""
    ids, ok, word_start, rows, seed, epoch = _word_rows(device)
    return ids, ok, rows, seed, epoch, 3, False, *_REPLACE, 4, 10, word_start


def _whole_word_mask_example(device):
    return (*_word_rows(device), _T_SELECT, *_COUNT, *_REPLACE, 4, 10, True, None)


_SPAN_THRESHOLDS = counts.span_length_thresholds(counts.span_length_distribution("geometric"))


def _span_mask_example(device):
    return (*_word_rows(device), *_COUNT, list(_SPAN_THRESHOLDS), True, *_REPLACE, 4, 10, None)


def _proposal_mask_example(device):
    ids, ok, rows, seed, epoch = _example_rows(device)
    return (ids, torch.zeros(2, 6, device=device), ok, rows, seed, epoch, *_COUNT, 0.1, 1.0, 2, False, *_REPLACE, 4, 10,
            None)


def _slots_example(device):
    """(hidden, index): hidden states of two rows of six tokens, width 4, and three slots per row."""
    return torch.zeros(2, 6, 4, device=device), torch.zeros(2, 3, dtype=torch.long, device=device)


def _scatter_masked_example(device):
    hidden, index = _slots_example(device)
    return hidden[:, :3], index, 6


def _linear_cross_entropy_example(device):
    """Five rows of width 4 over a vocabulary of 7, one row ignored; gradients scaled by 1, two rows a chunk."""
    labels = torch.tensor([0, 6, -100, 3, 1], device=device)
    return (torch.zeros(5, 4, device=device), torch.zeros(7, 4, device=device), torch.zeros(7, device=device),
            labels, torch.ones(5, device=device), -100, 0.0, 2)


# Sanitizer cases: small odd inputs, one row per row id (Philox keys beyond 32 bits, and negative ones).
_SAN_P, _SAN_VOCAB, _SAN_WIDTH, _SAN_SEED, _SAN_EPOCH = 0.15, 1000, 24, 1, 2
_SAN_ROW_IDS = (0, -5, 2**40)
_SAN_DTYPES = (torch.float32, torch.bfloat16)


def _san_mask_id() -> int:
    from fastmask.data import SPECIAL_TOKENS  # the tokenizers' specials; imported only when cases are built

    return SPECIAL_TOKENS.index("[MASK]")


def _san_rows(length, device, generator):
    """(ids, maskable, row_ids): word ids, about 85% of them maskable."""
    from fastmask.data import SPECIAL_TOKENS

    shape = (len(_SAN_ROW_IDS), length)
    ids = torch.randint(len(SPECIAL_TOKENS), _SAN_VOCAB, shape, generator=generator).to(device)
    maskable = (torch.rand(shape, generator=generator) < 0.85).to(device)
    return ids, maskable, torch.tensor(_SAN_ROW_IDS, device=device)


def _san_philox_key(device):
    """The Philox key (seed, epoch): the seed on the device (read by the kernel), the epoch on the CPU (by value)."""
    return torch.tensor(_SAN_SEED, device=device), torch.tensor(_SAN_EPOCH)


def _san_scalars():
    """The masking scalars: replacement thresholds, [MASK]'s id, the vocabulary size."""
    return (*_REPLACE, _san_mask_id(), _SAN_VOCAB)


def _maskable_mask_cases(length, device, generator, ranked):
    ids, maskable, _ = _san_rows(length, device, generator)
    return [(ids, maskable.long(), torch.tensor([7, 9], device=device))]


def _mask_tokens_cases(length, device, generator, ranked):
    ids, maskable, row_ids = _san_rows(length, device, generator)
    # The exact count reads its rate from memory (a schedule's), the Bernoulli mask its int arguments.
    return [(ids, maskable, row_ids, *_san_philox_key(device), _T_SELECT, *_COUNT, *_san_scalars(), exact,
             counts.mask_rate(0.3, device) if exact else None)
            for exact in (False, True) if not exact or ranked]


def _proposal_mask_cases(length, device, generator, ranked):
    ids, maskable, row_ids = _san_rows(length, device, generator)
    scores = torch.randn(ids.shape, generator=generator).to(device)
    return [(ids, scores, maskable, row_ids, *_san_philox_key(device), *_COUNT, 0.1, 1.0, sampling, sequence_weights,
             *_san_scalars(), counts.mask_rate(0.3, device) if sequence_weights else None)
            for sampling in (0, 1, 2) if sampling == 1 or ranked  # 1: Poisson, any length
            for sequence_weights in (False, True)]


def _san_word_rows(length, device, generator):
    """(ids, maskable, word_start, row_ids): the sanitizer rows, about 70% of positions starting a word."""
    ids, maskable, row_ids = _san_rows(length, device, generator)
    return ids, maskable, (torch.rand(ids.shape, generator=generator) < 0.7).to(device), row_ids


def _fully_explored_mask_cases(length, device, generator, ranked):
    ids, maskable, word_start, row_ids = _san_word_rows(length, device, generator)
    return [(ids, maskable, row_ids, *_san_philox_key(device), 7, contiguous, *_san_scalars(), words)
            for contiguous in (False, True) if contiguous or ranked
            for words in (None, word_start)]


def _whole_word_mask_cases(length, device, generator, ranked):
    ids, maskable, word_start, row_ids = _san_word_rows(length, device, generator)
    return [(ids, maskable, word_start, row_ids, *_san_philox_key(device), _T_SELECT, *_COUNT, *_san_scalars(), exact,
             counts.mask_rate(0.3, device) if exact else None)
            for exact in (False, True) if not exact or ranked]


def _span_mask_cases(length, device, generator, ranked):
    ids, maskable, word_start, row_ids = _san_word_rows(length, device, generator)
    ngram = counts.span_length_thresholds(counts.span_length_distribution("ngram"))
    return [(ids, maskable, word_start, row_ids, *_san_philox_key(device), *_COUNT, list(thresholds), per_span,
             *_san_scalars(), None if per_span else counts.mask_rate(0.3, device))
            for thresholds, per_span in ((_SPAN_THRESHOLDS, True), (ngram, False)) if ranked]


def _masked_positions_cases(length, device, generator, ranked):
    """The labels of an exact-count mask (the reference's) and the capacity that holds them."""
    from fastmask import ops

    ids, maskable, row_ids = _san_rows(length, device, generator)
    labels = ops.mask_tokens(ids, maskable, _san_mask_id(), _SAN_VOCAB, _SAN_P, exact_count=True, row_ids=row_ids,
                             backend="reference").labels
    return [(labels, counts.gather_capacity(length, _SAN_P))]


def _san_slot_index(length, device, generator):
    from fastmask import ops

    ((labels, capacity),) = _masked_positions_cases(length, device, generator, True)
    return ops.masked_positions(labels, capacity, backend="reference").index


def _gather_masked_cases(length, device, generator, ranked):
    index = _san_slot_index(length, device, generator)
    return [(torch.randn(len(_SAN_ROW_IDS), length, _SAN_WIDTH, generator=generator).to(device, dtype), index)
            for dtype in _SAN_DTYPES]


def _scatter_masked_cases(length, device, generator, ranked):
    index = _san_slot_index(length, device, generator)
    return [(torch.randn(*index.shape, _SAN_WIDTH, generator=generator).to(device, dtype), index, length)
            for dtype in _SAN_DTYPES]


def _linear_cross_entropy_cases(length, device, generator, ranked):
    """`length` rows over a vocabulary of 1000, a fifth ignored and one out of range, in chunks that
    divide neither; with and without gradients and bias."""
    labels = torch.randint(0, _SAN_VOCAB, (length,), generator=generator)
    labels[torch.rand(length, generator=generator) < 0.2] = reference.IGNORE_INDEX
    labels[:1] = _SAN_VOCAB + 1
    cases = []
    for dtype in _SAN_DTYPES:
        hidden = torch.randn(length, _SAN_WIDTH, generator=generator).to(device, dtype)
        weight = torch.randn(_SAN_VOCAB, _SAN_WIDTH, generator=generator).to(device, dtype)
        bias = torch.randn(_SAN_VOCAB, generator=generator).to(device, dtype)
        scale = torch.rand(length, generator=generator).to(device)
        cases += [(hidden, weight, bias, labels.to(device), scale, reference.IGNORE_INDEX, 1e-4, 7),
                  (hidden, weight, None, labels.to(device), None, reference.IGNORE_INDEX, 0.0, max(1, length // 3 + 1))]
    return cases


_MASKING_SCALARS = "int mask_threshold, int random_threshold, int mask_token_id, int vocab_size"

_tensor = torch.Tensor  # bad values derived from the example's: _tensor.float is "the example's, as float32"

OPS: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec(
        "maskable_mask",
        "(Tensor input_ids, Tensor? attention_mask, Tensor special_ids) -> Tensor",
        summary="which tokens may be masked",
        check=checks.maskable_mask, fake=lambda input_ids, *args: input_ids.new_empty(input_ids.shape, dtype=torch.bool),
        triton_module="masking", bench="masking", example=_maskable_mask_example,
        bad=(BadCase("input_ids", _tensor.float), BadCase("attention_mask", lambda a: a[:1], "got [1, 6]"),
             BadCase("attention_mask", _tensor.float), BadCase("special_ids", lambda a: a[None], "got 2-D")),
        sanitizer_cases=_maskable_mask_cases,
    ),
    OpSpec(
        "mask_tokens",
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int select_threshold, "
        f"int count_num, int count_den, {_MASKING_SCALARS}, bool exact, Tensor? rate=None) -> (Tensor, Tensor)",
        summary="Bernoulli or exact-count masking with 80/10/10",
        check=checks.mask_tokens, fake=_masked_ids_fake, triton_module="masking", bench="masking",
        example=_mask_tokens_example,
        bad=(BadCase("input_ids", lambda a: a[0], "got 1-D"), BadCase("maskable", lambda a: a[:, :2], "got [2, 2]"),
             BadCase("maskable", _tensor.long), BadCase("row_ids", lambda a: a[:1], "must have shape (2,), got [1]"),
             BadCase("row_ids", _tensor.int), BadCase("seed", _tensor.int),
             BadCase("epoch", lambda a: a[None], "got shape [1]"),
             BadCase("select_threshold", reference.PROB_ONE + 1, "got 16777217"),
             BadCase("count_num", _COUNT[1] + 1, f"got {_COUNT[1] + 1}"), BadCase("count_den", 0, "got 0"),
             BadCase("mask_threshold", -1, "got -1"), BadCase("random_threshold", reference.PROB_ONE, "got 16777216"),
             BadCase("mask_token_id", 10, "got 10"), BadCase("vocab_size", 0, "got 0"),
             BadCase("rate", torch.zeros(3)), BadCase("rate", torch.zeros(2, dtype=torch.int64), "got shape [2]")),
        sanitizer_cases=_mask_tokens_cases,
    ),
    OpSpec(
        "fully_explored_mask",
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int num_segments, "
        f"bool contiguous, {_MASKING_SCALARS}, Tensor? word_start=None) -> (Tensor, Tensor)",
        summary="K disjoint masked views per row (of tokens, or of whole words)",
        check=checks.fully_explored_mask, fake=_fully_explored_fake, triton_module="masking", bench="fully-explored",
        example=_fully_explored_mask_example,
        bad=(BadCase("seed", lambda a: a.to("meta")),  # neither the inputs' device nor the CPU
             BadCase("num_segments", 0, "got 0"), BadCase("vocab_size", 2**31, "got 2147483648"),
             BadCase("word_start", lambda a: a[0], "got 1-D"), BadCase("word_start", _tensor.long)),
        sanitizer_cases=_fully_explored_mask_cases,
    ),
    OpSpec(
        "whole_word_mask",
        "(Tensor input_ids, Tensor maskable, Tensor word_start, Tensor row_ids, Tensor seed, Tensor epoch, "
        f"int select_threshold, int count_num, int count_den, {_MASKING_SCALARS}, bool exact, Tensor? rate=None) "
        "-> (Tensor, Tensor)",
        summary="whole words, each with probability p or under an exact budget",
        check=checks.whole_word_mask, fake=_masked_ids_fake, triton_module="words", bench="words",
        example=_whole_word_mask_example,
        bad=(BadCase("word_start", _tensor.long), BadCase("word_start", lambda a: a[:, :2], "got [2, 2]"),
             BadCase("select_threshold", reference.PROB_ONE + 1, "got 16777217")),
        sanitizer_cases=_whole_word_mask_cases,
    ),
    OpSpec(
        "span_mask",
        "(Tensor input_ids, Tensor maskable, Tensor word_start, Tensor row_ids, Tensor seed, Tensor epoch, "
        f"int count_num, int count_den, int[] length_thresholds, bool per_span, {_MASKING_SCALARS}, Tensor? rate=None) "
        "-> (Tensor, Tensor)",
        summary="spans of whole words under an exact budget",
        check=checks.span_mask, fake=_masked_ids_fake, triton_module="words", bench="words",
        example=_span_mask_example,
        bad=(BadCase("word_start", lambda a: a[0], "got 1-D"), BadCase("count_den", 0, "got 0"),
             BadCase("length_thresholds", lambda a: a[::-1]),
             BadCase("length_thresholds", [reference.PROB_ONE + 1], "got 16777217")),
        sanitizer_cases=_span_mask_cases, always_ranks=True,
    ),
    OpSpec(
        "masked_positions",
        "(Tensor labels, int capacity) -> (Tensor, Tensor, Tensor)",
        summary="labelled positions compacted into C slots",
        check=checks.masked_positions, fake=_masked_positions_fake, triton_module="gather", bench="gather",
        example=lambda device: (torch.full((2, 6), -100, device=device), 3),
        bad=(BadCase("labels", lambda a: a[0], "got 1-D"), BadCase("labels", _tensor.int),
             BadCase("capacity", 0, "got 0")),
        sanitizer_cases=_masked_positions_cases,
    ),
    OpSpec(
        "gather_masked",
        "(Tensor hidden, Tensor index) -> Tensor",
        summary="hidden states of the slots (backward: `scatter_masked`)",
        check=checks.gather_masked,
        fake=lambda hidden, index: hidden.new_empty(hidden.shape[0], index.shape[1], hidden.shape[2]),
        triton_module="gather", bench="gather", example=_slots_example,
        bad=(BadCase("hidden", lambda a: a[0], "got 2-D"), BadCase("hidden", _tensor.long),
             BadCase("index", lambda a: a[0], "got 1-D"),
             BadCase("index", lambda a: a[:1], "index has batch 1 but hidden has batch 2"),
             BadCase("index", _tensor.int)),
        sanitizer_cases=_gather_masked_cases, autograd=_gather_autograd,
    ),
    OpSpec(
        "scatter_masked",
        "(Tensor values, Tensor index, int length) -> Tensor",
        summary="gather's backward: slots written back at their positions",
        check=checks.scatter_masked,
        fake=lambda values, index, length: values.new_empty(values.shape[0], length, values.shape[2]),
        triton_module="gather", bench="gather", example=_scatter_masked_example,
        bad=(BadCase("index", lambda a: a[:, :2], "index has capacity 2 but values has 3 slots per row"),
             BadCase("length", -1, "got -1")),
        sanitizer_cases=_scatter_masked_cases, autograd=_scatter_autograd, wrapper=False,
    ),
    OpSpec(
        "linear_cross_entropy",
        "(Tensor hidden, Tensor weight, Tensor? bias, Tensor labels, Tensor? grad_scale, int ignore_index, "
        "float z_loss, int chunk_size) -> (Tensor, Tensor, Tensor, Tensor)",
        summary="the head's cross-entropy and gradients, one chunk of logits at a time",
        check=checks.linear_cross_entropy, fake=_linear_cross_entropy_fake, triton_module="head", bench="head",
        example=_linear_cross_entropy_example,
        bad=(BadCase("hidden", lambda a: a[0], "got 1-D"), BadCase("hidden", _tensor.long),
             BadCase("weight", lambda a: a[:, :3], "got width 3"), BadCase("weight", _tensor.double),
             BadCase("bias", lambda a: a[:6], "got 6"), BadCase("labels", _tensor.int),
             BadCase("labels", lambda a: a[:4], "got 4"), BadCase("grad_scale", _tensor.double),
             BadCase("z_loss", -0.5, "got -0.5"), BadCase("chunk_size", 0, "got 0")),
        sanitizer_cases=_linear_cross_entropy_cases,
        float_rtol=3e-2,  # the losses and gradients: bf16's GEMMs (the reference's are float32), tests/test_head.py
    ),
    OpSpec(
        "proposal_mask",
        "(Tensor input_ids, Tensor scores, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int count_num, "
        "int count_den, float uniform_mix, float temperature, int sampling, bool sequence_weights, "
        f"{_MASKING_SCALARS}, Tensor? rate=None) -> (Tensor, Tensor, Tensor)",
        summary="MAPNet sampling from a proposal, with weights",
        check=checks.proposal_mask, fake=_proposal_fake, triton_module="proposal", bench="proposal",
        example=_proposal_mask_example,
        bad=(BadCase("epoch", _tensor.float), BadCase("scores", lambda a: a[:1], "got [1, 6]"),
             BadCase("scores", _tensor.long), BadCase("count_den", 0, "got 0"),
             BadCase("uniform_mix", 1.5, "got 1.5"), BadCase("temperature", 0.0, "got 0"),
             BadCase("sampling", 3, "got 3")),
        sanitizer_cases=_proposal_mask_cases, float_rtol=1e-5,  # the float weights
    ),
)}


def op(name: str, backend: str) -> torch._ops.OpOverload:
    """The registered op that runs `backend`'s kernel of op `name`."""
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"backend must be one of {KERNEL_BACKENDS}, got {backend!r}")
    return getattr(getattr(torch.ops.fastmask, f"{name}_{backend}"), "default")


def argument_names(name: str) -> list[str]:
    """The schema argument names of op `name`, in order."""
    return [a.name for a in torch._C.parse_schema(f"{name}{OPS[name].schema}").arguments]


def bad_calls(device: torch.device) -> list[tuple[str, int, BadCase, tuple]]:
    """(op, argument position, case, arguments) for every bad case of the table, in table order: the
    op's example arguments on `device` with the case's argument replaced by its bad value."""
    calls = []
    for spec in OPS.values():
        names = argument_names(spec.name)
        for case in spec.bad:
            args = list(spec.example(device))
            position = names.index(case.argument)
            args[position] = case.value(args[position]) if callable(case.value) else case.value
            calls.append((spec.name, position, case, tuple(args)))
    return calls


def bench_script(family: str) -> str:
    """The benchmark script of a family, relative to bench/ (`fastmask bench fully-explored`: bench_fully_explored.py)."""
    return f"bench_{family.replace('-', '_')}.py"


def ops_table() -> str:
    """The README's Ops table (Markdown), one row per op of the table (scripts/readme_ops_table.py)."""
    rows = ["| op | public function | what it computes | benchmark |", "|---|---|---|---|"]
    for spec in OPS.values():
        public = f"`fastmask.{spec.name}`" if spec.wrapper else "-"
        rows.append(f"| `{spec.name}` | {public} | {spec.summary} | `{bench_script(spec.bench)}` |")
    return "\n".join(rows) + "\n"


def call(name: str, backend: str, *args):
    """Checks the schema arguments of op `name`, then runs `backend`'s kernel."""
    OPS[name].check(*args)
    return op(name, backend)(*args)


def _checked(spec: OpSpec, fn: Callable) -> Callable:
    def run(*args):
        spec.check(*args)
        return fn(*args)

    return run


def _triton_kernel(spec: OpSpec) -> Callable:
    def run(*args):
        # Imported on first use: Triton is optional, and importing it is slow.
        module = importlib.import_module(f"fastmask.triton.{spec.triton_module}")
        # Triton launches on the current device and its stream: make that the inputs' device.
        device = args[0].device
        with torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext():
            return getattr(module, spec.name)(*args)

    return run


def _reference_kernel(spec: OpSpec) -> Callable:
    fn = getattr(reference, spec.name)

    def run(*args):
        # An op's outputs must not alias its inputs; the reference may return views (e.g. K = 1).
        out = fn(*args)
        # Contiguous copies, as the kernels' outputs (and the fakes) are.
        if isinstance(out, tuple):
            return tuple(t.clone(memory_format=torch.contiguous_format) for t in out)
        return out.clone(memory_format=torch.contiguous_format)

    return run


_lib = torch.library.Library("fastmask", "DEF")
for _spec in OPS.values():
    for _backend in KERNEL_BACKENDS:
        _qualname = f"fastmask::{_spec.name}_{_backend}"
        _lib.define(f"{_spec.name}_{_backend}{_spec.schema}")
        torch.library.register_fake(_qualname, _checked(_spec, _spec.fake), lib=_lib)
        # The cpp and cuda kernels are registered by fastmask._C (TORCH_LIBRARY_IMPL in csrc/).
        _kernel = {"triton": _triton_kernel, "reference": _reference_kernel}.get(_backend)
        if _kernel is not None:
            torch.library.impl(_qualname, ("cpu", "cuda"), _checked(_spec, _kernel(_spec)), lib=_lib)
for _spec in OPS.values():  # after the loop above: a backward calls the adjoint op
    if _spec.autograd is not None:
        for _backend in KERNEL_BACKENDS:
            _setup_context, _backward = _spec.autograd(_backend)
            torch.library.register_autograd(f"fastmask::{_spec.name}_{_backend}", _backward,
                                            setup_context=_setup_context, lib=_lib)
