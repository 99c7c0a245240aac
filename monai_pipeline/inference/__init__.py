"""Inference on new scans: masks in the scan's own geometry, lesion measurements, probability maps, previews."""

from __future__ import annotations

from monai_pipeline.inference.bundle import BundleInference, make_inferer, scan_list
from monai_pipeline.inference.lesions import Lesion, measure_lesions, scan_summary
from monai_pipeline.inference.model import LoadedModel, load_model
from monai_pipeline.inference.postprocess import PostprocessConfig, postprocess
from monai_pipeline.inference.quality import QualityFlag
from monai_pipeline.inference.run import InferSummary, find_scans, infer
from monai_pipeline.inference.segment import Segmentation, segment

__all__ = [
    "BundleInference",
    "InferSummary",
    "Lesion",
    "LoadedModel",
    "PostprocessConfig",
    "QualityFlag",
    "Segmentation",
    "find_scans",
    "infer",
    "load_model",
    "make_inferer",
    "measure_lesions",
    "postprocess",
    "scan_list",
    "scan_summary",
    "segment",
]
