"""A masking strategy applied to a batch: the one home that ``fastmask pretrain`` and
:func:`fastmask.hf.apply_fastmask` share.

A :class:`MaskingStrategy` turns a batch of uncorrupted ids into an MLM batch on the ids' device
(corrupted ids, labels, the labelled positions compacted into static slots, MAPNet's importance
weights), then turns the encoder's hidden states into the loss with the vocabulary head run on
those slots only. It never reads a value back from the device: labelled tokens dropped for
capacity (Bernoulli masks have no exact capacity) are counted on the device and read at log time.

The caller keys the randomness: Philox by (seed, epoch, row id, position), where ``epoch`` is the
mask counter and ``row_ids`` the row key. ``fastmask pretrain`` passes global sample ids and the
data epoch; the Hugging Face integration the rows' places in the batch (with the rank) and a
device-side call counter, so data-parallel ranks and accumulation micro-steps never share a mask.
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from fastmask import counts, words
from fastmask.mapnet import MaskProposalNet, mapnet_loss, mapnet_score_gradient, proposal_log_q
from fastmask.masking_config import PER_ROW_MASKS, STRATEGIES, WORD_MASKS, MaskingConfig
from fastmask.ops import (
    MaskedPositions,
    gather_masked,
    fully_explored_mask,
    mask_tokens,
    maskable_mask,
    masked_positions,
    proposal_mask,
    span_mask,
    whole_word_mask,
)
from fastmask.reference import IGNORE_INDEX
from fastmask.sparse import fused_slot_loss, labelled_mean, losses_by_position, slot_cross_entropy, vocabulary_head

VIEW_ROW_SHIFT = 48  # masks_per_row: view v of row r is keyed as Philox row r + (v << 48)
EVAL_SEED = 1234  # evaluation masks: plain random, exact count, this seed (comparable across strategies)


class MaskedStep(NamedTuple):
    """One batch after masking.

    ``input_ids``/``labels`` are (views * B, L): fully-explored masking stacks its K views
    view-major (row k * B + b is view k of row b; :meth:`repeat` expands per-row inputs such as
    the attention mask to match), every other strategy has one view. ``positions`` gathers the
    labelled tokens into static slots; ``weights`` (views * B, L) are MAPNet's importance weights
    (None otherwise); ``scores`` (B, L) the proposal net's differentiable scores (None otherwise).
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    positions: MaskedPositions
    views: int
    maskable: torch.Tensor
    weights: torch.Tensor | None = None
    scores: torch.Tensor | None = None

    def repeat(self, per_row: torch.Tensor | None) -> torch.Tensor | None:
        """A (B, ...) input of the encoder laid out like ``input_ids`` (one copy per view)."""
        if per_row is None or self.views == 1:
            return per_row
        return per_row.repeat(self.views, *([1] * (per_row.dim() - 1)))


class StepLosses(NamedTuple):
    """The MLM loss, MAPNet's objective for the proposal net (0 without one) and the slots' logits
    (B, C, V): None where the fused loss ran (no logits were held)."""

    loss: torch.Tensor
    objective: torch.Tensor
    logits: torch.Tensor | None


