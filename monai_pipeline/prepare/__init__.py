"""Preparation of a raw LiTS / MSD Task03_Liver dataset: discovery, fingerprint, preprocessing, datalist."""

from __future__ import annotations

from monai_pipeline.prepare.discover import RawCase, find_cases
from monai_pipeline.prepare.run import PrepareSummary, prepare_dataset

__all__ = ["PrepareSummary", "RawCase", "find_cases", "prepare_dataset"]
