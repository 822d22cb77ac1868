"""``apply_fastmask``: on-device masking and the sparse MLM head for a Hugging Face ``*ForMaskedLM``.

The model is patched in place and keeps its class (Liger-Kernel's ``apply_liger_kernel_to_*``
convention): its ``forward`` and ``save_pretrained`` are replaced on the instance, and a
``fastmask`` submodule holds the masking strategy (with MAPNet's proposal net) and the device-side
counters that key the masks. Everything else about the model — its config, its weights, its
checkpoint format — is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import types
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from fastmask.masking_config import CONFIG_FILE, REMOVAL, RENAMED, MaskingConfig
from fastmask.mapnet import MaskProposalNet, proposal_width
from fastmask.sparse import VocabularyHead, vocabulary_head
from fastmask.strategy import MaskedStep, MaskingStrategy

from transformers import TrainerCallback
from transformers.modeling_outputs import MaskedLMOutput
from transformers.utils import logging

logger = logging.get_logger(__name__)

PROPOSAL_FILE = "fastmask_proposal.safetensors"  # MAPNet's proposal net: not part of the model's checkpoint
PER_ROW_INPUTS = ("token_type_ids", "position_ids")  # repeated per view for fully-explored masking


def _vocabulary_heads() -> dict:
    """Per supported class name: (model) -> its vocabulary head, split into the transform and the
    decoder (the fused loss runs the decoder itself); calling it gives the logits (..., V)."""
    from transformers.activations import gelu  # RoBERTa's and XLM-R's LM head call this one

    def roberta(m):
        head = m.lm_head
        return VocabularyHead(lambda h: head.layer_norm(gelu(head.dense(h))), head.decoder)

    def distilbert(m):
        return VocabularyHead(lambda h: m.vocab_layer_norm(m.activation(m.vocab_transform(h))), m.vocab_projector)

    return {
        "BertForMaskedLM": lambda m: vocabulary_head(m.cls),
        "RobertaForMaskedLM": roberta,
        "XLMRobertaForMaskedLM": roberta,
        "DistilBertForMaskedLM": distilbert,
        "ModernBertForMaskedLM": lambda m: VocabularyHead(m.head, m.decoder),
    }


SUPPORTED_MODELS = tuple(_vocabulary_heads())


def _head_of(model: nn.Module):
    heads = _vocabulary_heads()
    for cls in type(model).__mro__:  # subclasses of a supported class share its head
        if cls.__name__ in heads:
            return heads[cls.__name__](model)
    raise TypeError(f"apply_fastmask supports {', '.join(SUPPORTED_MODELS)} (and their subclasses); "
                    f"got {type(model).__name__}, whose vocabulary head fastmask does not know how to run apart")


@dataclass
class FastMaskedLMOutput(MaskedLMOutput):
    """A ``MaskedLMOutput`` whose ``logits`` are the labelled tokens' only, in static slots.

    ``logits`` (R, C, V): slot j of row r predicts the token at ``positions[r, j]`` (-1: an
    unused slot, its logits meaningless), whose label is ``slot_labels[r, j]`` (-100 if unused).
    R is the batch size, times K for fully-explored masking (view k of row b is row k * B + b).
    As ModernBERT's ``sparse_prediction``: the vocabulary head never runs on unlabelled tokens.
    ``logits`` is None in training forwards (gradients enabled) with ``fused_loss=True``, the
    default: the decoder and the cross-entropy ran fused and held no logits (as Liger-Kernel's
    fused linear cross-entropy). Evaluation forwards, or ``fused_loss=False``, give them.
    """

    positions: torch.LongTensor | None = None
    slot_labels: torch.LongTensor | None = None


@torch.compiler.assume_constant_result
def rank_and_world() -> tuple[int, int]:
    """This process's data-parallel rank and world size (fixed for the life of the process)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _content_hashes(input_ids: torch.Tensor) -> torch.Tensor:
    """A hash of each row's tokens (B,): evaluation masks keyed by it depend on the sequence alone,
    not on its batch, the batch order or the rank. Products stay below 2**53: no int64 overflow."""
    length = input_ids.shape[1]
    weights = torch.arange(1, length + 1, device=input_ids.device, dtype=torch.int64) * 2654435761 % (1 << 20) + 1
    return (input_ids.long() * weights).sum(1)


