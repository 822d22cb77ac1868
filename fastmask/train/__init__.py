"""The training application: ``fastmask pretrain``, built on the op library and its strategy layer.

config      the flags (one table), presets and checks
model       BERT with fastmask's sparse head and masking strategies
run_folder  the run's folder, records, checkpoints, export, curves
loop        the training loop and ``main``
"""

from fastmask.train.config import Config
from fastmask.train.loop import main, train

__all__ = ["Config", "main", "train"]
