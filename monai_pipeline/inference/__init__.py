"""Inference on new scans: masks in the scan's own geometry, lesion measurements, probability maps, previews."""

from __future__ import annotations

from monai_pipeline._lazy import lazy_exports

_EXPORTS = {
    "BundleInference": "bundle",
    "make_inferer": "bundle",
    "scan_list": "bundle",
    "Lesion": "lesions",
    "measure_lesions": "lesions",
    "scan_summary": "lesions",
    "LoadedModel": "model",
    "load_model": "model",
    "PostprocessConfig": "postprocess",
    "postprocess": "postprocess",
    "QualityFlag": "quality",
    "InferSummary": "run",
    "find_scans": "run",
    "infer": "run",
    "Segmentation": "segment",
    "segment": "segment",
}
"""Each public name and the submodule defining it; a submodule (and torch or MONAI behind it) loads on first use."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
