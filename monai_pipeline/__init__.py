"""Liver and liver-tumour segmentation of CT with MONAI: preprocessing, training, inference and evaluation."""

from __future__ import annotations

__version__ = "0.1.0"

LABELS: dict[int, str] = {0: "background", 1: "liver", 2: "tumour"}
"""Label values of every mask the pipeline reads or writes (the LiTS convention)."""

_SUBPACKAGES = ("commands", "evaluation", "inference", "io", "prepare", "preprocessing", "synth", "training")


def __getattr__(name: str):
    """Import subpackages on first use, so that ``import monai_pipeline`` is enough in bundle expressions
    (``$monai_pipeline.training.fold_files(...)``) and stays quick."""
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