class FastMaskState(nn.Module):
    """What ``apply_fastmask`` attaches to a model as ``model.fastmask``.

    ``masking`` is the strategy (its proposal net, for MAPNet, is trained with the model). In
    training, call t of rank r is keyed by the mask counter (the ops' epoch) t * world + r, from a
    device-side counter advanced in place (fresh masks every call, no host sync, no
    recompilation), so ranks and accumulation micro-steps never share a mask. In evaluation a
    row's masks are keyed by a hash of its tokens: every evaluation of a sequence masks it the
    same way.

    Its state — the mask counter (the ``fastmask._extra_state`` entry) and, for MAPNet, the
    proposal net's weights — is in ``model.state_dict()`` (never in ``save_pretrained``'s
    ``model.safetensors``): a loop that saves and loads the model's state dict (and its
    optimizer's) resumes with the masks and the proposal of the uninterrupted run. The Trainer
    reloads ``model.safetensors`` only; :class:`FastMaskCallback` restores the rest on
    ``resume_from_checkpoint``. A load that leaves this state out warns once (unless a
    FastMaskCallback is attached), and is not an error.
    """

    def __init__(self, masking: MaskingStrategy, mapnet_weight: float, settings: dict):
        super().__init__()
        self.masking, self.mapnet_weight, self.settings = masking, mapnet_weight, _Settings(settings)
        # Not a buffer (DDP would broadcast it every step); moved with the module (see _apply).
        self.train_calls = torch.zeros((), dtype=torch.int64)
        self._restored_by_callback = False  # a FastMaskCallback's Trainer restores what its checkpoint load leaves out
        self._said_unrestored = False

    def _apply(self, fn, *args, **kwargs):
        self.train_calls = fn(self.train_calls)
        return super()._apply(fn, *args, **kwargs)

    def get_extra_state(self) -> torch.Tensor:
        """The mask counter (training calls made by this process), saved in the state dict."""
        return self.train_calls.detach().clone()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.train_calls.copy_(torch.as_tensor(state))  # in place: a compiled forward keeps reading the same tensor

    def mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, training: bool) -> MaskedStep:
        if not training:
            content_hashes = _content_hashes(input_ids)  # the row key: a row's masks follow its tokens
            return self.masking.evaluation(input_ids, attention_mask, row_ids=content_hashes)
        rank, world = rank_and_world()
        # The Philox key: row = the row's place in the batch + rank << 32; the ops' "epoch" word = this
        # rank's call index among every rank's calls (call t of rank r: t * world + r).
        batch_rows = torch.arange(input_ids.shape[0], device=input_ids.device, dtype=torch.int64) + (rank << 32)
        call_index = self.train_calls * world + rank
        self.train_calls.add_(1)
        return self.masking(input_ids, attention_mask, row_ids=batch_rows, epoch=call_index)

    @property
    def config(self) -> MaskingConfig:
        """The settings apply_fastmask was given (the proposal's width resolved), as saved in fastmask.json."""
        return MaskingConfig.from_dict(self.settings)

    def take_dropped_labels(self) -> int:
        """Labelled tokens dropped for capacity since the last call (a host sync: log time only)."""
        return self.masking.take_dropped_labels()


class _Settings(dict):
    """``FastMaskState.settings``: the MaskingConfig's fields and the seed, by their canonical names;
    an old name (``proposal_hidden``, ...) is still read, with a DeprecationWarning."""

    def __getitem__(self, key):
        if key in RENAMED and not super().__contains__(key):
            warnings.warn(f"settings[{key!r}] is deprecated, use settings[{RENAMED[key]!r}] (the old name goes in "
                          f"{REMOVAL})", DeprecationWarning, stacklevel=2)
            key = RENAMED[key]
        return super().__getitem__(key)


SHAPED_INPUTS = ("attention_mask", "token_type_ids", "special_tokens_mask")  # each (B, L), as input_ids


