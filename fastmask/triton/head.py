"""Triton row kernel of the vocabulary head's fused cross-entropy (``linear_cross_entropy``).

The chunk loop is :func:`fastmask.reference.chunked_linear_cross_entropy`'s (the vendor GEMMs, in
the inputs' dtype, through torch); this module supplies its row function: one program per row of
a chunk's logits, in the accumulation dtype, in two passes over the vocabulary in tiles of BLOCK.
Pass 1 keeps a running max and rescaled sum of exponentials (the online logsumexp); pass 2, given
grad_scale, overwrites each logit with s * (softmax * (1 + 2 z_loss lse) - onehot). Rows labelled
``ignore_index`` skip pass 1 (their gradient row is zeros). Floats: within the tolerance table of
tests/test_head.py of the reference, not bit-exact (the reduction order differs).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from fastmask import reference

_BLOCK = 1024  # vocabulary entries per tile
_WARPS = 4


@triton.jit
def _cross_entropy_rows_kernel(
    logits_ptr, labels_ptr, grad_scale_ptr, losses_ptr, V, ignore_index, z_loss,
    GRADS: tl.constexpr, BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    x_ptr = logits_ptr + row * V
    lanes = tl.arange(0, BLOCK)
    label = tl.load(labels_ptr + row)
    ignored = label == ignore_index
    in_range = (label >= 0) & (label < V)
    nan = float("nan")
    if ignored:
        tl.store(losses_ptr + row, tl.zeros((), losses_ptr.dtype.element_ty))
        if GRADS:
            for start in range(0, V, BLOCK):
                offs = start + lanes
                tl.store(x_ptr + offs, tl.zeros((BLOCK,), x_ptr.dtype.element_ty), mask=offs < V)
    else:
        # Pass 1: the online logsumexp, lane by lane, then across lanes.
        running_max = tl.full((BLOCK,), float("-inf"), x_ptr.dtype.element_ty)
        running_sum = tl.zeros((BLOCK,), x_ptr.dtype.element_ty)
        for start in range(0, V, BLOCK):
            offs = start + lanes
            x = tl.load(x_ptr + offs, mask=offs < V, other=float("-inf"))
            new_max = tl.maximum(running_max, x)
            # Lanes that have seen only -inf subtract 0 instead (exp(-inf - -inf) would be NaN): their sum stays 0.
            shift = tl.where(new_max == float("-inf"), 0.0, new_max)
            running_sum = running_sum * tl.exp(running_max - shift) + tl.exp(x - shift)
            running_max = new_max
        row_max = tl.max(running_max, axis=0)
        lse = row_max + tl.log(tl.sum(running_sum * tl.exp(running_max - row_max), axis=0))
        target = tl.load(x_ptr + tl.where(in_range, label, 0))
        loss = lse - target + z_loss * lse * lse
        tl.store(losses_ptr + row, tl.where(in_range, loss, nan))
        if GRADS:
            scale = tl.load(grad_scale_ptr + row)
            factor = tl.where(in_range, scale * (1 + 2 * z_loss * lse), nan)
            for start in range(0, V, BLOCK):
                offs = start + lanes
                x = tl.load(x_ptr + offs, mask=offs < V, other=0.0)
                grad = tl.exp(x - lse) * factor - tl.where(offs == label, scale, 0.0)
                tl.store(x_ptr + offs, grad, mask=offs < V)


def _cross_entropy_rows(logits, labels, grad_scale, ignore_index: int, z_loss: float):
    """reference.cross_entropy_rows, the gradient written over `logits` (contiguous, (R, V))."""
    rows, vocab = logits.shape
    losses = torch.empty(rows, dtype=logits.dtype, device=logits.device)
    if rows == 0:
        return losses, logits if grad_scale is not None else None
    grads = grad_scale is not None
    _cross_entropy_rows_kernel[(rows,)](
        logits, labels, grad_scale if grads else losses, losses, vocab, int(ignore_index), float(z_loss),
        GRADS=grads, BLOCK=min(_BLOCK, triton.next_power_of_2(vocab)), num_warps=_WARPS,
    )
    return losses, logits if grads else None


def linear_cross_entropy(hidden, weight, bias, labels, grad_scale, ignore_index, z_loss, chunk_size):
    def rows(logits, chunk_labels, chunk_scale):
        return _cross_entropy_rows(logits.contiguous(), chunk_labels.contiguous(),
                                   None if chunk_scale is None else chunk_scale.contiguous(), ignore_index, z_loss)

    return reference.chunked_linear_cross_entropy(hidden, weight, bias, labels, grad_scale, chunk_size, rows,
                                                  hidden.dtype)
