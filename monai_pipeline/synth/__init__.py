"""Synthetic LiTS-like CT phantoms with liver and tumour labels, and datasets of them in LiTS or MSD layout."""

from __future__ import annotations

from monai_pipeline.synth.anatomy import Anatomy, sample_anatomy
from monai_pipeline.synth.dataset import LAYOUTS, case_grid, write_synthetic_dataset
from monai_pipeline.synth.phantom import direction_cosines, make_phantom, phantom_geometry

__all__ = [
    "LAYOUTS",
    "Anatomy",
    "case_grid",
    "direction_cosines",
    "make_phantom",
    "phantom_geometry",
    "sample_anatomy",
    "write_synthetic_dataset",
]