def _check_shapes(input_ids, labels, inputs: dict):
    """ValueError for ``labels`` whose shape is neither input_ids' (B, L) nor the width-0 marker (B, 0),
    and for any of SHAPED_INPUTS not (B, L). Host metadata only: nothing is read back from the device."""
    if input_ids is not None:
        expected, source = tuple(input_ids.shape), "the shape of input_ids"
    elif inputs.get("inputs_embeds") is not None:
        expected = tuple(inputs["inputs_embeds"].shape[:-1])
        source = "the shape of inputs_embeds less its last dimension"
    else:
        return
    marker = expected[:1] + (0,)  # the drop-in collator's mask_in_model=True labels
    if labels is not None and tuple(labels.shape) not in (expected, marker):
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected {expected}, {source}, or {marker}, "
                         "the width-0 labels of DataCollatorForLanguageModeling(mask_in_model=True)")
    for name in SHAPED_INPUTS:
        value = inputs.get(name)
        if value is not None and tuple(value.shape) != expected:
            raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {expected}, {source}")


def _patched_forward(original_forward, head):
    @functools.wraps(original_forward)  # the Trainer reads the signature: it stays the model's own
    def forward(self, input_ids=None, attention_mask=None, labels=None, return_dict=None, num_items_in_batch=None,
                **kwargs):
        state: FastMaskState = self.fastmask
        _check_shapes(input_ids, labels, dict(kwargs, attention_mask=attention_mask))
        if labels is None or labels.shape[-1] == 0:  # width 0: the drop-in collator's mask_in_model batches
            if input_ids is None:
                raise ValueError("a model patched by apply_fastmask masks input_ids: pass input_ids (or labels "
                                 "with inputs_embeds)")
            step = state.mask(input_ids, attention_mask, self.training)
            num_items_in_batch = None  # the Trainer counted the labels it saw, not these masks
        else:
            step = state.masking.gather_labels(input_ids, labels)  # input_ids may be None (inputs_embeds)
        per_row = {k: step.repeat(v) if k in PER_ROW_INPUTS else v for k, v in kwargs.items()}
        encoded = self.base_model(input_ids=None if input_ids is None else step.input_ids,
                                  attention_mask=step.repeat(attention_mask), return_dict=True, **per_row)
        losses = state.masking.losses(step, encoded.last_hidden_state, head, num_items_in_batch)
        loss = losses.loss
        if self.training and step.scores is not None:
            loss = loss + state.mapnet_weight * losses.objective
        out = FastMaskedLMOutput(loss=loss, logits=losses.logits, hidden_states=encoded.get("hidden_states"),
                                 attentions=encoded.get("attentions"), positions=step.positions.index,
                                 slot_labels=step.positions.labels)
        return out if return_dict is not False else out.to_tuple()

    return forward


def _patched_save_pretrained(original_save):
    @functools.wraps(original_save)
    def save_pretrained(self, save_directory, *args, is_main_process: bool = True, **kwargs):
        original_save(save_directory, *args, is_main_process=is_main_process, **kwargs)
        if not is_main_process:
            return
        state: FastMaskState = self.fastmask
        with open(os.path.join(save_directory, CONFIG_FILE), "w") as f:
            json.dump(dict(state.settings), f, indent=2)
        if state.masking.proposal is not None:
            from safetensors.torch import save_file

            tensors = {k: v.detach().cpu().contiguous() for k, v in state.masking.proposal.state_dict().items()}
            save_file(tensors, os.path.join(save_directory, PROPOSAL_FILE))

    return save_pretrained


def _tokenizer_of(model, tokenizer):
    if tokenizer is not None:
        return tokenizer
    path = getattr(model, "name_or_path", "")
    if path and os.path.isdir(path):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path)
    raise ValueError("apply_fastmask needs the tokenizer (its [MASK] id, special tokens and size): pass tokenizer=, "
                     "or load the model from a local folder that holds one")


