"""The one preprocessing path used by ``data_prep`` and by inference: reorient, crop, resample, normalise."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import SimpleITK as sitk

from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.preprocessing.crop import body_box, crop_geometry, foreground_box, union_box
from monai_pipeline.preprocessing.intensity import normalize
from monai_pipeline.preprocessing.resample import (
    anisotropic_axis,
    reoriented_geometry,
    resample_onto,
    resample_to_spacing,
)

__all__ = ["PreprocessedCase", "preprocess", "restore"]


@dataclass
class PreprocessedCase:
    """A scan (and optionally its label) ready for the network.

    Attributes:
        image: the normalised float32 image on the target grid.
        label: the uint8 label map on the same grid, when a label was given.
        original: the geometry of the scan as read, onto which predictions are put back.
        record: what was done (crop box, grids, anisotropic axis), for the case's record.
    """

    image: sitk.Image
    label: sitk.Image | None
    original: Geometry
    record: dict[str, Any] = field(default_factory=dict)


def preprocess(image: sitk.Image, config: PreprocessingConfig, label: sitk.Image | None = None) -> PreprocessedCase:
    """Turn a CT in HU (and its label map) into network input as ``config`` says.

    The crop and the reorientation are worked out on the geometry alone, and every output voxel is interpolated
    straight from the scan in one resampling (two for anisotropic scans), so no full-size copy is made.

    Args:
        image: the CT in HU on its own grid.
        config: the preprocessing parameters.
        label: an optional label map on exactly the image's grid; it is kept whole even where it lies outside the
            body crop.
    """
    original = Geometry.of(image)
    box = ((0, 0, 0), original.size)
    if config.crop_to_body:
        box = body_box(image, config.body_threshold, config.crop_margin_mm)
        if label is not None:
            box = union_box(box, foreground_box(label))
    frame = reoriented_geometry(crop_geometry(original, box), config.orientation)
    resampled = resample_to_spacing(
        image,
        config.spacing,
        frame=frame,
        interpolator=config.image_interpolator,
        anisotropy_threshold=config.anisotropy_threshold,
        anisotropic_axis_interpolator=config.anisotropic_axis_interpolator,
        default_value=config.background_hu,
    )
    grid = Geometry.of(resampled)
    out_label = None
    if label is not None:
        out_label = resample_onto(label, grid, "nearest", output_pixel_type=sitk.sitkUInt8)
    normalised = normalize(resampled, config)
    del resampled
    record = {
        "original": original.to_dict(),
        "crop_box": {"start": list(box[0]), "size": list(box[1])},
        "frame": frame.to_dict(),
        "preprocessed": grid.to_dict(),
        "anisotropic_axis": anisotropic_axis(frame.spacing, config.spacing, config.anisotropy_threshold),
    }
    return PreprocessedCase(image=normalised, label=out_label, original=original, record=record)


def restore(image: sitk.Image, original: Geometry, interpolator: str = "nearest") -> sitk.Image:
    """Put a preprocessed-grid image (a label map with ``"nearest"``, a probability map with ``"linear"``) back onto
    the scan's own grid; outside the cropped region it is 0 (background)."""
    return resample_onto(image, original, interpolator, default_value=0.0)
