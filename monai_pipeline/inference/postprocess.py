"""Post-processing of a predicted mask on the scan's grid: one liver, tumours only in it, no specks, and no liver
at all rather than a small spurious one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from monai_pipeline.inference.components import CONNECTIVITY, SlabComponents, label_slabs, value_box
from monai_pipeline.inference.quality import NO_LIVER_ML
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.crop import array_box

__all__ = [
    "PostprocessConfig",
    "postprocess",
    "largest_foreground",
    "liver_region",
    "most_probable_foreground",
    "mask_box",
    "CONNECTIVITY",
]


@dataclass(frozen=True)
class PostprocessConfig:
    """Which post-processing steps run.

    Attributes:
        keep_largest_liver: keep only the largest connected liver (liver and tumour voxels together).
        tumour_in_liver: drop tumours (connected components) with no voxel within ``liver_margin_mm`` of the liver.
        liver_margin_mm: how far beyond the liver a tumour may reach (tumours on the liver's rim bulge out).
        min_lesion_ml: tumour components smaller than this become liver (0 keeps every lesion).
        min_liver_ml: a liver (liver and tumour voxels, after keeping the largest) smaller than this is no liver:
            the mask is emptied (0 keeps any liver). See :data:`~monai_pipeline.inference.quality.NO_LIVER_ML`.
    """

    keep_largest_liver: bool = True
    tumour_in_liver: bool = True
    liver_margin_mm: float = 10.0
    min_lesion_ml: float = 0.05
    min_liver_ml: float = NO_LIVER_ML

    @classmethod
    def off(cls) -> PostprocessConfig:
        """No post-processing at all."""
        return cls(keep_largest_liver=False, tumour_in_liver=False, min_lesion_ml=0.0, min_liver_ml=0.0)


def postprocess(
    labels: np.ndarray, geometry: Geometry, config: PostprocessConfig | None = None, *, copy: bool = True
) -> np.ndarray:
    """Apply ``config`` to a label map (z, y, x) with 0 background, 1 liver, 2 tumour.

    Only the bounding box of the foreground is processed, and it slab by slab (see
    :mod:`~monai_pipeline.inference.components`): besides the mask, the memory is that of a slab, whatever the mask
    holds.

    Args:
        labels: the label map.
        geometry: its grid (the spacing turns voxels into mL and mm).
        config: the steps (default: all on).
        copy: return a new array (default); ``False`` changes ``labels`` itself, which must then be uint8.
    """
    config = config or PostprocessConfig()
    if copy:
        out = np.array(labels, dtype=np.uint8, copy=True)
    elif labels.dtype != np.uint8:
        raise ValueError(f"postprocess(copy=False) needs a uint8 label map, got {labels.dtype}.")
    else:
        out = labels
    box = mask_box(out)
    if box is None:
        return out
    part = out[box]
    spacing_zyx = np.asarray(geometry.spacing[::-1], dtype=float)
    voxel_ml = float(np.prod(spacing_zyx)) / 1000.0
    liver_voxels = _keep_largest(part) if config.keep_largest_liver else int(np.count_nonzero(part))
    if liver_voxels * voxel_ml < config.min_liver_ml:
        part[...] = 0
        return out
    if config.tumour_in_liver or config.min_lesion_ml > 0:
        _tidy_tumours(part, spacing_zyx, config)
    return out


def _keep_largest(part: np.ndarray) -> int:
    """Empty every liver (liver and tumour voxels) of ``part`` but the largest, in place; returns its voxels (the
    first largest in raster order on a tie)."""
    components = label_slabs(lambda zs: part[zs] != 0, part.shape)
    if components.count == 0:
        return 0
    keep = int(np.argmax(components.sizes[1:])) + 1
    if components.count > 1:
        for index, zs in enumerate(components.slabs):
            slab = part[zs]
            slab[components.labels(index, slab != 0) != keep] = 0
    return int(components.sizes[keep])


def _tidy_tumours(part: np.ndarray, spacing_zyx: np.ndarray, config: PostprocessConfig) -> None:
    """Drop the tumours away from the liver and turn the small ones into liver, in place.

    The tumours are labelled once, in their box widened by the margin (the liver that matters lies within it);
    dropping some components leaves the others as they were, so the size step uses the same components.
    """
    tumour_box = value_box(part, lambda slab: slab == 2)
    if tumour_box is None:
        return
    reach = np.ceil(config.liver_margin_mm / spacing_zyx).astype(int) if config.tumour_in_liver else (0, 0, 0)
    around = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(tumour_box, reach, part.shape))
    region = part[around]
    components = label_slabs(lambda zs: region[zs] == 2, region.shape)
    drop = np.zeros(components.count + 1, dtype=bool)
    if config.tumour_in_liver:
        drop[1:] = ~_near_liver(region, components, spacing_zyx, config.liver_margin_mm)[1:]
    small = np.zeros_like(drop)
    if config.min_lesion_ml > 0:
        small[1:] = components.sizes[1:] * (float(np.prod(spacing_zyx)) / 1000.0) < config.min_lesion_ml
        small &= ~drop
    if not drop.any() and not small.any():
        return
    for index, zs in enumerate(components.slabs):
        slab = region[zs]
        numbers = components.labels(index, slab == 2)
        slab[drop[numbers]] = 0
        slab[small[numbers]] = 1


DISTANCE_VOXELS = 8_000_000
"""Voxels (a slab with the margin above and below it) of one distance map: about 7 bytes each."""


def _near_liver(
    region: np.ndarray, components: SlabComponents, spacing_zyx: np.ndarray, margin_mm: float
) -> np.ndarray:
    """For each component number: True when one of its voxels lies within ``margin_mm`` of a liver voxel (label 1)
    of ``region``. The distance to the liver is taken in slabs, each with the liver up to the margin above and below
    it, with SimpleITK's Maurer distance map (float32 squared distances in mm, a few bytes a voxel)."""
    near = np.zeros(components.count + 1, dtype=bool)
    depth, plane = region.shape[0], int(np.prod(region.shape[1:]))
    reach = int(np.ceil(margin_mm / spacing_zyx[0]))
    step = max(1, DISTANCE_VOXELS // max(plane, 1) - 2 * reach)
    # float32 rounding of a squared distance that is exactly the margin must not drop it
    limit = margin_mm**2 * (1 + 1e-6)
    for index, zs in enumerate(components.slabs):
        numbers = components.labels(index, region[zs] == 2)
        for start in range(zs.start, zs.stop, step):
            stop = min(start + step, zs.stop)
            inside = numbers[start - zs.start : stop - zs.start]
            if not inside.any():
                continue
            low, high = max(start - reach, 0), min(stop + reach, depth)
            liver = (region[low:high] == 1).view(np.uint8)
            if not liver.any():
                continue
            image = sitk.GetImageFromArray(liver)
            image.SetSpacing([float(s) for s in spacing_zyx[::-1]])
            squared = sitk.SignedMaurerDistanceMap(
                image, insideIsPositive=False, squaredDistance=True, useImageSpacing=True
            )
            close = sitk.GetArrayViewFromImage(squared)[start - low : stop - low] <= limit
            near[np.unique(inside[close])] = True
    near[0] = False
    return near


def most_probable_foreground(liver: np.ndarray, tumour: np.ndarray) -> np.ndarray:
    """Where liver or tumour is the most probable class, background being 1 - liver - tumour (the voxels that the
    argmax labels 1 or 2)."""
    background = 1.0 - liver - tumour
    return (liver > background) | (tumour > background)


def largest_foreground(probabilities: np.ndarray) -> np.ndarray | None:
    """The largest connected region where liver or tumour is the most probable class, on the network's own grid.

    ``probabilities`` are softmax outputs (C, z, y, x) with background, liver and tumour (background taken as
    1 - liver - tumour). Returns a boolean (z, y, x) mask of that region, or ``None`` when there is at most one
    region (nothing to drop). Choosing the liver where the network made its decision, before anything is resampled
    onto the scan's finer grid, costs a fraction of doing it there and lets the way back skip the dropped regions;
    :func:`postprocess` then still keeps the largest liver on the scan's grid.
    """
    return _largest_region(most_probable_foreground(probabilities[1], probabilities[2]))


def liver_region(
    probabilities: np.ndarray, voxel_ml: float, config: PostprocessConfig
) -> tuple[np.ndarray | None, np.ndarray, float]:
    """The liver as ``config`` keeps it on the network's own grid, before the way back to the scan's grid.

    Args:
        probabilities: softmax outputs (C, z, y, x): background, liver, tumour.
        voxel_ml: the volume of one voxel of their grid.
        config: the post-processing (``keep_largest_liver`` and ``min_liver_ml`` act here).

    Returns:
        The region outside of which liver and tumour count as background (``None``: nowhere, an all-False mask when
        the liver is below ``config.min_liver_ml``), the voxels where liver or tumour wins inside it, and their
        volume in mL before any emptying.
    """
    foreground = most_probable_foreground(probabilities[1], probabilities[2])
    region = _largest_region(foreground) if config.keep_largest_liver else None
    kept = foreground if region is None else region
    volume_ml = np.count_nonzero(kept) * voxel_ml
    if volume_ml < config.min_liver_ml:
        region = np.zeros(foreground.shape, dtype=bool)
    return region, kept, volume_ml


def _largest_region(foreground: np.ndarray) -> np.ndarray | None:
    """The largest connected region of ``foreground``, or ``None`` when it has at most one (labelled slab by slab)."""
    box = mask_box(foreground)
    if box is None:
        return None
    part = foreground[box]
    components = label_slabs(lambda zs: part[zs], part.shape)
    if components.count <= 1:
        return None
    keep = int(np.argmax(components.sizes[1:])) + 1
    region = np.zeros(foreground.shape, dtype=bool)
    inside = region[box]
    for index, zs in enumerate(components.slabs):
        inside[zs] = components.labels(index, part[zs]) == keep
    return region


def mask_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (z, y, x slices) holding every non-zero voxel of ``mask``, or ``None`` when there is none
    (:func:`~monai_pipeline.preprocessing.crop.array_box` as slices)."""
    box = array_box(mask)
    if box is None:
        return None
    (x, y, z), (sx, sy, sz) = box
    return slice(z, z + sz), slice(y, y + sy), slice(x, x + sx)
