"""``MaskingConfig``: every setting of a masking strategy, in one place, under one set of names.

One dataclass holds the strategy and its settings, with one set of defaults, one help text per
field and one :meth:`MaskingConfig.validate`. Everything that masks reads it:

* :class:`fastmask.MaskingStrategy` is built from it (``MaskingStrategy(config, mask_token_id=...,
  vocab_size=...)``; its keyword arguments are the same field names);
* :func:`fastmask.hf.apply_fastmask` takes the same names as keywords (or a ``MaskingConfig``) and
  saves the config as ``fastmask.json`` beside the model;
* ``fastmask pretrain``'s configuration is a ``MaskingConfig`` plus the run's own fields: every
  field here is a flag (``mlm_probability`` -> ``--mlm-probability``), its help and default from here;
* the experiments build their arms by replacing fields of the run's ``MaskingConfig``.

The names are canonical. Older keyword names (``RENAMED``) are accepted for one release with a
``DeprecationWarning``; error messages name a setting the way its caller spelled it (the keyword,
the old keyword, or the command-line flag).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from dataclasses import dataclass, field, fields
from typing import Any

from fastmask.counts import SPAN_LENGTHS
from fastmask.mapnet import OBJECTIVES, PROPOSAL_HEADS, MaskProposalNet, proposal_width
from fastmask.ops import PARTITIONS, REPLACE_PER, SAMPLINGS, WEIGHTINGS
from fastmask.reference import MAX_SPAN_WORDS

STRATEGIES = ("random", "bernoulli", "fully-explored", "mapnet", "whole-word", "span")
RATE_SCHEDULES = ("constant", "linear", "cosine", "step")  # how the masking rate moves over training
PER_ROW_MASKS = ("random", "bernoulli")  # the strategies that can draw masks_per_row independent masks of a row
WORD_MASKS = ("whole-word", "span")  # the strategies that mask whole words: they need the tokens' word starts

# Old keyword -> canonical field. Accepted with a DeprecationWarning until fastmask 0.2.
RENAMED = {
    "strategy": "masking",  # MaskingStrategy's first argument
    "objective": "mapnet_objective",  # MaskingStrategy
    "sampling": "mapnet_sampling",  # MaskingStrategy, apply_fastmask
    "proposal_layers": "mapnet_layers",  # apply_fastmask, fastmask.json
    "proposal_hidden": "mapnet_hidden",  # apply_fastmask, fastmask.json
}
REMOVAL = "fastmask 0.2"
CONFIG_FILE = "fastmask.json"  # a MaskingConfig (and the masks' seed) beside a model: apply_fastmask's save_pretrained


def setting(default, help: str, kind=None, choices=None):
    """A dataclass field with its help text, value type (default: the default's) and choices: what a
    command-line flag is generated from (``fastmask pretrain``)."""
    return field(default=default, metadata=dict(help=help, kind=kind or type(default), choices=choices))


class Spelling:
    """How a caller names a setting in an error message: as a keyword (``mlm_probability``, or the
    old name the caller used) or as a command-line flag (``--mlm-probability``)."""

    def __init__(self, names: dict[str, str] | None = None, flags: bool = False):
        self.names, self.flags = names or {}, flags

    def name(self, field_name: str) -> str:
        if self.flags:
            return "--" + field_name.replace("_", "-")
        return self.names.get(field_name, field_name)

    def value(self, field_name: str, value) -> str:
        """The setting with a value: ``weighting='token'`` or ``--weighting token``."""
        return f"{self.name(field_name)} {value}" if self.flags else f"{self.name(field_name)}={value!r}"


KEYWORDS = Spelling()
FLAGS = Spelling(flags=True)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _probability(spelling: Spelling, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"{spelling.name(name)} must be a probability in [0, 1], got {value!r}")


@dataclass
class MaskingConfig:
    """A masking strategy and every one of its settings (see the module docstring).

    ``num_segments=None`` means round(1 / mlm_probability); ``mapnet_hidden=None`` means
    :func:`fastmask.mapnet.proposal_width` of the model's width. The ``mapnet_*``, ``uniform_mix``
    and ``weighting`` fields apply to ``masking="mapnet"`` only; ``mapnet_weight`` (lambda) is read
    by the training step that adds the proposal's objective to the loss. ``span_lengths``,
    ``span_p``, ``max_span``, ``max_ngram`` and ``replace_per`` apply to ``masking="span"`` only
    (:func:`fastmask.span_mask`'s arguments). ``fused_loss`` is how the strategy's loss runs the
    vocabulary head (:meth:`fastmask.MaskingStrategy.losses`), whatever the masking.
    """

    masking: str = setting("random", "random: exactly round(p n) tokens per row; bernoulli: each token with "
                                     "probability p (BERT, the HF collator); fully-explored: K disjoint views of "
                                     "every row in one step; mapnet: sampled from a jointly trained proposal net, "
                                     "importance-weighted; whole-word: whole words within the budget of round(p n) "
                                     "tokens per row; span: spans of whole words (SpanBERT, Megatron's n-grams) "
                                     "within that budget", choices=STRATEGIES)
    mlm_probability: float = setting(0.15, "share of maskable tokens masked (p); with a schedule, the rate it ends at "
                                           "(and evaluation's)")
    mlm_probability_schedule: str = setting(
        "constant", "how the masking rate moves from --mlm-probability-start at the first step to --mlm-probability "
                    "at the last: constant; linear; cosine (half a cosine); step (the start rate for the first half "
                    "of training, then the final one). MosaicBERT and Ankner et al. (2024): linear from 0.30 to 0.15. "
                    "The rate is a device value the kernels read: a change recompiles nothing", choices=RATE_SCHEDULES)
    mlm_probability_start: float | None = setting(None, "the schedule's first rate; None: --mlm-probability (no "
                                                        "change)", kind=float)
    mask_replace_prob: float = setting(0.8, "share of the masked tokens whose input becomes [MASK]")
    random_replace_prob: float = setting(0.1, "share of the masked tokens whose input becomes a random token "
                                              "(the rest keep theirs)")
    num_segments: int | None = setting(None, "fully-explored: the number of views K; None: round(1 / p)", kind=int)
    partition: str = setting("random", "fully-explored: how the maskable tokens are split into the K views: "
                                       "random (a uniformly random partition) or contiguous (K blocks)",
                             choices=PARTITIONS)
    masks_per_row: int = setting(1, "random/bernoulli: independent masks of every row in a step (K of them cost what "
                                    "fully explored's K views cost)")
    mapnet_layers: int = setting(2, "MAPNet proposal net: Transformer layers")
    mapnet_hidden: int | None = setting(None, f"MAPNet proposal net: width (even, for its {PROPOSAL_HEADS} heads); "
                                              "None: a quarter of the model's width, rounded down to an even number "
                                              "(at least 2)", kind=int)
    mapnet_weight: float = setting(0.1, "MAPNet: weight lambda of the proposal net's objective")
    mapnet_objective: str = setting("regression", "MAPNet: the proposal's objective (fastmask.mapnet_loss): regression "
                                                  "(scores fitted to the log gradient-norm signal, q proportional to "
                                                  "it), variance (REINFORCE on the estimator's second moment) or loss "
                                                  "(the paper author's REINFORCE toward high-loss tokens)",
                                    choices=OBJECTIVES)
    mapnet_sampling: str = setting("systematic", "MAPNet: how masks are drawn from q: systematic (exactly k, exact "
                                                 "inclusion probabilities), topk (Gumbel-top-k, approximate weights) "
                                                 "or poisson (about k, exact)", choices=SAMPLINGS)
    uniform_mix: float = setting(0.1, "MAPNet: share of the uniform distribution mixed into the proposal, in [0, 1]")
    weighting: str = setting("token", "MAPNet importance weights: token (per masked token, unbiased) or sequence "
                                      "(one clipped weight per row)", choices=WEIGHTINGS)
    span_lengths: str = setting("geometric", "span: the span lengths' distribution, in words: geometric (SpanBERT: "
                                             "P(l) proportional to span_p (1 - span_p)^(l - 1), l <= max_span) or "
                                             "ngram (Megatron-LM: P(n) proportional to 1 / n, n <= max_ngram)",
                                choices=SPAN_LENGTHS)
    span_p: float = setting(0.2, "span, geometric lengths: the geometric distribution's parameter, in (0, 1]")
    max_span: int = setting(10, f"span, geometric lengths: the longest span, in words (1 .. {MAX_SPAN_WORDS})")
    max_ngram: int = setting(3, f"span, ngram lengths: the longest n-gram, in words (1 .. {MAX_SPAN_WORDS})")
    replace_per: str = setting("span", "span: the 80/10/10 action decided once per span (span, SpanBERT) or per "
                                       "token (token)", choices=REPLACE_PER)
    fused_loss: bool = setting(True, "training steps run the vocabulary head's decoder and cross-entropy fused "
                                     "(fastmask.linear_cross_entropy: no logits held; the outputs' logits are None "
                                     "then); off: the labelled slots' logits are materialised")

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], base: "MaskingConfig | str | None" = None, *,
                    owner: str = "MaskingConfig", stacklevel: int = 2) -> tuple["MaskingConfig", Spelling]:
        """(``base`` with the settings in ``kwargs``, how the caller spelled them).

        ``base``: a MaskingConfig, a strategy name, or None (the defaults). An old name in ``kwargs``
        (``RENAMED``) warns (DeprecationWarning, at ``stacklevel`` above the caller) and still works;
        an unknown name is a TypeError, as for any function; ``stacklevel`` 2 is the caller's caller.
        """
        known = {f.name for f in fields(MaskingConfig)}
        values, names = {}, {}
        for key, value in kwargs.items():
            name = RENAMED.get(key, key)
            if name not in known:
                raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
            if name != key:
                warnings.warn(f"{owner}: {key}= is deprecated, use {name}= (the old name goes in {REMOVAL})",
                              DeprecationWarning, stacklevel=stacklevel + 1)
            if name in values:
                raise TypeError(f"{owner}() got {names[name]!r} and {key!r}, two names of one setting")
            values[name], names[name] = value, key
        if isinstance(base, str):
            if "masking" in values:
                raise TypeError(f"{owner}() got multiple values for the strategy ({base!r} and "
                                f"{names['masking']}={values['masking']!r})")
            values["masking"] = base
            base = None
        if base is None:
            base = cls()
        elif not isinstance(base, MaskingConfig):
            raise TypeError(f"{owner}() takes a strategy name or a MaskingConfig, got {type(base).__name__}")
        return dataclasses.replace(base.masking_config(), **values), Spelling(names)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "MaskingConfig":
        """The config saved by :meth:`to_dict` (``fastmask.json``); the old names of a file written before
        the rename are read as the new ones, keys that are not fields (``seed``) are ignored."""
        known = {f.name for f in fields(MaskingConfig)}
        renamed = {RENAMED.get(k, k): v for k, v in values.items() if k not in known and RENAMED.get(k) in known}
        return cls(**renamed, **{k: v for k, v in values.items() if k in known})

    @classmethod
    def load(cls, folder: str) -> "MaskingConfig":
        """The config saved beside a model (``folder/fastmask.json``, written by the ``save_pretrained``
        of a model patched by :func:`fastmask.hf.apply_fastmask`)."""
        with open(os.path.join(folder, CONFIG_FILE)) as f:
            return cls.from_dict(json.load(f))

    def to_dict(self) -> dict[str, Any]:
        """The masking fields, by their canonical names (JSON-ready)."""
        return {f.name: getattr(self, f.name) for f in fields(MaskingConfig)}

    def masking_config(self) -> "MaskingConfig":
        """The masking settings alone, as a MaskingConfig (for a subclass holding more fields, such as
        ``fastmask pretrain``'s Config)."""
        return MaskingConfig(**self.to_dict())

    def with_defaults(self, model_width: int | None = None):
        """A copy with ``num_segments`` (round(1 / p), at least 1) and, given the model's width,
        ``mapnet_hidden`` (:func:`fastmask.mapnet.proposal_width`) filled in where None."""
        changes = {}
        p = self.mlm_probability
        if self.num_segments is None and not isinstance(p, bool) and isinstance(p, (int, float)) and p > 0:
            changes["num_segments"] = max(1, round(1 / p))
        if self.mapnet_hidden is None and model_width is not None:
            changes["mapnet_hidden"] = proposal_width(model_width)
        return dataclasses.replace(self, **changes)

    # ---- checks -----------------------------------------------------------------------------

    def validate(self, spelling: Spelling = KEYWORDS) -> "MaskingConfig":
        """Raises ValueError naming the first bad setting (as ``spelling`` names it); returns self.

        The proposal net's shape (``mapnet_layers``, ``mapnet_hidden``) is checked only for
        ``masking="mapnet"``, where a net is built.
        """
        name, value = spelling.name, spelling.value
        for field_name, table in (("masking", STRATEGIES), ("partition", PARTITIONS), ("weighting", WEIGHTINGS),
                                  ("mapnet_sampling", SAMPLINGS), ("mapnet_objective", OBJECTIVES),
                                  ("span_lengths", SPAN_LENGTHS), ("replace_per", REPLACE_PER)):
            if getattr(self, field_name) not in table:
                raise ValueError(f"{name(field_name)} must be one of {table}, got {getattr(self, field_name)!r}")
        if self.mapnet_objective == "variance" and self.weighting != "token":
            raise ValueError(f"{value('mapnet_objective', 'variance')} is the second moment of the token-weighted "
                             f"estimator: it needs {value('weighting', 'token')}")
        _probability(spelling, "mlm_probability", self.mlm_probability)
        if self.mlm_probability == 0:
            raise ValueError(f"{name('mlm_probability')} must be in (0, 1], got {self.mlm_probability!r}")
        if self.mlm_probability_schedule not in RATE_SCHEDULES:
            raise ValueError(f"{name('mlm_probability_schedule')} must be one of {RATE_SCHEDULES}, got "
                             f"{self.mlm_probability_schedule!r}")
        if self.mlm_probability_start is not None:
            _probability(spelling, "mlm_probability_start", self.mlm_probability_start)
            if self.mlm_probability_start == 0:
                raise ValueError(f"{name('mlm_probability_start')} must be in (0, 1], got {self.mlm_probability_start!r}")
        if self.scheduled and self.masking == "fully-explored":
            raise ValueError(f"{value('masking', 'fully-explored')} masks 1/K of every row in each of its K views "
                             f"(K = {name('num_segments')}): its rate is the number of views, a shape, and "
                             f"{name('mlm_probability_schedule')} does not apply")
        _probability(spelling, "mask_replace_prob", self.mask_replace_prob)
        _probability(spelling, "random_replace_prob", self.random_replace_prob)
        if self.mask_replace_prob + self.random_replace_prob > 1.0 + 1e-9:
            raise ValueError(f"{name('mask_replace_prob')} + {name('random_replace_prob')} must be at most 1, got "
                             f"{self.mask_replace_prob} + {self.random_replace_prob}")
        _probability(spelling, "uniform_mix", self.uniform_mix)
        if self.num_segments is not None and not (_is_int(self.num_segments) and self.num_segments >= 1):
            raise ValueError(f"{name('num_segments')} must be an int >= 1, got {self.num_segments!r}")
        if not (_is_int(self.masks_per_row) and self.masks_per_row >= 1):
            raise ValueError(f"{name('masks_per_row')} must be an int >= 1, got {self.masks_per_row!r}")
        if self.masks_per_row > 1 and self.masking not in PER_ROW_MASKS:
            raise ValueError(f"{name('masks_per_row')} applies to random and bernoulli masking, not {self.masking!r}")
        _probability(spelling, "span_p", self.span_p)
        if self.span_p == 0:
            raise ValueError(f"{name('span_p')} must be in (0, 1], got {self.span_p!r}")
        for field_name in ("max_span", "max_ngram"):
            longest = getattr(self, field_name)
            if not (_is_int(longest) and 1 <= longest <= MAX_SPAN_WORDS):
                raise ValueError(f"{name(field_name)} must be an int in [1, {MAX_SPAN_WORDS}], got {longest!r}")
        if not isinstance(self.fused_loss, bool):
            raise ValueError(f"{name('fused_loss')} must be True or False, got {self.fused_loss!r}")
        if not (isinstance(self.mapnet_weight, (int, float)) and self.mapnet_weight >= 0):
            raise ValueError(f"{name('mapnet_weight')} must be >= 0, got {self.mapnet_weight!r}")
        if self.masking == "mapnet":
            if not (_is_int(self.mapnet_layers) and self.mapnet_layers >= 1):
                raise ValueError(f"{name('mapnet_layers')} must be an int >= 1, got {self.mapnet_layers!r}")
            hidden = self.mapnet_hidden
            if hidden is not None and not (_is_int(hidden) and hidden >= 2 and hidden % PROPOSAL_HEADS == 0):
                raise ValueError(f"{name('mapnet_hidden')} must be an even number >= 2 (the proposal net's "
                                 f"{PROPOSAL_HEADS} heads), got {hidden!r}")
        return self

    # ---- what the settings build ------------------------------------------------------------

    @property
    def scheduled(self) -> bool:
        """Whether the masking rate changes over training (a schedule between two different rates)."""
        return self.mlm_probability_schedule != "constant" and self.start_probability != self.mlm_probability

    @property
    def start_probability(self) -> float:
        return self.mlm_probability if self.mlm_probability_start is None else self.mlm_probability_start

    @property
    def max_probability(self) -> float:
        """The highest rate of the schedule: what the gather capacity is sized for."""
        return max(self.start_probability, self.mlm_probability) if self.scheduled else self.mlm_probability

    def mlm_probability_at(self, step: int, total_steps: int) -> float:
        """The masking rate at optimizer step `step` of `total_steps` (0-based: the first step gets the
        start rate, the last the final one), rounded to 4 decimals (a bounded set of rates)."""
        start, end = self.start_probability, self.mlm_probability
        progress = min(1.0, max(0.0, step / max(1, total_steps - 1)))
        if self.mlm_probability_schedule == "linear":
            p = start + (end - start) * progress
        elif self.mlm_probability_schedule == "cosine":
            p = end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
        elif self.mlm_probability_schedule == "step":
            p = start if step < total_steps // 2 else end
        else:
            p = end
        return round(p, 4)

    @property
    def views(self) -> int:
        """Encoder rows per sequence in a training step: K for fully-explored, ``masks_per_row`` for
        random and bernoulli, 1 for MAPNet."""
        if self.masking == "fully-explored":
            return self.with_defaults().num_segments
        return self.masks_per_row if self.masking in PER_ROW_MASKS else 1

    def proposal_net(self, embedding, max_len: int, dropout: float = 0.1) -> MaskProposalNet:
        """MAPNet's proposal net of this shape over the model's token ``embedding`` (``mapnet_hidden``
        None: the default width beside the embedding's)."""
        hidden = self.mapnet_hidden if self.mapnet_hidden is not None else proposal_width(embedding.embedding_dim)
        return MaskProposalNet(embedding, num_layers=self.mapnet_layers, hidden_size=hidden, num_heads=PROPOSAL_HEADS,
                               max_len=max_len, dropout=dropout)
