"""MAPNet: a small mask proposal network trained jointly with the MLM (Chen, arXiv 2008.05333).

The network scores every position of the *uncorrupted* sequence; masks are drawn from the
proposal q (:func:`fastmask.proposal_mask`) and the MLM loss is importance-weighted (token weight
w_i = (k / n) / pi_i), so the gradient estimate stays unbiased. Its variance is smallest when the
inclusion probabilities follow the per-token gradient norms ||g_i|| (the paper's own analysis), so
the proposal needs a signal of those norms and an objective with its optimum there.

The signal: G_i = ||dl_i / dh_i||, the norm of token i's loss gradient at the encoder output,
which is what reaches :func:`fastmask.gather_masked`'s backward for the gathered slot (divided by
the slot's loss weight). It comes free with the MLM backward and tracks ||g_i|| closely (see
docs/experiments.md). :class:`fastmask.MaskingStrategy` reads it there and feeds the proposal's
gradient back in the same backward pass.

The objectives (:func:`mapnet_loss`, ``objective=``), x_i = score_i / temperature, S the sampled
positions of a row, v_i their importance weights (1 without them):

* ``"regression"`` (the default of :class:`fastmask.MaskingConfig`, so of ``MaskingStrategy``,
  ``fastmask pretrain`` and ``apply_fastmask``): a weighted least-squares fit of the scores to log G, centred
  per row (so any common scale of G cancels)::

      e_i = (x_i - log G_i) - sum_{j in S} v_j (x_j - log G_j) / sum_{j in S} v_j
      loss = sum_rows sum_{i in S} v_i e_i^2 / sum v

  Its fixed point is softmax(x) proportional to G: q proportional to the signal (mixed with the
  uniform floor), and it cannot collapse, since overshooting the signal raises the loss.
* ``"variance"``: REINFORCE on the estimator's second moment, a_i = w_i^2 G_i^2::

      loss = -sum_{i in S} (a_i - b) / b * log q_i / |S|,  b = the batch mean of a_i

  (log pi_i = log k + log q_i where pi_i < 1: the same gradient; capped positions are few).
* ``"loss"``: the paper author's REINFORCE toward high-loss tokens (ChanLiang/MAP-BERT), with the
  detached token loss l_i as reward::

      loss = -sum_{i in S} log q_i (l_i - b) / |S|,  b = the batch mean of l_i

  It has no interior optimum: q sharpens until the uniform floor holds it, and the importance
  weights grow (kept as the faithful mode).

The objective is added to the MLM loss with a weight lambda. :func:`mapnet_loss` and
:func:`mapnet_score_gradient` called without ``objective=`` compute ``"loss"`` (``mapnet_loss``'s default since
its first release, which the REINFORCE tests pin; its closed-form gradient agrees); the strategy
layer always passes its configured objective.
"""

from __future__ import annotations

import torch
from torch import nn

from fastmask.reference import IGNORE_INDEX


PROPOSAL_HEADS = 2  # the proposal net's attention heads, wherever fastmask builds one (its width must divide by it)


