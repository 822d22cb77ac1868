"""fastmask: fused GPU kernels for the masking side of masked-language-model pretraining."""

from fastmask.ops import MaskedBatch, fully_explored_mask, mask_tokens, maskable_mask

__version__ = "0.1.0"
__all__ = ["MaskedBatch", "fully_explored_mask", "mask_tokens", "maskable_mask", "__version__"]
