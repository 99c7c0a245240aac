"""The single preprocessing implementation shared by ``data_prep`` and inference."""

from __future__ import annotations

from monai_pipeline.preprocessing.config import DEFAULT_SPACING, DEFAULT_WINDOW, IntensityStats, PreprocessingConfig
from monai_pipeline.preprocessing.hu import ensure_hu
from monai_pipeline.preprocessing.pipeline import PreprocessedCase, preprocess, restore
from monai_pipeline.preprocessing.resample import reorient, resample_onto, resample_to_spacing, target_grid

__all__ = [
    "DEFAULT_SPACING",
    "DEFAULT_WINDOW",
    "IntensityStats",
    "PreprocessedCase",
    "PreprocessingConfig",
    "ensure_hu",
    "preprocess",
    "reorient",
    "resample_onto",
    "resample_to_spacing",
    "restore",
    "target_grid",
]
