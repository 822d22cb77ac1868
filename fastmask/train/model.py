"""The model ``fastmask pretrain`` trains: transformers' BERT encoder with fastmask's sparse MLM
head, masked by the shared strategy layer (:mod:`fastmask.strategy`), MAPNet's proposal net
included."""

from __future__ import annotations

import torch
from torch import nn

from fastmask.strategy import MaskingStrategy
from fastmask.train.config import Config


class Pretrainer(nn.Module):
    """One module computing the step's loss, so DDP sees every parameter in one forward."""

    def __init__(self, cfg: Config, tokenizer):
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
        # The HF baseline masks on the CPU (the loop's _batch_transfer): its strategy here serves the
        # evaluation masks and the special ids (never masked, on either path), common to every --masking.
        self.masking = MaskingStrategy.from_tokenizer(masking, tokenizer, vocab_size=cfg.vocab_size, seed=cfg.seed,
                                                      proposal=proposal)

    def forward(self, ids: torch.Tensor, sample_ids: torch.Tensor, data_epoch: torch.Tensor,
                hf_labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(MLM loss, MAPNet objective) of one micro-batch; ids are uncorrupted (B, L).

        The masks are keyed by the sample ids and `data_epoch` (the ops' epoch, the mask counter), a
        0-dim int64 tensor on the device, read by the masking kernels: a compiled forward does not
        specialise on it (one graph for every data epoch).

        With `hf_labels` (the baseline), ids are already masked and the dense head computes the loss.
        """
        if hf_labels is not None:
            return self.mlm(input_ids=ids, labels=hf_labels).loss, ids.new_zeros((), dtype=torch.float32)
        step = self.masking(ids, row_ids=sample_ids, epoch=data_epoch)
        losses = self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls)
        return losses.loss, losses.objective

    def eval_loss(self, ids: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
        """MLM loss under the strategies' common evaluation masks (plain random, fixed seed)."""
        step = self.masking.evaluation(ids, row_ids=sample_ids)
        return self.masking.losses(step, self.mlm.bert(input_ids=step.input_ids)[0], self.mlm.cls).loss
