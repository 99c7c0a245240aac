"""Liver and liver-tumour segmentation of CT with MONAI: preprocessing, training, inference and evaluation."""

from __future__ import annotations

from monai_pipeline._lazy import lazy_exports

__version__ = "0.1.0"

LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "tumour"}
"""Label values of every mask the pipeline reads or writes (the LiTS convention)."""

# subpackages are imported on first use, so that ``import monai_pipeline`` is enough in bundle expressions
# (``$monai_pipeline.training.fold_files(...)``) and stays quick
__getattr__, __dir__ = lazy_exports(__name__, {})
