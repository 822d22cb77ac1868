"""fastmask: fused GPU kernels for the masking side of masked-language-model pretraining."""

from fastmask.counts import gather_capacity, mask_rate, masked_count, set_mask_rate, span_length_distribution
from fastmask.mapnet import MaskProposalNet, mapnet_loss, proposal_log_q
from fastmask import ops
from fastmask.ops import *  # noqa: F403 (every op's public wrapper and its result type: fastmask.ops.__all__)
from fastmask.sparse import sparse_mlm_loss
from fastmask.strategy import MaskingStrategy
from fastmask.words import word_start_from_offsets, word_start_table
from fastmask.masking_config import MaskingConfig  # noqa: F401 (exported: the masking settings)

__version__ = "0.1.0"
__all__ = [
    "MaskProposalNet",
    "MaskingStrategy",
    "gather_capacity",
    "mapnet_loss",
    "mask_rate",
    "masked_count",
    "proposal_log_q",
    "set_mask_rate",
    "sparse_mlm_loss",
    "span_length_distribution",
    "word_start_from_offsets",
    "word_start_table",
    *ops.__all__,  # the wrappers of the op table's ops (fastmask.library.OPS) and their types
    "__version__",
]
