"""Lesion recognition: the tumours of a mask as connected components, measured in the scan's own geometry."""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from monai_pipeline.inference.postprocess import CONNECTIVITY
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


def measure_lesions(
    labels: np.ndarray,
    geometry: Geometry,
    tumour_probability: np.ndarray | None = None,
    hu: np.ndarray | None = None,
) -> list[Lesion]:
    """Measure every tumour of ``labels`` (z, y, x) on the grid ``geometry``.

    Args:
        labels: the mask, 0 background, 1 liver, 2 tumour.
        geometry: its grid.
        tumour_probability: the tumour probability on the same grid (for mean and max probability), optional.
        hu: the CT in HU on the same grid (for the mean HU), optional.

    The longest axial diameter is measured as RECIST does, edge to edge, in the axial plane of the patient (the
    scan is viewed in RAS so that its third axis runs from feet to head) on the slice where the lesion is widest.
    """
    components, count = ndimage.label(labels == 2, structure=CONNECTIVITY)
    if count == 0:
        return []
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    where = np.nonzero(components)  # the lesions' voxels, once: centroids and statistics are sums over them
    owners = components[where]
    voxels = np.bincount(owners, minlength=count + 1)[1:]
    centres_zyx = np.stack(
        [np.bincount(owners, weights=axis, minlength=count + 1)[1:] / voxels for axis in where], axis=1
    )
    diameters = _longest_axial_diameters(components, voxels, geometry)
    probability_mean = _per_lesion(tumour_probability, where, owners, voxels, "mean")
    probability_max = _per_lesion(tumour_probability, where, owners, voxels, "max")
    hu_mean = _per_lesion(hu, where, owners, voxels, "mean")
    lesions = []
    for i in range(count):
        lps = geometry.to_physical(centres_zyx[i][::-1])
        lesions.append(
            Lesion(
                lesion_id=0,
                voxels=int(voxels[i]),
                volume_ml=round(int(voxels[i]) * voxel_ml, 4),
                longest_axial_diameter_mm=round(diameters[i], 2),
                centroid_lps_x_mm=round(lps[0], 2),
                centroid_lps_y_mm=round(lps[1], 2),
                centroid_lps_z_mm=round(lps[2], 2),
                centroid_ras_x_mm=round(-lps[0], 2),
                centroid_ras_y_mm=round(-lps[1], 2),
                centroid_ras_z_mm=round(lps[2], 2),
                mean_probability=None if probability_mean is None else round(probability_mean[i], 4),
                max_probability=None if probability_max is None else round(probability_max[i], 4),
                mean_hu=None if hu_mean is None else round(hu_mean[i], 1),
            )
        )
    lesions.sort(key=lambda lesion: -lesion.voxels)
    for number, lesion in enumerate(lesions, start=1):
        lesion.lesion_id = number
    return lesions


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


def _per_lesion(
    values: np.ndarray | None,
    where: tuple[np.ndarray, ...],
    owners: np.ndarray,
    voxels: np.ndarray,
    reduce: str,
) -> list[float] | None:
    """The mean or max of ``values`` over each lesion, in float64; ``where`` are the lesions' voxels and ``owners``
    their lesion labels (one pass with ``bincount`` / ``maximum.at``, no sorting)."""
    if values is None:
        return None
    inside = np.asarray(values)[where].astype(np.float64)
    if reduce == "mean":
        result = np.bincount(owners, weights=inside, minlength=len(voxels) + 1)[1:] / voxels
    else:
        result = np.full(len(voxels) + 1, -np.inf)
        np.maximum.at(result, owners, inside)
        result = result[1:]
    return result.tolist()


def _longest_axial_diameters(components: np.ndarray, voxels: np.ndarray, geometry: Geometry) -> list[float]:
    """Edge-to-edge widest extent of each component (``voxels``: their sizes) in an axial plane: the components are
    reoriented to RAS (once, for all), each RAS slice's voxel corners are taken in physical in-plane coordinates, and
    the largest distance between two of them wins. Single voxels (most of a noisy mask's specks) share one answer."""
    count = len(voxels)
    ras = sitk.DICOMOrient(geometry.apply(sitk.GetImageFromArray(components.astype(np.int32, copy=False))), "RAS")
    direction = np.asarray(ras.GetDirection()).reshape(3, 3)
    spacing = np.asarray(ras.GetSpacing())
    array = sitk.GetArrayViewFromImage(ras)
    corners = np.array([[dx, dy] for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    in_plane = direction[:2, :2] * spacing[:2]  # physical x, y of the in-plane index axes
    diameters = [_diameter(corners @ in_plane.T)] * count
    for label, box in enumerate(ndimage.find_objects(array, max_label=count), start=1):
        if box is None or voxels[label - 1] == 1:
            continue
        inside = array[box] == label
        best = 0.0
        for z in range(inside.shape[0]):
            yx = _row_ends(inside[z])
            if len(yx) == 0:
                continue
            points = (yx[:, None, ::-1] + corners[None]).reshape(-1, 2) @ in_plane.T
            best = max(best, _diameter(points))
        diameters[label - 1] = best
    return diameters


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
