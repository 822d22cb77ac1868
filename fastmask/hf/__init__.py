"""fastmask in the trainers people already run: Hugging Face transformers' Trainer, accelerate, plain loops.
This subpackage needs transformers.

* :class:`DataCollatorForLanguageModeling` is a drop-in for transformers' collator: changing the
  import is the migration; it masks with fastmask's C++ kernel, whole words included.
  :class:`DataCollatorForWholeWordMask` stands in for transformers 4.x's class of that name.
* :func:`apply_fastmask` patches a ``*ForMaskedLM`` model in place: masks made on its device
  inside ``forward``, the vocabulary head run on the masked tokens only.
* :class:`FastMaskCallback` reports, at the Trainer's logs, labelled tokens dropped for capacity.
"""

from fastmask.hf.collator import DataCollatorForLanguageModeling, DataCollatorForWholeWordMask
from fastmask.hf.patch import SUPPORTED_MODELS, FastMaskCallback, FastMaskedLMOutput, FastMaskState, apply_fastmask

__all__ = ["SUPPORTED_MODELS", "DataCollatorForLanguageModeling", "DataCollatorForWholeWordMask", "FastMaskCallback",
           "FastMaskState", "FastMaskedLMOutput", "apply_fastmask"]
