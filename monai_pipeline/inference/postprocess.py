"""Post-processing of a predicted mask on the scan's grid: one liver, tumours only in it, no specks, and no liver
at all rather than a small spurious one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""Voxels touching by a face, an edge or a corner belong to one object (26-connectivity)."""


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


def postprocess(labels: np.ndarray, geometry: Geometry, config: PostprocessConfig | None = None) -> np.ndarray:
    """Apply ``config`` to a label map (z, y, x) with 0 background, 1 liver, 2 tumour; returns a new array.

    Only the bounding box of the foreground is processed, so a large scan with a small liver stays cheap.
    """
    config = config or PostprocessConfig()
    out = np.array(labels, dtype=np.uint8, copy=True)
    box = mask_box(out)
    if box is None:
        return out
    part = out[box]
    spacing_zyx = np.asarray(geometry.spacing[::-1], dtype=float)
    if config.keep_largest_liver:
        components, count = ndimage.label(part >= 1, structure=CONNECTIVITY)
        if count > 1:
            sizes = np.bincount(components[components > 0])  # counting the objects' voxels only: sizes[0] is 0
            part[components != int(np.argmax(sizes))] = 0
    if np.count_nonzero(part) * float(np.prod(spacing_zyx)) / 1000.0 < config.min_liver_ml:
        part[...] = 0
    tumour_box = mask_box(part == 2) if config.tumour_in_liver or config.min_lesion_ml > 0 else None
    if tumour_box is not None:
        # the tumours are labelled once, in their box widened by the margin (the liver that matters lies within
        # it); dropping some components leaves the others as they were, so the size step reuses the labels
        reach = np.ceil(config.liver_margin_mm / spacing_zyx).astype(int) if config.tumour_in_liver else (0, 0, 0)
        around = tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(tumour_box, reach, part.shape))
        region = part[around]
        components, _ = ndimage.label(region == 2, structure=CONNECTIVITY)
        if config.tumour_in_liver:
            away = _lesions_away_from_liver(region == 1, components, spacing_zyx, config.liver_margin_mm)
            if away:
                dropped = np.isin(components, away)
                region[dropped] = 0
                components[dropped] = 0
        if config.min_lesion_ml > 0:
            volume_ml = np.bincount(components.ravel()) * float(np.prod(spacing_zyx)) / 1000.0
            small = np.flatnonzero(volume_ml < config.min_lesion_ml)
            small = small[small > 0]
            if len(small):
                region[np.isin(components, small)] = 1
    out[box] = part
    return out


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
    """The largest connected region of ``foreground``, or ``None`` when it has at most one."""
    box = mask_box(foreground)
    if box is None:
        return None
    components, count = ndimage.label(foreground[box], structure=CONNECTIVITY)
    if count <= 1:
        return None
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    region = np.zeros(foreground.shape, dtype=bool)
    region[box] = components == int(np.argmax(sizes))
    return region


PER_LESION_LIMIT = 64
"""Up to this many tumour components are checked one by one in their own widened boxes; more (a noisy mask) are
checked with one distance transform over the widened box of all of them."""


def _lesions_away_from_liver(
    liver: np.ndarray, components: np.ndarray, spacing_zyx: np.ndarray, margin_mm: float
) -> list[int]:
    """The labels of the ``components`` with no voxel within ``margin_mm`` of a ``liver`` voxel.

    A liver voxel within the margin of a component lies in the component's box widened by the margin, so the
    distance transform only needs the lesions' surroundings, not the whole liver's box: each component's own widened
    box when there are few, the widened box around all of them when there are many.
    """
    count = int(components.max())
    if not liver.any():
        return list(range(1, count + 1))
    reach = np.ceil(margin_mm / spacing_zyx).astype(int)

    def widened(box: tuple[slice, ...]) -> tuple[slice, ...]:
        return tuple(slice(max(b.start - r, 0), min(b.stop + r, n)) for b, r, n in zip(box, reach, components.shape))

    def near_liver(box: tuple[slice, ...]) -> np.ndarray:
        """Within ``box``: True where a liver voxel of the box is within the margin."""
        region = liver[box]
        if not region.any():
            return np.zeros(region.shape, dtype=bool)
        return ndimage.distance_transform_edt(~region, sampling=spacing_zyx) <= margin_mm

    if count > PER_LESION_LIMIT:
        box = widened(mask_box(components))  # type: ignore[arg-type]
        part = components[box]
        touching = np.unique(part[near_liver(box) & (part > 0)])
        return sorted(set(range(1, count + 1)) - set(touching.tolist()))
    away = []
    for label, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        wide = widened(box)
        if not near_liver(wide)[components[wide] == label].any():
            away.append(label)
    return away


def mask_box(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The smallest box (z, y, x slices) holding every non-zero voxel of ``mask``, or ``None`` when there is none
    (:func:`~monai_pipeline.preprocessing.crop.array_box` as slices)."""
    box = array_box(mask)
    if box is None:
        return None
    (x, y, z), (sx, sy, sz) = box
    return slice(z, z + sz), slice(y, y + sy), slice(x, x + sx)
