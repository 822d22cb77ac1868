"""The model ``fastmask pretrain`` trains: transformers' BERT encoder with fastmask's sparse MLM
head, masked by the shared strategy layer (:mod:`fastmask.strategy`), MAPNet's proposal net
included."""

from __future__ import annotations

import torch
from torch import nn

from fastmask import baselines
from fastmask.data.loader import Batch
from fastmask.strategy import MaskingStrategy
from fastmask.train.config import Config


class Pretrainer(nn.Module):
    """One module computing the step's loss, so DDP sees every parameter in one forward."""

    def __init__(self, cfg: Config, tokenizer, rank: int = 0):
        super().__init__()
        from transformers import BertConfig, BertForMaskedLM

        self.cfg = cfg
        config = BertConfig(
            vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
            max_position_embeddings=cfg.seq_len, pad_token_id=tokenizer.pad_token_id, attn_implementation="sdpa",
        )
        self.mlm = BertForMaskedLM(config)
        masking = cfg.masking_config()  # the HF baseline's is random's: see below
        proposal = None
        if masking.masking == "mapnet":
            proposal = masking.proposal_net(self.mlm.bert.embeddings.word_embeddings, max_len=cfg.seq_len)
        # The HF baseline masks on the CPU (HFBaseline.inputs): its strategy here serves the evaluation
        # masks and the special ids (never masked, on either path), common to every --masking.
        self.masking = MaskingStrategy.from_tokenizer(masking, tokenizer, vocab_size=cfg.vocab_size, seed=cfg.seed,
                                                      proposal=proposal)

    def inputs(self, batch: Batch, data_epoch: torch.Tensor, timer) -> tuple[torch.Tensor, ...]:
        """forward's arguments for a batch read on the host: the rows and sample ids copied to the
        device (asynchronously from pinned memory), and the data epoch written into `data_epoch`, a
        0-dim int64 tensor on the device, in place (no host sync)."""
        device = data_epoch.device
        data_epoch.fill_(batch.data_epoch)
        return batch.rows.to(device, non_blocking=True), batch.sample_ids.to(device, non_blocking=True), data_epoch

    def set_mlm_probability(self, p: float) -> None:
        """The masking rate of the next steps (a rate schedule): a device value the kernels read."""
        self.masking.set_mlm_probability(p)

    def forward(self, ids: torch.Tensor, sample_ids: torch.Tensor, data_epoch: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(MLM loss, MAPNet objective) of one micro-batch; ids are uncorrupted (B, L).

        The masks are keyed by the sample ids and `data_epoch` (the ops' epoch, the mask counter), a
        0-dim int64 tensor on the device, read by the masking kernels: a compiled forward does not
        specialise on it (one graph for every data epoch).
        """
        step = self.masking(ids, row_ids=sample_ids, epoch=data_epoch)
        losses = self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls)
        return losses.loss, losses.objective

    def eval_loss(self, ids: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """MLM loss under the strategies' common evaluation masks (plain random, fixed seed)."""
        step = self.masking.evaluation(ids, row_ids=sample_ids)
        return self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls).loss


class HFBaseline(Pretrainer):
    """``--masking hf``: the same model trained the way most users do today. Transformers' collator
    masks each batch on the CPU (timed as masking) and BertForMaskedLM's dense head computes the
    loss; the tokens fastmask never masks (the tokenizer's special tokens) are never masked here
    either. Evaluation is the common one (Pretrainer.eval_loss)."""

    def __init__(self, cfg: Config, tokenizer, rank: int = 0):
        super().__init__(cfg, tokenizer, rank)
        self.collator = baselines.hf_collator(tokenizer, cfg.mlm_probability, cfg.mask_replace_prob,
                                              cfg.random_replace_prob)
        self.collator.generator = torch.Generator().manual_seed(cfg.seed * 7919 + rank)

    def set_mlm_probability(self, p: float) -> None:
        self.collator.mlm_probability = p  # the collator masks on the host: a float it reads per batch

    def inputs(self, batch: Batch, data_epoch: torch.Tensor, timer) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked ids, labels) on the device, masked by the collator on the CPU."""
        with timer.on_the_cpu():
            rows = batch.rows
            special = torch.isin(rows, self.masking.special_ids.cpu())
            ids, labels = self.collator.torch_mask_tokens(rows.long(), special_tokens_mask=special)
            device = data_epoch.device
            return ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mlm(input_ids=ids, labels=labels).loss, ids.new_zeros((), dtype=torch.float32)