class MaskingStrategy(nn.Module):
    """How a batch is masked and its MLM loss computed, on the batch's device, without host syncs.

    Built from a :class:`fastmask.MaskingConfig` (``MaskingStrategy(config, mask_token_id=...,
    vocab_size=...)``) or from its fields as keywords (``MaskingStrategy("random", mask_token_id=...,
    vocab_size=..., mlm_probability=0.2)``); the old keywords ``strategy``, ``objective`` and
    ``sampling`` warn and still work (``fastmask.masking_config.RENAMED``). ``self.config`` holds
    the settings (``num_segments`` filled in); ``seed`` keys the masks with the caller's row ids.

    masking: ``"random"`` (exactly :func:`fastmask.masked_count` tokens per row), ``"bernoulli"``
    (each maskable token with probability ``mlm_probability``, as Hugging Face's collator) — both
    with ``masks_per_row`` independent masks of every row in the step (default 1; K of them cost
    what fully explored's K views cost: the compute-fair comparison),
    ``"fully-explored"`` (the row's maskable tokens split into ``num_segments`` disjoint views, all
    of them in the step: the loss averages over every view's labels), ``"mapnet"`` (positions
    drawn from ``proposal``'s scores by ``mapnet_sampling`` — systematic by default: exactly k positions,
    exact inclusion probabilities — with importance weights; ``losses`` also returns the proposal
    net's ``mapnet_objective`` (:func:`fastmask.mapnet_loss`)), ``"whole-word"`` (whole words in a
    random order within the row's budget of :func:`fastmask.masked_count` tokens:
    :func:`fastmask.whole_word_mask` with ``exact_count=True``) or ``"span"`` (spans of whole words
    within that budget, :func:`fastmask.span_mask`, its lengths from ``span_lengths``, ``span_p``,
    ``max_span``, ``max_ngram``, its 80/10/10 action by ``replace_per``). ``special_ids`` are never
    masked, nor are unattended positions.

    The two word strategies need ``word_start_table``, bool (V,): True where a token id begins a
    word (:func:`fastmask.word_start_table` of the tokenizer; :meth:`from_tokenizer` builds it);
    each call looks its batch's ids up in it on the device. Ids past its end (an embedding padded
    beyond the tokenizer) count as word starts. Neither offers Bernoulli selection of words: a
    word of several tokens breaks the token-level binomial bound of the Bernoulli capacity, while
    the exact budget keeps the capacity :func:`fastmask.gather_capacity` (L, p) exact.

    MAPNet's ``"regression"`` and ``"variance"`` objectives learn from the gradient-norm signal
    G_i = ||dl_i / dh_i||, read in the MLM backward where the gathered slots' gradient passes
    (:class:`_ProposalFeedback`): the objective returned by ``losses`` is then a 0-valued scalar
    whose gradient (to the proposal's scores) is computed in that same backward pass. Add it to
    the loss with its weight, as for ``"loss"``.
    """

    def __init__(
        self,
        masking: str | MaskingConfig | None = None,
        *,
        mask_token_id: int,
        vocab_size: int,
        special_ids: Sequence[int] = (),
        seed: int = 0,
        proposal: MaskProposalNet | None = None,
        word_start_table: torch.Tensor | None = None,
        **settings,
    ):
        super().__init__()
        config, spelling = MaskingConfig.from_kwargs(settings, masking, owner="MaskingStrategy")
        config.validate(spelling)
        if (config.masking == "mapnet") != (proposal is not None):
            raise ValueError("masking='mapnet' needs a proposal net (and only it takes one)")
        if config.masking in WORD_MASKS and word_start_table is None:
            raise ValueError(f"masking={config.masking!r} needs word_start_table=, where each token id begins a word "
                             "(fastmask.word_start_table(tokenizer))")
        if word_start_table is not None:
            if word_start_table.dtype != torch.bool or word_start_table.dim() != 1:
                raise ValueError(f"word_start_table must be a bool (V,) tensor, got {word_start_table.dtype} of "
                                 f"shape {tuple(word_start_table.shape)}")
            missing = max(0, vocab_size - word_start_table.shape[0])  # ids past the tokenizer: words of their own
            word_start_table = torch.nn.functional.pad(word_start_table, (0, missing), value=True)
        self.config = config = config.with_defaults()  # num_segments: round(1 / mlm_probability) if None
        self.mlm_probability, self.uniform_mix = float(config.mlm_probability), float(config.uniform_mix)
        self.masks_per_row = config.masks_per_row
        self.strategy, self.num_segments, self.partition = config.masking, config.num_segments, config.partition
        self.weighting, self.sampling, self.objective = config.weighting, config.mapnet_sampling, config.mapnet_objective
        self.replace = dict(mask_replace_prob=config.mask_replace_prob, random_replace_prob=config.random_replace_prob)
        self.span = dict(lengths=config.span_lengths, span_p=config.span_p, max_span=config.max_span,
                         max_ngram=config.max_ngram, replace_per=config.replace_per)
        self.mask_token_id, self.vocab_size, self.seed = mask_token_id, vocab_size, seed
        self.fused_loss = config.fused_loss
        self.proposal = proposal
        self.register_buffer("special_ids", torch.tensor(list(special_ids), dtype=torch.int64), persistent=False)
        self.register_buffer("word_start_table", word_start_table, persistent=False)
        # Labelled tokens beyond the gather capacity, dropped from the loss, counted on the device.
        # Not a buffer: DDP would broadcast it every step. A tensor from the start, moved with the
        # module (see _apply): a compiled forward sees one type and device, so it never recompiles.
        self.dropped_labels = torch.zeros((), dtype=torch.int64)
        # MAPNet's health, summed over calls on the device (see losses): objective, the smallest and
        # largest importance weight, the largest q_i over the uniform 1/n; and the number of calls.
        self.proposal_sums = torch.zeros(5)
        # A rate schedule: the rate as the masking kernels read it from memory, rewritten in place by
        # set_mlm_probability (nothing recompiled or re-captured); the gather capacity is sized for
        # the schedule's highest rate. Not a buffer, as dropped_labels.
        self.max_probability = config.max_probability
        self.mask_rate = counts.mask_rate(config.start_probability) if config.scheduled else None

    @classmethod
    def from_tokenizer(cls, config: MaskingConfig, tokenizer, *, vocab_size: int | None = None, seed: int = 0,
                       proposal: MaskProposalNet | None = None) -> "MaskingStrategy":
        """The strategy of ``config`` on a tokenizer's tokens: its [MASK] id, its special tokens (never
        masked) and, for the word strategies, its word starts (:func:`fastmask.word_start_table`);
        random replacements drawn from ``vocab_size`` ids (default: the tokenizer's size)."""
        table = words.word_start_table(tokenizer) if config.masking in WORD_MASKS else None
        return cls(config, mask_token_id=tokenizer.mask_token_id, vocab_size=len(tokenizer) if vocab_size is None else vocab_size,
                   special_ids=sorted(set(tokenizer.all_special_ids)), seed=seed, proposal=proposal,
                   word_start_table=table)

    def derived(self, config: MaskingConfig, *, seed: int, proposal: MaskProposalNet | None = None) -> "MaskingStrategy":
        """Another strategy on this one's tokens (mask id, vocabulary, special ids, word starts): ``config``,
        ``seed``, ``proposal``."""
        return MaskingStrategy(config, mask_token_id=self.mask_token_id, vocab_size=self.vocab_size,
                               special_ids=self.special_ids.tolist(), seed=seed, proposal=proposal,
                               word_start_table=self.word_start_table)

    def extra_repr(self) -> str:
        return f"{self.strategy!r}, mlm_probability={self.mlm_probability}"

    def _apply(self, fn, *args, **kwargs):
        # .to(device) and friends, as for a buffer (the sums stay float32 whatever the model's dtype)
        self.dropped_labels = fn(self.dropped_labels)
        self.proposal_sums = fn(self.proposal_sums).float()
        if self.mask_rate is not None:
            self.mask_rate = fn(self.mask_rate).long()
        return super()._apply(fn, *args, **kwargs)

    def set_mlm_probability(self, p: float) -> None:
        """The masking rate of the next steps, under a schedule (``mlm_probability_schedule``): written
        into the rate the kernels read, in place, without a host sync; at most the schedule's highest
        rate (what the gather capacity holds)."""
        if self.mask_rate is None:
            raise ValueError("set_mlm_probability needs a strategy built with a rate schedule "
                             "(mlm_probability_schedule and an mlm_probability_start other than mlm_probability)")
        if not 0 < p <= self.max_probability:
            raise ValueError(f"the masking rate must be in (0, {self.max_probability}] (the schedule's highest rate, "
                             f"which the gather capacity is sized for), got {p!r}")
        counts.set_mask_rate(self.mask_rate, p)

    def take_proposal_stats(self) -> dict:
        """MAPNet's means since the last call: objective, weight_min, weight_max, max_q_over_uniform
        (empty without MAPNet or calls). Reads the device (with MAPNet): log time only."""
        if self.proposal is None:
            return {}
        sums = self.proposal_sums.tolist()
        self.proposal_sums = torch.zeros_like(self.proposal_sums)
        if not sums[-1]:
            return {}
        names = ("mapnet_objective", "weight_min", "weight_max", "max_q_over_uniform")
        return {name: round(total / sums[-1], 5) for name, total in zip(names, sums)}

    def take_dropped_labels(self) -> int:
        """Labelled tokens dropped for capacity since the last call (a host sync: log time only)."""
        dropped = int(self.dropped_labels)
        self.dropped_labels = torch.zeros_like(self.dropped_labels)
        return dropped

    def capacity(self, length: int) -> int:
        """Slots per row (and view) for the labelled tokens: exact but for Bernoulli masks (a 1e-9 bound);
        the word strategies' budget is exact-count's."""
        if self.strategy == "fully-explored":
            return counts.gather_capacity(length, num_segments=self.num_segments)
        return counts.gather_capacity(length, self.max_probability, exact_count=self.strategy != "bernoulli")

    def maskable(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return maskable_mask(input_ids, attention_mask, self.special_ids)

    def _gathered(self, labels: torch.Tensor, capacity: int) -> MaskedPositions:
        positions = masked_positions(labels, capacity)
        self.dropped_labels = self.dropped_labels + (positions.count - capacity).clamp(min=0).sum()
        return positions

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                row_ids: torch.Tensor, epoch: torch.Tensor | int) -> MaskedStep:
        """Masks uncorrupted ids (B, L) with this strategy; `row_ids` (B,), the row key, and `epoch`,
        the mask counter, key the masks (with the strategy's seed: the Philox key)."""
        maskable = self.maskable(input_ids, attention_mask)
        op_args = dict(mask_token_id=self.mask_token_id, vocab_size=self.vocab_size, seed=self.seed, row_ids=row_ids,
                       epoch=epoch, **self.replace)  # what every masking op takes: tokens, Philox key, 80/10/10
        rate = dict(mlm_probability=self.mlm_probability, rate=self.mask_rate)  # the rate kernels read, if scheduled
        views, weights, scores = 1, None, None
        if self.strategy in PER_ROW_MASKS:
            views = self.masks_per_row
            if views > 1:  # view v of row r is keyed as row r + v 2^48 (sample ids stay below 2^48)
                view = torch.arange(views, device=row_ids.device).repeat_interleave(row_ids.shape[0])
                op_args["row_ids"] = row_ids.repeat(views) + (view << VIEW_ROW_SHIFT)
            masked = mask_tokens(input_ids.repeat(views, 1), maskable.repeat(views, 1),
                                 exact_count=self.strategy == "random", **rate, **op_args)
        elif self.strategy == "fully-explored":
            masked = fully_explored_mask(input_ids, maskable, num_segments=self.num_segments,
                                         partition=self.partition, **op_args)
            views = self.num_segments
            masked = type(masked)(masked.input_ids.flatten(0, 1), masked.labels.flatten(0, 1))
        elif self.strategy in WORD_MASKS:
            word_start = self.word_start_table[input_ids]  # one gather on the ids' device
            if self.strategy == "whole-word":
                masked = whole_word_mask(input_ids, maskable, word_start, exact_count=True, **rate, **op_args)
            else:
                masked = span_mask(input_ids, maskable, word_start, **self.span, **rate, **op_args)
        else:
            scores = self.proposal(input_ids, attention_mask)
            masked = proposal_mask(input_ids, scores.detach(), maskable, uniform_mix=self.uniform_mix,
                                   sampling=self.sampling, weighting=self.weighting, **rate, **op_args)
            weights = masked.weights
        positions = self._gathered(masked.labels, self.capacity(input_ids.shape[1]))
        return MaskedStep(masked.input_ids, masked.labels, positions, views, maskable, weights, scores)

    def evaluation(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, *,
                   row_ids: torch.Tensor, epoch: torch.Tensor | int = 0) -> MaskedStep:
        """Evaluation masks, whatever the strategy: plain random, exact count, seed EVAL_SEED.

        Every strategy is then scored on the same task, so evaluation losses compare across them.
        """
        maskable = self.maskable(input_ids, attention_mask)
        masked = mask_tokens(input_ids, maskable, self.mask_token_id, self.vocab_size, self.mlm_probability,
                             exact_count=True, seed=EVAL_SEED, row_ids=row_ids, epoch=epoch, **self.replace)
        capacity = counts.gather_capacity(input_ids.shape[1], self.mlm_probability)
        return MaskedStep(masked.input_ids, masked.labels, masked_positions(masked.labels, capacity), 1, maskable)

    def gather_labels(self, input_ids: torch.Tensor | None, labels: torch.Tensor) -> MaskedStep:
        """A batch masked elsewhere (a collator's labels): gathered with the Bernoulli bound of
        ``mlm_probability`` (a schedule's highest rate); tokens beyond it are counted in ``dropped_labels``."""
        capacity = counts.gather_capacity(labels.shape[1], self.max_probability, exact_count=False)
        return MaskedStep(input_ids, labels, self._gathered(labels, capacity), 1, labels != IGNORE_INDEX)

    def labelled(self, input_ids: torch.Tensor | None, labels: torch.Tensor) -> MaskedStep:
        """Deprecated name of :meth:`gather_labels` (until fastmask 0.2)."""
        warnings.warn("MaskingStrategy.labelled is deprecated, use gather_labels (the old name goes in fastmask 0.2)",
                      DeprecationWarning, stacklevel=2)
        return self.gather_labels(input_ids, labels)

    def losses(self, step: MaskedStep, hidden: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor],
               num_items: torch.Tensor | int | None = None) -> StepLosses:
        """The MLM loss, the proposal objective and the slots' logits, from the encoder's hidden states.

        ``hidden`` is (views * B, L, H). The MLM loss is the (importance-weighted) cross-entropy of
        ``head`` over the labelled slots, summed and divided by `num_items` (a token count over an
        accumulation window) or else by this batch's labelled tokens. The objective is MAPNet's
        REINFORCE loss for the proposal net (0 for the other strategies), to add with a weight.

        With ``fused_loss`` (the default), a head :func:`fastmask.sparse.vocabulary_head` can split
        and gradients enabled (a training step), the decoder and the cross-entropy run fused
        (:func:`fastmask.linear_cross_entropy`): no logits are held, and ``logits`` is None. Without
        gradients (evaluation) the slots' logits are materialised, for metrics that read them.
        """
        gathered = gather_masked(hidden, step.positions.index)
        feedback = step.scores is not None and self.objective != "loss"
        if feedback:
            gathered, objective = _ProposalFeedback.apply(gathered, step.scores, step, self)
        split = vocabulary_head(head) if self.fused_loss and torch.is_grad_enabled() else None
        if split is not None:
            logits = None
            loss, token_losses = fused_slot_loss(gathered, split, step.positions, step.weights, num_items)
        else:
            logits = head(gathered)
            token_losses = slot_cross_entropy(logits, step.positions)
            loss = labelled_mean(token_losses, step.positions, step.weights, num_items)
        if step.scores is None:
            return StepLosses(loss, loss.new_zeros(()), logits)
        if not feedback:
            reward = losses_by_position(token_losses.detach().float(), step.positions, step.labels.shape[1])
            objective = mapnet_loss(step.scores, step.labels, reward, step.maskable, uniform_mix=self.uniform_mix,
                                    objective=self.objective)
        with torch.no_grad():
            sampled = step.weights > 0
            weights = step.weights.float()
            q = proposal_log_q(step.scores.detach(), step.maskable, self.uniform_mix).exp()
            self.proposal_sums = self.proposal_sums + torch.stack([
                objective.detach().float(), torch.where(sampled, weights, float("inf")).min(),
                torch.where(sampled, weights, float("-inf")).max(),
                (q * step.maskable.sum(1, keepdim=True)).max(), weights.new_ones(())])
        return StepLosses(loss, objective, logits)


