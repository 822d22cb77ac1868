"""fastmask's op table and the one loop that registers it with ``torch.library``.

Every op is one :class:`OpSpec` in :data:`OPS`: its schema, its metadata check
(:mod:`fastmask.checks`), its output metadata (the fake), the Triton module implementing it and,
where a gradient flows, its autograd. Each op is registered once per kernel backend, under a name
that says which kernel runs::

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

from fastmask import checks, reference

KERNEL_BACKENDS = ("cpp", "cuda", "triton", "reference")


@dataclass(frozen=True)
class OpSpec:
    name: str
    schema: str  # arguments and returns, without the name
    check: Callable[..., None]  # the metadata check of the schema arguments (fastmask.checks)
    fake: Callable[..., object]  # output metadata from the (checked) arguments
    triton_module: str  # fastmask.triton.<module> defines a function <name> with the reference's signature
    bench: str  # bench/bench_<bench>.py times it (and lists it in its OPS)
    # (backend) -> (setup_context, backward) for torch.library.register_autograd, or None
    autograd: Callable[[str], tuple[Callable, Callable]] | None = None


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


_MASKING_SCALARS = "int mask_threshold, int random_threshold, int mask_token_id, int vocab_size"

OPS: dict[str, OpSpec] = {spec.name: spec for spec in (
    OpSpec(
        "maskable_mask",
        "(Tensor input_ids, Tensor? attention_mask, Tensor special_ids) -> Tensor",
        checks.maskable_mask, lambda input_ids, *args: input_ids.new_empty(input_ids.shape, dtype=torch.bool),
        triton_module="masking", bench="masking",
    ),
    OpSpec(
        "mask_tokens",
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int select_threshold, "
        f"int count_num, int count_den, {_MASKING_SCALARS}, bool exact) -> (Tensor, Tensor)",
        checks.mask_tokens, _masked_ids_fake, triton_module="masking", bench="masking",
    ),
    OpSpec(
        "fully_explored_mask",
        "(Tensor input_ids, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int num_segments, "
        f"bool contiguous, {_MASKING_SCALARS}) -> (Tensor, Tensor)",
        checks.fully_explored_mask, _fully_explored_fake, triton_module="masking", bench="fully_explored",
    ),
    OpSpec(
        "masked_positions",
        "(Tensor labels, int capacity) -> (Tensor, Tensor, Tensor)",
        checks.masked_positions, _masked_positions_fake, triton_module="gather", bench="gather",
    ),
    OpSpec(
        "gather_masked",
        "(Tensor hidden, Tensor index) -> Tensor",
        checks.gather_masked, lambda hidden, index: hidden.new_empty(hidden.shape[0], index.shape[1], hidden.shape[2]),
        triton_module="gather", bench="gather", autograd=_gather_autograd,
    ),
    OpSpec(
        "scatter_masked",
        "(Tensor values, Tensor index, int length) -> Tensor",
        checks.scatter_masked, lambda values, index, length: values.new_empty(values.shape[0], length, values.shape[2]),
        triton_module="gather", bench="gather", autograd=_scatter_autograd,
    ),
    OpSpec(
        "proposal_mask",
        "(Tensor input_ids, Tensor scores, Tensor maskable, Tensor row_ids, Tensor seed, Tensor epoch, int count_num, "
        "int count_den, float uniform_mix, float temperature, int sampling, bool sequence_weights, "
        f"{_MASKING_SCALARS}) -> (Tensor, Tensor, Tensor)",
        checks.proposal_mask, _proposal_fake, triton_module="proposal", bench="proposal",
    ),
)}


def op(name: str, backend: str) -> torch._ops.OpOverload:
    """The registered op that runs `backend`'s kernel of op `name`."""
    if backend not in KERNEL_BACKENDS:
        raise ValueError(f"backend must be one of {KERNEL_BACKENDS}, got {backend!r}")
    return getattr(getattr(torch.ops.fastmask, f"{name}_{backend}"), "default")


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
