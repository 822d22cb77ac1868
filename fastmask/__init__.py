"""fastmask: fused GPU kernels for the masking side of masked-language-model pretraining."""

from fastmask.counts import gather_capacity, masked_count
from fastmask.mapnet import MaskProposalNet, mapnet_loss, proposal_log_q
from fastmask.ops import (
    MaskedBatch,
    MaskedPositions,
    ProposalBatch,
    check_capacity,
    fully_explored_mask,
    gather_masked,
    mask_tokens,
    maskable_mask,
    masked_positions,
    proposal_mask,
)
from fastmask.sparse import sparse_mlm_loss
from fastmask.strategy import MaskingStrategy
from fastmask.masking_config import MaskingConfig  # noqa: F401 (exported: the masking settings)

__version__ = "0.1.0"
__all__ = [
    "MaskProposalNet",
    "MaskedBatch",
    "MaskingStrategy",
    "MaskedPositions",
    "ProposalBatch",
    "check_capacity",
    "fully_explored_mask",
    "gather_capacity",
    "gather_masked",
    "mask_tokens",
    "maskable_mask",
    "mapnet_loss",
    "masked_count",
    "masked_positions",
    "proposal_log_q",
    "proposal_mask",
    "sparse_mlm_loss",
    "__version__",
]