def apply_fastmask(model, tokenizer=None, config: MaskingConfig | None = None, *, seed: int = 0, **settings):
    """Patches a Hugging Face ``*ForMaskedLM`` in place for fastmask and returns it.

    The masking settings are :class:`fastmask.MaskingConfig`'s fields, given as ``config``, as
    keywords of the same names (``masking="fully-explored", num_segments=4``), or both (the
    keywords replace the config's fields); ``seed`` keys the masks. The old keywords
    ``sampling``, ``proposal_layers`` and ``proposal_hidden`` (now ``mapnet_sampling``,
    ``mapnet_layers``, ``mapnet_hidden``) warn and still work, for one release.

    ``forward`` without ``labels`` (or with the width-0 labels of the drop-in collator's
    ``mask_in_model=True``) masks the batch on the model's device with ``masking`` — ``"random"``
    (exact count), ``"bernoulli"``, ``"fully-explored"`` (all ``num_segments`` views in the step),
    ``"mapnet"`` (a proposal net over the model's input embedding, trained jointly through
    ``mapnet_objective`` (:func:`fastmask.mapnet_loss`) added with weight ``mapnet_weight``, masks
    drawn by ``mapnet_sampling``; the net has ``mapnet_layers`` layers and is ``mapnet_hidden`` wide,
    by default :func:`fastmask.mapnet.proposal_width` of the model's width, as in ``fastmask
    pretrain``), ``"whole-word"`` or ``"span"`` (whole words, or spans of them by ``span_lengths``,
    within the exact-count budget; words from the tokenizer's subword markers,
    :func:`fastmask.word_start_table`, looked up on the device) — fresh every step, no host sync.
    In eval mode it masks with plain random masks (exact count) keyed by each sequence's tokens,
    for every strategy: evaluation losses compare across strategies and runs.
    ``forward`` with ``labels`` (any MLM collator's) uses them. Either way the vocabulary head runs
    on the labelled tokens only (:class:`FastMaskedLMOutput`), and the loss is the mean over them
    (the unpatched model's, to rounding), or their sum over ``num_items_in_batch`` when given.

    The Trainer is told not to pass ``num_items_in_batch`` (``accepts_loss_kwargs = False``): it
    divides each micro-step's mean by the accumulation steps. ``save_pretrained`` writes the
    model's standard checkpoint (loadable without fastmask) plus ``fastmask.json`` (the config and
    the seed: ``MaskingConfig.load(folder)`` reads it back) and, for MAPNet, ``fastmask_proposal.safetensors``;
    a later ``apply_fastmask(..., masking="mapnet")`` on a model loaded from that folder restores
    the proposal net (and its shape). Supported: ``SUPPORTED_MODELS`` and their subclasses;
    ``torch.nn.DataParallel`` is not (use torchrun/accelerate: DDP).
    """
    head = _head_of(model)
    if hasattr(model, "fastmask"):
        raise ValueError(f"this {type(model).__name__} is already patched by apply_fastmask")
    config, spelling = MaskingConfig.from_kwargs(settings, config, owner="apply_fastmask")
    config.validate(spelling)
    tokenizer = _tokenizer_of(model, tokenizer)
    if tokenizer.mask_token_id is None:
        raise ValueError("the tokenizer has no mask token: masked-language modelling needs one")
    vocab_size = len(tokenizer)
    if vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {vocab_size} tokens, more than the model's vocab_size "
                         f"{model.config.vocab_size}: random replacements would index past the embedding")
    proposal = None
    if config.masking == "mapnet":
        config, proposal = _proposal_net(model, config)
    strategy = MaskingStrategy.from_tokenizer(config, tokenizer, seed=seed, proposal=proposal)
    device = next(model.parameters()).device
    model.fastmask = FastMaskState(strategy, config.mapnet_weight, dict(config.to_dict(), seed=seed)).to(device)
    model._keys_to_ignore_on_save = set(model._keys_to_ignore_on_save or ()) | {
        f"fastmask.{k}" for k in model.fastmask.state_dict()}
    model.register_load_state_dict_post_hook(_after_load_state_dict)
    model.accepts_loss_kwargs = False
    model.forward = types.MethodType(_patched_forward(type(model).forward, head), model)
    model.save_pretrained = types.MethodType(_patched_save_pretrained(model.save_pretrained), model)
    return model


