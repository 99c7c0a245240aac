"""Synthetic LiTS-like CT phantoms (abdomen, chest or pelvis, three contrast phases) with liver and tumour labels,
and datasets of them in LiTS or MSD layout."""

from __future__ import annotations

from monai_pipeline.synth.anatomy import Anatomy, sample_anatomy
from monai_pipeline.synth.contrast import LESION_KINDS, PHASES, TISSUE_RANGES
from monai_pipeline.synth.dataset import FOV_MIX, LAYOUTS, case_grid, case_settings, write_synthetic_dataset
from monai_pipeline.synth.phantom import (
    FIELDS_OF_VIEW,
    default_thickness,
    direction_cosines,
    make_phantom,
    phantom_geometry,
)

__all__ = [
    "FIELDS_OF_VIEW",
    "FOV_MIX",
    "LAYOUTS",
    "LESION_KINDS",
    "PHASES",
    "TISSUE_RANGES",
    "Anatomy",
    "case_grid",
    "case_settings",
    "default_thickness",
    "direction_cosines",
    "make_phantom",
    "phantom_geometry",
    "sample_anatomy",
    "write_synthetic_dataset",
]
