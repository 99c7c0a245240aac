"""Every parameter of the preprocessing, in one record that ``data_prep`` writes and inference reads back."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from monai_pipeline.errors import InputError

__all__ = ["PreprocessingConfig", "IntensityStats", "DEFAULT_SPACING", "DEFAULT_WINDOW"]

DEFAULT_SPACING: tuple[float, float, float] = (1.5, 1.5, 1.5)
"""Target voxel size in mm (x, y, z) after resampling."""

DEFAULT_WINDOW: tuple[float, float] = (-100.0, 200.0)
"""Liver window in HU (level 50, width 300): clipped to it, then scaled to [0, 1]."""

INTERPOLATORS = ("linear", "bspline", "nearest")
NORMALIZATIONS = ("window", "zscore")
FORMAT_VERSION = 1
_AXIS_OF = {"R": "x", "L": "x", "A": "y", "P": "y", "S": "z", "I": "z"}


@dataclass(frozen=True)
class IntensityStats:
    """HU statistics inside the liver over a whole training set, for the ``zscore`` normalisation (as nnU-Net's CT
    scheme): clip to the 0.5 and 99.5 percentiles, subtract the mean, divide by the standard deviation."""

    percentile_00_5: float
    percentile_99_5: float
    mean: float
    std: float


@dataclass(frozen=True)
class PreprocessingConfig:
    """How a CT is turned into network input; written to ``preprocessing.json`` and repeated exactly at inference.

    Attributes:
        spacing: target voxel size in mm along (x, y, z) of the reoriented image.
        orientation: axis code the image is reoriented to before resampling (``"RAS"``: as NIfTI readers show it).
        image_interpolator: ``"linear"`` or ``"bspline"`` for the CT.
        label_interpolator: always nearest neighbour for label maps.
        anisotropy_threshold: when one axis's spacing (source or target) exceeds this many times the finest, the image
            is resampled in-plane first and then along that axis with ``anisotropic_axis_interpolator`` (nnU-Net's
            "separate z" scheme, which avoids smearing across thick slices).
        anisotropic_axis_interpolator: interpolation along the coarse axis of an anisotropic image.
        normalization: ``"window"`` (clip to ``window`` and scale to [0, 1]) or ``"zscore"``.
        window: HU window for ``"window"``.
        intensity_stats: dataset statistics for ``"zscore"``, filled in from the fingerprint by ``data_prep``.
        crop_to_body: crop to the bounding box of the body (largest component above ``body_threshold`` HU) plus
            ``crop_margin_mm``; the crop is undone at inference by resampling back onto the scan's grid.
        body_threshold: HU above which a voxel may be body.
        crop_margin_mm: margin kept around the body.
        background_hu: HU used outside the scan's field of view.
    """

    spacing: tuple[float, float, float] = DEFAULT_SPACING
    orientation: str = "RAS"
    image_interpolator: str = "linear"
    label_interpolator: str = "nearest"
    anisotropy_threshold: float = 3.0
    anisotropic_axis_interpolator: str = "nearest"
    normalization: str = "window"
    window: tuple[float, float] = DEFAULT_WINDOW
    intensity_stats: IntensityStats | None = None
    crop_to_body: bool = True
    body_threshold: float = -500.0
    crop_margin_mm: float = 10.0
    background_hu: float = -1024.0
    labels: dict[str, str] = field(default_factory=lambda: {"0": "background", "1": "liver", "2": "tumour"})

    def __post_init__(self) -> None:
        spacing = tuple(float(v) for v in self.spacing)
        window = tuple(float(v) for v in self.window)
        if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise ValueError(f"spacing must be three positive numbers in mm, got {self.spacing}.")
        if len(window) != 2 or not all(map(math.isfinite, window)) or window[0] >= window[1]:
            raise ValueError(f"window must be LO HI with LO < HI, got {self.window}.")
        for name in ("image_interpolator", "anisotropic_axis_interpolator"):
            if getattr(self, name) not in INTERPOLATORS:
                raise ValueError(f"{name} must be one of {INTERPOLATORS}, got {getattr(self, name)!r}.")
        if self.label_interpolator != "nearest":
            raise ValueError(f"label_interpolator must be 'nearest', got {self.label_interpolator!r}.")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}.")
        code = str(self.orientation).upper()
        if len(code) != 3 or sorted(_AXIS_OF.get(c, "?") for c in code) != ["x", "y", "z"]:
            raise ValueError(f"orientation must name each axis once, e.g. 'RAS' or 'LPS', got {self.orientation!r}.")
        numbers = ("anisotropy_threshold", "body_threshold", "crop_margin_mm", "background_hu")
        if not all(math.isfinite(float(getattr(self, name))) for name in numbers):
            raise ValueError(f"{', '.join(numbers)} must be finite numbers.")
        if self.anisotropy_threshold <= 1:
            raise ValueError(f"anisotropy_threshold must be > 1, got {self.anisotropy_threshold}.")
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "window", window)
        object.__setattr__(self, "orientation", code)
        for name in numbers:
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "crop_to_body", bool(self.crop_to_body))

    def with_stats(self, stats: IntensityStats) -> PreprocessingConfig:
        """A copy carrying the dataset's intensity statistics."""
        return replace(self, intensity_stats=stats)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of every parameter."""
        data = asdict(self)
        data["spacing"] = list(self.spacing)
        data["window"] = list(self.window)
        return {"format_version": FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error so that a newer record is not misread."""
        data = dict(data)
        version = data.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"preprocessing record format {version} is not supported (expected {FORMAT_VERSION}).")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing parameter(s): {', '.join(unknown)}.")
        if data.get("intensity_stats") is not None:
            data["intensity_stats"] = IntensityStats(**data["intensity_stats"])
        for key in ("spacing", "window"):
            if key in data:
                data[key] = tuple(float(v) for v in data[key])
        return cls(**data)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the record as JSON, atomically."""
        from monai_pipeline.io.writer import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PreprocessingConfig:
        """Read a record written by :meth:`save`.

        Raises:
            InputError: the file is missing or is not a valid record.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "no preprocessing record here (made by `monai-pipeline prepare`)")
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (ValueError, TypeError) as err:
            raise InputError(path, f"not a valid preprocessing record: {err}") from err

    def digest(self) -> str:
        """A short hash of every parameter, used to tell whether a prepared case is up to date."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
