"""Lesion recognition: the tumours of a mask as connected components, measured in the scan's own geometry."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from monai_pipeline.inference.components import label_slabs
from monai_pipeline.inference.quality import head_foot_axis
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.io.writer import atomic_path

__all__ = ["Lesion", "measure_lesions", "scan_summary", "write_lesion_csv"]


@dataclass
class Lesion:
    """One tumour (a 26-connected component of label 2), largest first.

    Coordinates are of the scanner: LPS (x to the patient's left, y posterior, z superior, as DICOM) and RAS (as
    NIfTI viewers show them), in mm.
    """

    lesion_id: int
    voxels: int
    volume_ml: float
    longest_axial_diameter_mm: float
    centroid_lps_x_mm: float
    centroid_lps_y_mm: float
    centroid_lps_z_mm: float
    centroid_ras_x_mm: float
    centroid_ras_y_mm: float
    centroid_ras_z_mm: float
    mean_probability: float | None
    max_probability: float | None
    mean_hu: float | None


Values = np.ndarray | Callable[[tuple[slice, ...]], np.ndarray] | None
"""Values on a mask's grid: an array, or a function giving them for a box (z, y, x slices) of it, so that a large
volume is never held whole; ``None`` for none."""


def measure_lesions(
    labels: np.ndarray,
    geometry: Geometry,
    tumour_probability: Values = None,
    hu: Values = None,
) -> list[Lesion]:
    """Measure every tumour of ``labels`` (z, y, x) on the grid ``geometry``.

    Args:
        labels: the mask, 0 background, 1 liver, 2 tumour.
        geometry: its grid.
        tumour_probability: the tumour probability on the same grid (for mean and max probability), optional.
        hu: the CT in HU on the same grid (for the mean HU), optional.

    The longest axial diameter is measured as RECIST does, edge to edge, in the axial plane of the patient (the
    slices across the grid's head-foot axis) on the slice where the lesion is widest.

    The mask is read in slabs of axial slices (:mod:`~monai_pipeline.inference.components`), and the values are
    asked for slab by slab: besides the mask, the memory is that of a slab however many voxels the tumours hold.
    """
    axis = 2 - head_foot_axis(geometry)  # the array axis across the axial planes
    across = [a for a in range(3) if a != axis]

    def cut(zs: slice) -> tuple[slice, ...]:
        box = [slice(None)] * 3
        box[axis] = zs
        return tuple(box)

    def axial(values: np.ndarray) -> np.ndarray:
        return np.moveaxis(values, axis, 0)

    shape = (labels.shape[axis], *(labels.shape[a] for a in across))
    components = label_slabs(lambda zs: axial(labels[cut(zs)]) == 2, shape)
    count = components.count
    if count == 0:
        return []
    voxels = components.sizes[1:]
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    # physical x, y (mm) of one step along each in-plane array axis (numpy axis a is index axis 2 - a)
    in_plane = np.stack([direction[:2, 2 - a] * geometry.spacing[2 - a] for a in across], axis=1)
    sums = np.zeros((count + 1, 3))
    totals = {"probability": np.zeros(count + 1), "hu": np.zeros(count + 1)}
    probability_max = np.full(count + 1, -np.inf)
    diameters = np.zeros(count + 1)
    for index, zs in enumerate(components.slabs):
        numbers = components.labels(index, axial(labels[cut(zs)]) == 2)
        where = np.nonzero(numbers)
        if not len(where[0]):
            continue
        owners = numbers[where]
        index_zyx = [None] * 3
        index_zyx[axis] = where[0] + zs.start
        index_zyx[across[0]], index_zyx[across[1]] = where[1], where[2]
        for a in range(3):
            sums[:, a] += np.bincount(owners, weights=index_zyx[a], minlength=count + 1)
        for name, values in (("probability", tumour_probability), ("hu", hu)):
            if values is None:
                continue
            inside = axial(values(cut(zs)) if callable(values) else np.asarray(values)[cut(zs)])[where]
            inside = inside.astype(np.float64)
            totals[name] += np.bincount(owners, weights=inside, minlength=count + 1)
            if name == "probability":
                np.maximum.at(probability_max, owners, inside)
        _widest(numbers, components.sizes, in_plane, diameters)
    diameters[components.sizes == 1] = _diameter(_CORNERS @ in_plane.T)  # a single voxel's, shared
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    centres_zyx = sums[1:] / voxels[:, None]
    lesions = []
    for i in range(count):
        lps = geometry.to_physical(centres_zyx[i][::-1])
        lesions.append(
            Lesion(
                lesion_id=0,
                voxels=int(voxels[i]),
                volume_ml=round(int(voxels[i]) * voxel_ml, 4),
                longest_axial_diameter_mm=round(float(diameters[i + 1]), 2),
                centroid_lps_x_mm=round(lps[0], 2),
                centroid_lps_y_mm=round(lps[1], 2),
                centroid_lps_z_mm=round(lps[2], 2),
                centroid_ras_x_mm=round(-lps[0], 2),
                centroid_ras_y_mm=round(-lps[1], 2),
                centroid_ras_z_mm=round(lps[2], 2),
                mean_probability=_mean(tumour_probability, totals["probability"], voxels, i, 4),
                max_probability=None if tumour_probability is None else round(float(probability_max[i + 1]), 4),
                mean_hu=_mean(hu, totals["hu"], voxels, i, 1),
            )
        )
    lesions.sort(key=lambda lesion: -lesion.voxels)
    for number, lesion in enumerate(lesions, start=1):
        lesion.lesion_id = number
    return lesions


def _mean(values: Values, totals: np.ndarray, voxels: np.ndarray, i: int, digits: int) -> float | None:
    return None if values is None else round(float(totals[i + 1] / voxels[i]), digits)


def scan_summary(labels: np.ndarray, geometry: Geometry, lesions: list[Lesion]) -> dict[str, Any]:
    """Liver volume (liver and tumour voxels, as LiTS counts the liver), tumour volume, burden and lesion count."""
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    liver_ml = int(np.count_nonzero(labels >= 1)) * voxel_ml
    tumour_ml = int(np.count_nonzero(labels == 2)) * voxel_ml
    return {
        "liver_volume_ml": round(liver_ml, 3),
        "tumour_volume_ml": round(tumour_ml, 3),
        "tumour_burden": round(tumour_ml / liver_ml, 5) if liver_ml else 0.0,
        "lesions": len(lesions),
        "largest_lesion_diameter_mm": max((lesion.longest_axial_diameter_mm for lesion in lesions), default=0.0),
    }


def write_lesion_csv(lesions: list[Lesion], path: str | os.PathLike[str]) -> Path:
    """Write one row per lesion (a header only when there is none), atomically."""
    names = list(Lesion.__dataclass_fields__)
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=names)
            writer.writeheader()
            writer.writerows(asdict(lesion) for lesion in lesions)
    return Path(path)


_CORNERS = np.array([[dr, dc] for dr in (-0.5, 0.5) for dc in (-0.5, 0.5)])
"""The corners of a voxel around its centre, in (row, column) steps of an axial plane."""


def _widest(numbers: np.ndarray, sizes: np.ndarray, in_plane: np.ndarray, diameters: np.ndarray) -> None:
    """Raise ``diameters`` (by component number) to the widest edge-to-edge extent of each component of a slab of
    axial planes (``numbers``: component numbers, the planes along axis 0): each plane's voxel corners are taken
    in physical in-plane coordinates and the largest distance between two of them wins. Single voxels (most of a
    noisy mask's specks) are left out."""
    for label, box in enumerate(ndimage.find_objects(numbers), start=1):
        if box is None or sizes[label] == 1:
            continue
        inside = numbers[box] == label
        best = diameters[label]
        for plane in inside:
            ends = _row_ends(plane)
            if len(ends) == 0:
                continue
            offset = np.array([box[1].start, box[2].start])
            points = ((ends + offset)[:, None, :] + _CORNERS[None]).reshape(-1, 2) @ in_plane.T
            best = max(best, _diameter(points))
        diameters[label] = best


def _row_ends(mask: np.ndarray) -> np.ndarray:
    """The (y, x) indices of the first and last voxel of every row of a 2D ``mask``: the corners of every other voxel
    of a row lie between theirs, so these give the same convex hull (and diameter) as all the voxels."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return np.empty((0, 2), dtype=np.int64)
    part = mask[rows]
    first = part.argmax(axis=1)
    last = mask.shape[1] - 1 - part[:, ::-1].argmax(axis=1)
    return np.concatenate([np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)])


def _diameter(points: np.ndarray) -> float:
    """The largest distance between two of ``points`` (via their convex hull)."""
    if len(points) > 8:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:
            pass
    differences = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((differences**2).sum(-1)).max())
