"""The single preprocessing implementation shared by ``data_prep`` and inference."""

from __future__ import annotations

from monai_pipeline._lazy import lazy_exports

_EXPORTS = {
    "DEFAULT_SPACING": "config",
    "DEFAULT_WINDOW": "config",
    "IntensityStats": "config",
    "PreprocessingConfig": "config",
    "ensure_hu": "hu",
    "PreprocessedCase": "pipeline",
    "preprocess": "pipeline",
    "restore": "pipeline",
    "reorient": "resample",
    "resample_onto": "resample",
    "resample_to_spacing": "resample",
    "target_grid": "resample",
}
"""Each public name and the submodule defining it; a submodule (and torch or MONAI behind it) loads on first use."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
