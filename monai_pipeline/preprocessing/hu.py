"""Check that a scan holds CT values in Hounsfield units before anything is learnt from it or segmented in it.

The check looks at a sample of the voxels (every k-th voxel of the array, about :data:`SAMPLE_VOXELS` of them;
no second copy of the scan) and tells three mistakes apart from a CT in HU:

- a label map given as the scan: at most :data:`LABEL_MAX_VALUES` distinct whole values, none negative;
- a CT stored as HU + 1024 with no rescale in its header: nothing below -200 HU, an air peak near 0 instead of
  -1000 and soft tissue near 1064 instead of 40. It is corrected by subtracting 1024, with a warning;
- anything else with no voxel below -200 HU (no air, no lung, no bowel gas), such as an MR: refused.

A CT in HU always has air below -200 HU: around the patient, in the lungs or in the bowel. Even LiTS's tight crops
around the liver keep a few percent of their voxels there (volume-117: 10 %); clinical MR has none.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import SimpleITK as sitk

from monai_pipeline.errors import InputError

__all__ = ["ensure_hu", "SAMPLE_VOXELS", "AIR_HU", "MIN_AIR_FRACTION", "LABEL_MAX_VALUES", "STORED_OFFSET"]

logger = logging.getLogger(__name__)

SAMPLE_VOXELS = 2_000_000
"""About this many voxels are looked at, whatever the scan's size."""

AIR_HU = -200.0
"""Voxels below this are air, lung or gas (fat is above -150 HU)."""

MIN_AIR_FRACTION = 0.001
"""A CT in HU has at least this fraction of its voxels below :data:`AIR_HU` (the real scans checked: 10-70 %)."""

LABEL_MAX_VALUES = 10
"""A scan with at most this many distinct whole values, none negative, is a label map; so is one of whole values
0-255 that is mostly 0 (a map of many structures, such as TotalSegmentator's 117)."""

STORED_OFFSET = 1024
"""What scanners add to HU to store them unsigned; undone when the header carries no rescale."""

SOFT_TISSUE_HU = (-150.0, 150.0)
"""The band that holds fat, water, muscle, liver and blood; most of a CT's body voxels lie in it."""

MIN_SOFT_TISSUE_FRACTION = 0.4
"""Of the body voxels (above -500 HU once corrected) of an offset CT, at least this fraction lies in
:data:`SOFT_TISSUE_HU` once corrected (the real scans checked: 75-95 %)."""


def ensure_hu(image: sitk.Image, source: str | os.PathLike[str] = "scan") -> sitk.Image:
    """The scan in HU: ``image`` itself, or a corrected copy when it was stored as HU + 1024.

    Args:
        image: a scan as :func:`monai_pipeline.io.read_image` returns it.
        source: the file it came from, named in the messages.

    Raises:
        InputError: the scan is a label map, or does not look like CT in HU (e.g. an MR).
    """
    sample = _sample(sitk.GetArrayViewFromImage(image))
    values = np.unique(sample)
    whole = not np.issubdtype(sample.dtype, np.floating) or bool(np.all(values == np.round(values)))
    if (
        whole
        and values[0] >= 0
        and (len(values) <= LABEL_MAX_VALUES or (values[-1] <= 255 and np.mean(sample == 0) > 0.5))
    ):
        shown = ", ".join(f"{v:g}" for v in values[:LABEL_MAX_VALUES]) + (
            " ..." if len(values) > LABEL_MAX_VALUES else ""
        )
        raise InputError(source, f"looks like a label map, not a CT scan ({len(values)} distinct values: {shown})")
    sample = sample.astype(np.float32, copy=False)
    if np.mean(sample < AIR_HU) >= MIN_AIR_FRACTION:
        return image
    if _offset_ct(sample):
        body = sample[sample > STORED_OFFSET - 500]
        logger.warning(
            "%s: stored as HU + %d with no rescale in its header (air at %.0f, soft tissue at %.0f); "
            "%d subtracted to get HU",
            os.fspath(source),
            STORED_OFFSET,
            np.percentile(sample, 1),
            np.median(body),
            STORED_OFFSET,
        )
        return _subtract_offset(image)
    low, high = np.percentile(sample, (0.5, 99.5))
    raise InputError(
        source,
        f"does not look like CT in HU: no air (below {AIR_HU:g} HU) anywhere, values {low:g} to {high:g} "
        "(an MR or another modality?)",
    )


def _sample(values: np.ndarray) -> np.ndarray:
    """Every k-th voxel of ``values`` (a copy of at most about :data:`SAMPLE_VOXELS`), k sharing no factor with the
    rows and slices' lengths so that the sample sweeps every column rather than the same few."""
    flat = values.reshape(-1)
    step = max(1, flat.size // SAMPLE_VOXELS)
    plane = values.shape[-1] * values.shape[-2] if values.ndim >= 2 else 1
    while math.gcd(step, plane) != 1:
        step += 1
    return np.array(flat[::step])


def _offset_ct(sample: np.ndarray) -> bool:
    """Whether ``sample`` (nothing below -200) is a CT stored as HU + 1024: air near 0 and soft tissue near 1064."""
    hu = sample - STORED_OFFSET
    if np.mean(hu < -700) < MIN_AIR_FRACTION:
        return False
    body = hu[hu > -500]
    if body.size < MIN_AIR_FRACTION * hu.size:
        return False
    soft = np.mean((body >= SOFT_TISSUE_HU[0]) & (body <= SOFT_TISSUE_HU[1]))
    return bool(soft >= MIN_SOFT_TISSUE_FRACTION and SOFT_TISSUE_HU[0] <= np.median(body) <= SOFT_TISSUE_HU[1])


def _subtract_offset(image: sitk.Image) -> sitk.Image:
    """``image - 1024`` in a signed type (unsigned stored values are clamped to int16 first: CT never exceeds it)."""
    unsigned = (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32, sitk.sitkUInt64)
    if image.GetPixelID() in unsigned:
        image = sitk.Clamp(image, sitk.sitkInt16, 0, np.iinfo(np.int16).max)
    return image - STORED_OFFSET