def proposal_width(hidden_size: int) -> int:
    """The proposal net's default width beside a model ``hidden_size`` wide (``fastmask pretrain``
    and :func:`fastmask.hf.apply_fastmask`, which give the net ``PROPOSAL_HEADS`` = 2 heads): a
    quarter of it, as the author's MAP-BERT, rounded down to an even number, and at least 2."""
    return max(2, hidden_size // 8 * 2)


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
        num_heads: int = PROPOSAL_HEADS,
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


OBJECTIVES = ("regression", "variance", "loss")


def mapnet_loss(
    scores: torch.Tensor,
    labels: torch.Tensor,
    reward: torch.Tensor,
    maskable: torch.Tensor,
    uniform_mix: float = 0.1,
    temperature: float = 1.0,
    positions: torch.Tensor | None = None,
    objective: str = "loss",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """The proposal net's objective (see the module docstring for the formulas), differentiable in `scores`.

    `labels` (B, L) mark the sampled positions (!= -100). `reward` (B, L), detached, is read at
    those positions: the per-token MLM loss l_i for ``objective="loss"``, the gradient-norm signal
    G_i > 0 for ``"regression"`` and ``"variance"``. `weights` (B, L) are the importance weights
    of the sampled positions (proposal_mask's token weights; None: 1). `positions` (bool, B, L),
    if given, restricts the objective to those sampled positions. `uniform_mix` and
    `temperature` must be those used by proposal_mask.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    shapes = [scores.shape, labels.shape, reward.shape, maskable.shape] + ([weights.shape] if weights is not None else [])
    if any(shape != labels.shape for shape in shapes):
        raise ValueError("scores, labels, reward, maskable (and weights) must have one shape, got "
                         + ", ".join(str(tuple(shape)) for shape in shapes))
    sampled = _sampled(labels, maskable, positions)
    reward = reward.detach().float()
    if objective == "regression":
        v = _regression_weights(sampled, weights)
        return (v * _regression_residual(scores.float() / temperature, reward, v) ** 2).sum() / v.sum().clamp(min=1e-30)
    advantage = _advantage(objective, reward, sampled, weights)
    log_q = proposal_log_q(scores, maskable, uniform_mix, temperature)
    return -(torch.where(sampled, log_q, 0.0) * advantage).sum() / sampled.sum().clamp(min=1)


def mapnet_score_gradient(
    scores: torch.Tensor,
    labels: torch.Tensor,
    reward: torch.Tensor,
    maskable: torch.Tensor,
    uniform_mix: float = 0.1,
    temperature: float = 1.0,
    objective: str = "loss",
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the gradient of :func:`mapnet_loss` with respect to `scores`, its value), in closed form.

    For a backward pass that feeds the proposal from the signal it has just computed
    (:class:`fastmask.MaskingStrategy`), where a nested autograd call would not trace.
    """
    sampled = _sampled(labels, maskable, None)
    reward = reward.detach().float()
    x = scores.detach().float() / temperature
    if objective == "regression":
        v = _regression_weights(sampled, weights)
        total = v.sum().clamp(min=1e-30)
        e = _regression_residual(x, reward, v)
        return 2 * v * e / (temperature * total), (v * e * e).sum() / total
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    # d log q_i / d x_j = (1 - eps) p_i (delta_ij - p_j) / q_i, p = softmax(x) over the maskable positions
    advantage = _advantage(objective, reward, sampled, weights)
    log_q = proposal_log_q(x, maskable, uniform_mix, 1.0)
    count = sampled.sum().clamp(min=1)
    p = torch.where(maskable, torch.softmax(torch.where(maskable, x, float("-inf")), dim=1), 0.0).nan_to_num(0.0)
    beta = torch.where(sampled, advantage * p / log_q.exp(), 0.0)
    grad = -(1 - uniform_mix) * (beta - p * beta.sum(1, keepdim=True)) / (temperature * count)
    return grad, -(torch.where(sampled, log_q, 0.0) * advantage).sum() / count


def _sampled(labels, maskable, positions):
    sampled = (labels != IGNORE_INDEX) & maskable
    return sampled if positions is None else sampled & positions


def _regression_weights(sampled, weights):
    v = sampled.float() if weights is None else weights.detach().float()
    return torch.where(sampled, v, 0.0)


def _regression_residual(x, signal, v):
    """e_i: x_i - log G_i, centred by its v-weighted mean over the row (0 where v = 0)."""
    d = torch.where(v > 0, x - torch.log(signal.clamp(min=1e-30)), 0.0)
    mean = (v * d).sum(1, keepdim=True) / v.sum(1, keepdim=True).clamp(min=1e-30)
    return torch.where(v > 0, d - mean, 0.0)


def _advantage(objective, reward, sampled, weights):
    """The REINFORCE advantage per sampled token (0 elsewhere)."""
    count = sampled.sum().clamp(min=1)
    if objective == "variance":
        w = 1.0 if weights is None else weights.detach().float()
        moment = torch.where(sampled, (w * reward) ** 2, 0.0)
        baseline = moment.sum() / count
        return torch.where(sampled, (moment - baseline) / baseline.clamp(min=1e-30), 0.0)
    baseline = (reward * sampled).sum() / count
    return torch.where(sampled, reward - baseline, 0.0)