class _ProposalFeedback(torch.autograd.Function):
    """Identity on the gathered hidden states (views * B, C, H), plus a 0-valued objective.

    Backward: the gradient reaching the gathered slot of token i is c w_i dl_i/dh_i (c: the loss's
    normaliser and any outer scale, common to the batch; w_i: its importance weight), so
    ||grad_i|| / w_i is the signal G_i up to c, which the (scale-free) regression and variance
    objectives ignore. From it the proposal's scores get their objective's gradient in closed
    form (:func:`fastmask.mapnet.mapnet_score_gradient`), times the objective output's own
    upstream gradient (its weight lambda and the same outer scale). One backward pass: nothing
    is recomputed.
    """

    @staticmethod
    def forward(ctx, gathered, scores, step: MaskedStep, strategy: "MaskingStrategy"):
        ctx.step, ctx.strategy = step, strategy
        return gathered.view_as(gathered), scores.new_zeros(())

    @staticmethod
    def backward(ctx, grad_gathered, grad_objective):
        step, strategy = ctx.step, ctx.strategy
        index = step.positions.index
        slot_weights = step.weights.gather(1, index.clamp(min=0)).float()
        slot_norms = grad_gathered.float().norm(dim=-1)
        slot_signal = torch.where((index >= 0) & (slot_weights > 0), slot_norms / slot_weights, 0.0)
        signal = losses_by_position(slot_signal, step.positions, step.labels.shape[1])
        labels = torch.where(signal > 0, step.labels, IGNORE_INDEX)  # a label dropped for capacity has no signal
        grad_scores, value = mapnet_score_gradient(step.scores, labels, signal, step.maskable, strategy.uniform_mix,
                                                   objective=strategy.objective, weights=step.weights)
        if not torch.compiler.is_compiling():  # the objective's value, for the proposal's health log
            strategy.proposal_sums[0] += value
        return grad_gathered, grad_scores * grad_objective, None, None
