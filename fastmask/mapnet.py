"""MAPNet: a small mask proposal network trained jointly with the MLM (Chen, arXiv 2008.05333).

The network scores every position of the *uncorrupted* sequence; masks are drawn from the
proposal q (:func:`fastmask.proposal_mask`) and the MLM loss is importance-weighted, so the
gradient estimate stays unbiased while its variance drops when q follows the per-position
gradient norm. MAPNet learns q with a REINFORCE objective whose reward is the detached
per-token MLM loss (the stand-in for the gradient norm):

    mapnet_loss = -sum over sampled i of log q_i (l_i - b),  b = the batch mean of l_i,

averaged over the sampled tokens and added to the MLM loss with a weight lambda.
"""

from __future__ import annotations

import torch
from torch import nn

from fastmask.reference import IGNORE_INDEX


class MaskProposalNet(nn.Module):
    """A small Transformer encoder over the main model's token embedding, one score per position.

    The embedding is shared, not owned: it is read (detached) but neither registered as a
    parameter of this module nor trained by the proposal objective, so an optimizer over both
    models sees it once and the REINFORCE gradient never reaches the MLM's embedding. Its width
    is projected to ``hidden_size``. The scoring head starts at zero, so an untrained net
    proposes uniformly.
    """

    def __init__(
        self,
        embedding: nn.Embedding,
        num_layers: int = 2,
        hidden_size: int = 128,
        num_heads: int = 2,
        max_len: int = 512,
        dropout: float = 0.1,
    ):
        super().__init__()
        if not isinstance(embedding, nn.Embedding):
            raise TypeError(f"embedding must be an nn.Embedding, got {type(embedding).__name__}")
        if num_layers < 1 or hidden_size < 1 or num_heads < 1 or hidden_size % num_heads:
            raise ValueError(
                f"need num_layers >= 1 and hidden_size divisible by num_heads, got {num_layers}, {hidden_size}, {num_heads}"
            )
        self._shared = (embedding,)  # a tuple: not registered as a submodule (see the class docstring)
        self.max_len = max_len
        self.project = nn.Linear(embedding.embedding_dim, hidden_size)
        self.position = nn.Embedding(max_len, hidden_size)
        layer = nn.TransformerEncoderLayer(
            hidden_size, num_heads, 4 * hidden_size, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B, L) float32 from the uncorrupted ids."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be 2-D (batch, length), got shape {tuple(input_ids.shape)}")
        length = input_ids.shape[1]
        if length > self.max_len:
            raise ValueError(f"input_ids has length {length}, above this MaskProposalNet's max_len {self.max_len}")
        (embedding,) = self._shared
        h = self.project(embedding(input_ids).detach()) + self.position(torch.arange(length, device=input_ids.device))
        padding = None
        if attention_mask is not None:
            padding = attention_mask == 0
            padding = padding & ~padding.all(1, keepdim=True)  # an all-padding row would give NaN
        h = self.encoder(h, src_key_padding_mask=padding)
        return self.head(self.norm(h)).squeeze(-1).float()


def proposal_log_q(
    scores: torch.Tensor, maskable: torch.Tensor, uniform_mix: float = 0.1, temperature: float = 1.0
) -> torch.Tensor:
    """log q (B, L), differentiable in the scores: the proposal that proposal_mask samples from.

    -inf where not maskable.
    """
    logits = torch.where(maskable, scores.float() / temperature, torch.full_like(scores, float("-inf"), dtype=torch.float32))
    n = maskable.sum(1, keepdim=True)
    softmax = torch.where(n > 0, torch.softmax(torch.where(n > 0, logits, 0.0), dim=1), 0.0)
    q = (1 - uniform_mix) * softmax + uniform_mix / n.clamp(min=1)
    return torch.where(maskable, torch.log(q), float("-inf"))


def mapnet_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    token_losses: torch.Tensor,
    maskable: torch.Tensor,
    uniform_mix: float = 0.1,
    temperature: float = 1.0,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """REINFORCE objective of the proposal: -mean over sampled i of log q_i (l_i - b).

    `labels` (B, L) mark the sampled positions (!= -100); `token_losses` (B, L) are the detached
    per-token MLM losses there; b is their batch mean. `positions` (bool, B, L), if given,
    restricts the objective to those sampled positions (e.g. the ones replaced by [MASK]).
    `uniform_mix` and `temperature` must be those used by proposal_mask.
    """
    if scores.shape != labels.shape or token_losses.shape != labels.shape or maskable.shape != labels.shape:
        raise ValueError(
            "scores, labels, token_losses and maskable must have one shape, got "
            f"{tuple(scores.shape)}, {tuple(labels.shape)}, {tuple(token_losses.shape)}, {tuple(maskable.shape)}"
        )
    sampled = labels != IGNORE_INDEX
    if positions is not None:
        sampled = sampled & positions
    count = sampled.sum().clamp(min=1)
    reward = token_losses.detach().float()
    baseline = (reward * sampled).sum() / count
    log_q = proposal_log_q(scores, maskable, uniform_mix, temperature)
    advantage = torch.where(sampled, reward - baseline, 0.0)
    return -(torch.where(sampled, log_q, 0.0) * advantage).sum() / count