def _after_load_state_dict(model, incompatible_keys) -> None:
    """A state dict without model.fastmask's entries (model.safetensors, an unpatched model's) loads
    (strict or not) and leaves the mask counter and the proposal net as they are; said once."""
    missing = [k for k in incompatible_keys.missing_keys if ".fastmask." in f".{k}"]
    if not missing:
        return
    for key in missing:
        incompatible_keys.missing_keys.remove(key)
    state = getattr(model, "fastmask", None)
    if not isinstance(state, FastMaskState) or state._restored_by_callback or state._said_unrestored:
        return
    state._said_unrestored = True
    warnings.warn("fastmask: the loaded state dict holds none of model.fastmask's state (the mask counter"
                  + (" and the MAPNet proposal net" if state.masking.proposal is not None else "")
                  + "), which keeps its current value: a resumed run's masks will not continue the interrupted "
                  "run's. With the Trainer's resume_from_checkpoint, pass callbacks=[FastMaskCallback()], which "
                  "restores it; in your own loop, save and load model.state_dict() whole (it holds it)",
                  UserWarning, stacklevel=2)


def _proposal_net(model, config: MaskingConfig) -> tuple[MaskingConfig, MaskProposalNet]:
    """MAPNet's proposal net over the model's input embedding, and the config with its shape; the net
    (and its shape) restored when the model's folder holds one."""
    folder = getattr(model, "name_or_path", "")
    saved = os.path.join(folder, PROPOSAL_FILE) if folder and os.path.isdir(folder) else None
    stored = None
    if saved and os.path.exists(saved) and os.path.exists(os.path.join(folder, CONFIG_FILE)):
        stored = MaskingConfig.load(folder)
    if stored is not None:  # the saved net's shape wins: its weights are loaded next
        config = dataclasses.replace(config, mapnet_layers=stored.mapnet_layers, mapnet_hidden=stored.mapnet_hidden)
    embedding = model.get_input_embeddings()
    if config.mapnet_hidden is None:
        config = dataclasses.replace(config, mapnet_hidden=proposal_width(embedding.embedding_dim))
    net = config.proposal_net(embedding, max_len=model.config.max_position_embeddings)
    if stored is not None:
        from safetensors.torch import load_file

        net.load_state_dict(load_file(saved))
    return config, net.to(embedding.weight.device)


