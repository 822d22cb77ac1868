"""fastmask: fused GPU kernels for the masking side of masked-language-model pretraining."""

from fastmask.ops import (
    MaskedBatch,
    MaskedPositions,
    check_capacity,
    fully_explored_mask,
    gather_masked,
    mask_tokens,
    maskable_mask,
    masked_positions,
)
from fastmask.sparse import sparse_mlm_loss

__version__ = "0.1.0"
__all__ = [
    "MaskedBatch",
    "MaskedPositions",
    "check_capacity",
    "fully_explored_mask",
    "gather_masked",
    "mask_tokens",
    "maskable_mask",
    "masked_positions",
    "sparse_mlm_loss",
    "__version__",
]
