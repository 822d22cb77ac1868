"""fastmask in the trainers people already run: Hugging Face transformers' Trainer, accelerate, plain loops.

* :func:`apply_fastmask` patches a ``*ForMaskedLM`` model in place: masks made on its device
  inside ``forward``, the vocabulary head run on the masked tokens only.
* :class:`FastMaskCallback` reports, at the Trainer's logs, labelled tokens dropped for capacity.
"""

from fastmask.hf.patch import SUPPORTED_MODELS, FastMaskCallback, FastMaskedLMOutput, FastMaskState, apply_fastmask

__all__ = ["SUPPORTED_MODELS", "FastMaskCallback", "FastMaskState", "FastMaskedLMOutput", "apply_fastmask"]