class FastMaskCallback(TrainerCallback):
    """Reports, at every Trainer log, the labelled tokens dropped for capacity since the last one;
    drives a masking-rate schedule (``mlm_probability_schedule``): before every optimizer step the
    rate of that step of ``state.max_steps``, written into the device value the kernels read
    (nothing recompiled), and logged as ``fastmask_mlm_probability``.

    Only Bernoulli masks (``masking="bernoulli"``, or a collator's labels) can overflow the gather
    capacity, with probability 1e-9 per row at the stated ``mlm_probability``; the count is kept on
    the device and read here, at log time. A nonzero count is warned about and recorded as
    ``fastmask_dropped_labels`` in ``trainer.state.log_history``.
    """

    def on_init_end(self, args, state, control, model=None, **kwargs):
        if isinstance(getattr(model, "fastmask", None), FastMaskState):
            model.fastmask._restored_by_callback = True  # the Trainer's checkpoint load need not warn

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        """On ``resume_from_checkpoint`` (``global_step`` > 0 here): the mask counter set to the micro-steps
        the interrupted run made, and MAPNet's proposal net read from the checkpoint's
        ``fastmask_proposal.safetensors`` (its optimiser state is the Trainer's: the net's parameters
        are the model's)."""
        fastmask_state = getattr(model, "fastmask", None)
        if not isinstance(fastmask_state, FastMaskState) or state.global_step == 0:
            return
        fastmask_state.train_calls.fill_(_micro_steps(args, state.global_step, train_dataloader))
        proposal = fastmask_state.masking.proposal
        if proposal is None:
            return
        folder = _checkpoint_folder(args, state.global_step)
        if folder is None:
            warnings.warn(f"fastmask: resuming at step {state.global_step}, but no checkpoint of that step with "
                          f"{PROPOSAL_FILE} was found (looked in args.resume_from_checkpoint and "
                          f"{os.path.join(args.output_dir, f'checkpoint-{state.global_step}')}): the MAPNet proposal "
                          "net keeps its current weights", UserWarning, stacklevel=2)
            return
        _load_proposal(proposal, folder)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        """With ``load_best_model_at_end``, the Trainer has reloaded the best checkpoint's model weights:
        MAPNet's proposal net comes back from the same checkpoint (the mask counter runs on)."""
        proposal = getattr(getattr(model, "fastmask", None), "masking", None)
        proposal = getattr(proposal, "proposal", None)
        folder = state.best_model_checkpoint
        if proposal is None or not args.load_best_model_at_end or folder is None:
            return
        if os.path.isfile(os.path.join(folder, PROPOSAL_FILE)):
            _load_proposal(proposal, folder)
        else:
            warnings.warn(f"fastmask: the best checkpoint {folder} holds no {PROPOSAL_FILE}: the MAPNet proposal "
                          "net keeps the last step's weights", UserWarning, stacklevel=2)

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        masking = getattr(getattr(model, "fastmask", None), "masking", None)
        if masking is not None and masking.mask_rate is not None:
            masking.set_mlm_probability(masking.config.mlm_probability_at(state.global_step, state.max_steps))

    def on_log(self, args, state, control, model=None, logs=None, **kwargs):
        fastmask_state = getattr(model, "fastmask", None)
        if not isinstance(fastmask_state, FastMaskState):
            return
        masking = fastmask_state.masking
        if masking.mask_rate is not None and state.log_history:
            state.log_history[-1]["fastmask_mlm_probability"] = masking.config.mlm_probability_at(
                max(0, state.global_step - 1), state.max_steps)
        dropped = fastmask_state.take_dropped_labels()
        if dropped:
            state.log_history[-1]["fastmask_dropped_labels"] = dropped
            logger.warning(f"fastmask: {dropped} labelled tokens exceeded the gather capacity since the last log and "
                           "were left out of the loss (raise mlm_probability to the collator's, or use exact counts)")

    _said_no_eval_loss = False  # once per callback: set on the instance by on_evaluate

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        """Says once that an evaluation reported no loss: its batches carried no ``labels`` (the Trainer
        computes a loss only for labelled batches; transformers' DataCollatorWithPadding gives none)."""
        patched = isinstance(getattr(model, "fastmask", None), FastMaskState)
        if self._said_no_eval_loss or metrics is None or not patched:
            return
        prefixes = {k[:-len("_runtime")] for k in metrics if k.endswith("_runtime")} or {"eval"}
        if any(f"{prefix}_loss" not in metrics for prefix in prefixes):
            self._said_no_eval_loss = True
            warnings.warn("fastmask: the evaluation's batches carry no labels, so the Trainer reports no eval_loss; "
                          "use fastmask.hf.DataCollatorForLanguageModeling(tokenizer, mask_in_model=True), whose "
                          "width-0 labels make the patched model's loss the eval_loss", UserWarning, stacklevel=2)


def _micro_steps(args, global_step: int, train_dataloader) -> int:
    """The training forwards (one per micro-step) a Trainer makes in its first ``global_step`` optimizer
    steps: every epoch's last step takes the micro-steps left over (transformers' own count)."""
    accumulation = args.gradient_accumulation_steps
    try:
        per_epoch = len(train_dataloader)
    except TypeError:  # no length (an IterableDataset): every step takes `accumulation`
        per_epoch = 0
    if not per_epoch:
        return global_step * accumulation
    steps_per_epoch = max(per_epoch // accumulation + int(per_epoch % accumulation > 0), 1)
    return global_step // steps_per_epoch * per_epoch + global_step % steps_per_epoch * accumulation


def _load_proposal(proposal: torch.nn.Module, folder: str) -> None:
    from safetensors.torch import load_file

    proposal.load_state_dict(load_file(os.path.join(folder, PROPOSAL_FILE)))  # in place: the optimizer's tensors


def _checkpoint_folder(args, global_step: int) -> str | None:
    """The Trainer checkpoint of ``global_step`` holding a proposal net: ``args.resume_from_checkpoint``,
    else ``output_dir/checkpoint-<step>`` (where ``resume_from_checkpoint=True`` finds it)."""
    candidates = [args.resume_from_checkpoint] if isinstance(args.resume_from_checkpoint, str) else []
    candidates.append(os.path.join(args.output_dir, f"checkpoint-{global_step}"))
    for folder in candidates:
        try:
            with open(os.path.join(folder, "trainer_state.json")) as f:
                step = json.load(f).get("global_step")
        except (OSError, ValueError):
            continue
        if step == global_step and os.path.isfile(os.path.join(folder, PROPOSAL_FILE)):
            return folder
    return None
