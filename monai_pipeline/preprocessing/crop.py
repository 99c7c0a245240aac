"""Crop a CT to the patient's body: the largest connected region above a HU threshold, found on a coarse copy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from monai_pipeline.io.geometry import Geometry

__all__ = ["body_box", "foreground_box", "array_box", "union_box", "crop", "crop_geometry"]

Box = tuple[tuple[int, int, int], tuple[int, int, int]]
"""A crop box as (start index, size) along (x, y, z)."""


_BALL = ndimage.generate_binary_structure(3, 2)
"""The radius-1 ball of voxels: the 3x3x3 cube without its 8 corners."""


def body_box(image: sitk.Image, threshold: float = -500.0, margin_mm: float = 10.0, coarse_mm: float = 4.0) -> Box:
    """The index box (start, size) of the body in ``image``, widened by ``margin_mm`` and clipped to the image.

    The body is the largest face-connected component above ``threshold`` HU, after a morphological opening with a
    radius-1 ball, on a copy binned to about ``coarse_mm`` voxels: fast, and blind to thin objects such as the
    table's edge and clothing. When nothing is above the threshold the whole image is kept.
    """
    spacing = np.asarray(image.GetSpacing())
    # never bin more voxels than an axis has: a scan of a few slices keeps its slices
    shrink = [max(1, min(int(f), n)) for f, n in zip(np.floor(coarse_mm / spacing), image.GetSize())]
    coarse = sitk.BinShrink(image, shrink) if max(shrink) > 1 else image
    above = sitk.GetArrayViewFromImage(coarse) > float(threshold)
    # the opening; voxels beyond the border count as body for the erosion, so the body is not eaten at the edges
    opened = ndimage.binary_dilation(ndimage.binary_erosion(above, _BALL, border_value=1), _BALL)
    components, count = ndimage.label(opened)
    full = ((0, 0, 0), tuple(int(s) for s in image.GetSize()))
    if count == 0:
        return full
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    body_start, body_size = array_box(components == int(np.argmax(sizes)))
    start = np.asarray(body_start) * shrink
    stop = (np.asarray(body_start) + np.asarray(body_size)) * shrink
    margin = np.ceil(margin_mm / spacing).astype(int) + np.asarray(shrink)
    start = np.maximum(0, start - margin)
    stop = np.minimum(np.asarray(image.GetSize()), stop + margin)
    return tuple(int(s) for s in start), tuple(int(s) for s in stop - start)


def foreground_box(label: sitk.Image) -> Box | None:
    """The index box of the non-zero voxels of a label map, or ``None`` when it is empty."""
    return array_box(sitk.GetArrayViewFromImage(label))


def array_box(values: np.ndarray) -> Box | None:
    """The index box (start, size along x, y, z) of the non-zero voxels of a (z, y, x) array, or ``None``.

    Found from the array's projections, the in-plane ones over the slices that hold something only, with no
    full-size temporary: several times quicker than ``ndimage.find_objects`` on a whole scan.
    """
    z = np.flatnonzero(values.any(axis=(1, 2)))
    if len(z) == 0:
        return None
    slab = values[z[0] : z[-1] + 1]
    y, x = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
    start = (int(x[0]), int(y[0]), int(z[0]))
    return start, (int(x[-1]) + 1 - start[0], int(y[-1]) + 1 - start[1], int(z[-1]) + 1 - start[2])


def union_box(first: Box, second: Box | None) -> Box:
    """The smallest box holding both boxes."""
    if second is None:
        return first
    start = np.minimum(first[0], second[0])
    stop = np.maximum(np.add(*first), np.add(*second))
    return tuple(int(s) for s in start), tuple(int(s) for s in stop - start)


def crop(image: sitk.Image, box: Box | Sequence[Sequence[int]]) -> sitk.Image:
    """The part of ``image`` inside ``box``; its origin moves so that every voxel keeps its physical position."""
    (x, y, z), (sx, sy, sz) = box
    if (x, y, z) == (0, 0, 0) and tuple(image.GetSize()) == (sx, sy, sz):
        return image
    return image[x : x + sx, y : y + sy, z : z + sz]


def crop_geometry(geometry: Geometry, box: Box | Sequence[Sequence[int]]) -> Geometry:
    """The geometry of the part of an image inside ``box`` (what :func:`crop` gives, without touching voxels)."""
    start, size = (np.asarray(part, dtype=int) for part in box)
    origin = geometry.to_physical(start)
    return Geometry(
        size=tuple(int(s) for s in size),
        spacing=geometry.spacing,
        origin=tuple(float(o) for o in origin),
        direction=geometry.direction,
    )
