"""The sparse MLM loss: the vocabulary head runs on the gathered masked tokens only.

About 85% of an MLM batch carries no label, yet the usual head projects every token onto the
vocabulary. Here the labelled positions are compacted into a fixed number of slots per row
(static shapes, no host sync), the head runs on those rows, and the cross-entropy is averaged
over the labelled tokens exactly as the dense loss is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fastmask.ops import MaskedPositions, gather_masked, linear_cross_entropy_and_losses, masked_positions
from fastmask.reference import IGNORE_INDEX


@dataclass(frozen=True)
class VocabularyHead:
    """A vocabulary head split where the fused loss needs it: ``transform`` (..., H) -> (..., H)
    (BERT's dense + activation + LayerNorm), then ``decoder``, the ``nn.Linear`` onto the
    vocabulary (its weight usually tied to the input embedding). Calling it runs both: the logits."""

    transform: Callable[[torch.Tensor], torch.Tensor]
    decoder: nn.Linear

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))


def vocabulary_head(head) -> VocabularyHead | None:
    """`head` split into transform and decoder where its structure is known — a VocabularyHead, an
    ``nn.Linear`` (no transform), BERT's ``cls`` (``BertOnlyMLMHead``) or its ``predictions``
    (``BertLMPredictionHead``) — else None."""
    if isinstance(head, VocabularyHead):
        return head
    if isinstance(head, nn.Linear):
        return VocabularyHead(nn.Identity(), head)
    head = getattr(head, "predictions", head)
    transform, decoder = getattr(head, "transform", None), getattr(head, "decoder", None)
    if isinstance(transform, nn.Module) and isinstance(decoder, nn.Linear):
        return VocabularyHead(transform, decoder)
    return None


def sparse_mlm_loss(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: Callable[[torch.Tensor], torch.Tensor],
    capacity: int | None = None,
    weights: torch.Tensor | None = None,
    positions: MaskedPositions | None = None,
    backend: str = "auto",
    fused: bool = False,
) -> torch.Tensor:
    """Cross-entropy of `head` over the labelled tokens of `hidden` (B, L, H), averaged over them.

    `head` maps (B, C, H) to logits (B, C, V): any module, e.g. the ``cls`` head of a Hugging
    Face ``BertForMaskedLM``. `weights` (B, L) multiplies each token's loss before the average
    (Σ w_i ℓ_i / number of labelled tokens; weights of 1 give the plain mean). Pass `positions`
    from :func:`fastmask.masked_positions` to reuse them (and read their overflow count at log
    time); otherwise they are computed from `labels` with `capacity` (None: exact, but syncs).
    A batch with no labelled token gives a loss of 0.

    ``fused=True`` runs the head's transform, then its decoder and the cross-entropy fused
    (:func:`fastmask.linear_cross_entropy`: no logits held, gradients computed with the loss);
    `head` must then be one :func:`vocabulary_head` can split (or a :class:`VocabularyHead`).
    """
    if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3:
        raise ValueError(f"hidden must be a 3-D tensor (batch, length, width), got {getattr(hidden, 'shape', hidden)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != hidden.shape[:2]:
        raise ValueError(
            f"labels must have shape {tuple(hidden.shape[:2])} (the batch and length of hidden), "
            f"got {tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__}"
        )
    if weights is not None and (not isinstance(weights, torch.Tensor) or weights.shape != labels.shape
                                or not weights.is_floating_point()):
        raise ValueError(f"weights must be a floating-point tensor of shape {tuple(labels.shape)}")
    split = vocabulary_head(head) if fused else None
    if fused and split is None:
        raise ValueError(f"fused=True needs a head split into transform and decoder (fastmask.sparse.VocabularyHead, "
                         f"an nn.Linear, or BERT's cls); got {type(head).__name__}")
    if positions is None:
        positions = masked_positions(labels, capacity, backend=backend)
    if fused:
        gathered = gather_masked(hidden, positions.index, backend=backend)
        return fused_slot_loss(gathered, split, positions, weights, backend=backend)[0]
    return labelled_mean(sparse_token_losses(hidden, head, positions, backend=backend), positions, weights)


def fused_slot_loss(gathered: torch.Tensor, head: VocabularyHead, positions: MaskedPositions,
                    weights: torch.Tensor | None = None, num_items: torch.Tensor | int | None = None,
                    backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`labelled_mean` of the slots' cross-entropy, with the decoder and the loss fused
    (:func:`fastmask.linear_cross_entropy`), from the gathered hidden states (B, C, H); and the
    slots' losses (B, C), detached (0 in unused slots)."""
    hidden = head.transform(gathered)
    slot_weights = None if weights is None else weights.gather(1, positions.index.clamp(min=0)).reshape(-1)
    decoder = head.decoder
    loss, slot_losses = linear_cross_entropy_and_losses(
        hidden.reshape(-1, hidden.shape[-1]), decoder.weight, positions.labels.reshape(-1), decoder.bias, slot_weights,
        reduction="mean" if num_items is None else "sum", backend=backend)
    if num_items is not None:
        loss = loss / num_items
    return loss, slot_losses.view(positions.labels.shape)


def labelled_mean(slot_losses: torch.Tensor, positions: MaskedPositions, weights: torch.Tensor | None = None,
                  num_items: torch.Tensor | int | None = None) -> torch.Tensor:
    """Σ w_i ℓ_i over the gathered slots (B, C), divided by `num_items` (a token count over an
    accumulation window) or else by the labelled tokens (at least 1). `weights` (B, L) are read at
    the slots' positions; None counts every token once."""
    if weights is not None:
        slot_losses = slot_losses * weights.gather(1, positions.index.clamp(min=0))
    if num_items is None:
        num_items = (positions.labels != IGNORE_INDEX).sum().clamp(min=1)
    return slot_losses.sum() / num_items


def sparse_token_losses(
    hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor], positions: MaskedPositions,
    backend: str = "auto",
) -> torch.Tensor:
    """Cross-entropy (B, C) of each gathered slot (0 in unused slots): the per-token losses."""
    return slot_cross_entropy(head(gather_masked(hidden, positions.index, backend=backend)), positions)


def slot_cross_entropy(logits: torch.Tensor, positions: MaskedPositions) -> torch.Tensor:
    """Cross-entropy (B, C) of the gathered slots' logits (B, C, V) against their labels (0 in unused slots)."""
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), positions.labels.reshape(-1), ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    return loss.view(positions.labels.shape)


def losses_by_position(slot_losses: torch.Tensor, positions: MaskedPositions, length: int) -> torch.Tensor:
    """Per-slot values (B, C) placed back at their positions (B, L), 0 elsewhere (no sync)."""
    batch = slot_losses.shape[0]
    index = torch.where(positions.index >= 0, positions.index, length)  # column L collects unused slots
    out = slot_losses.new_zeros(batch, length + 1)
    return out.scatter_(1, index, slot_losses)[:, :length]
