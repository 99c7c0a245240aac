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
    lesions = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        inside = components[box] == index
        zyx = np.argwhere(inside) + [s.start for s in box]
        centre_index = zyx.mean(axis=0)[::-1]  # (x, y, z)
        lps = _physical(geometry, centre_index)
        lesion = Lesion(
            lesion_id=0,
            voxels=int(inside.sum()),
            volume_ml=round(int(inside.sum()) * voxel_ml, 4),
            longest_axial_diameter_mm=round(_longest_axial_diameter(inside, box, geometry), 2),
            centroid_lps_x_mm=round(lps[0], 2),
            centroid_lps_y_mm=round(lps[1], 2),
            centroid_lps_z_mm=round(lps[2], 2),
            centroid_ras_x_mm=round(-lps[0], 2),
            centroid_ras_y_mm=round(-lps[1], 2),
            centroid_ras_z_mm=round(lps[2], 2),
            mean_probability=_stat(tumour_probability, box, inside, np.mean, 4),
            max_probability=_stat(tumour_probability, box, inside, np.max, 4),
            mean_hu=_stat(hu, box, inside, np.mean, 1),
        )
        lesions.append(lesion)
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


def _physical(geometry: Geometry, index_xyz: np.ndarray) -> np.ndarray:
    direction = np.asarray(geometry.direction).reshape(3, 3)
    return np.asarray(geometry.origin) + direction @ (np.asarray(index_xyz) * np.asarray(geometry.spacing))


def _stat(values: np.ndarray | None, box: tuple[slice, ...], inside: np.ndarray, reduce, digits: int) -> float | None:
    if values is None:
        return None
    return round(float(reduce(values[box][inside])), digits)


def _longest_axial_diameter(inside: np.ndarray, box: tuple[slice, ...], geometry: Geometry) -> float:
    """Edge-to-edge widest extent in an axial plane: the lesion's voxels are reoriented to RAS, each RAS slice's
    voxel corners are taken in physical in-plane coordinates, and the largest distance between two of them wins."""
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    part = Geometry(
        size=tuple(int(n) for n in inside.shape[::-1]),
        spacing=geometry.spacing,
        origin=tuple(_physical(geometry, [s.start for s in box[::-1]])),
        direction=geometry.direction,
    )
    ras = sitk.DICOMOrient(part.apply(mask), "RAS")
    direction = np.asarray(ras.GetDirection()).reshape(3, 3)
    spacing = np.asarray(ras.GetSpacing())
    array = sitk.GetArrayViewFromImage(ras)
    corners = np.array([[dx, dy] for dx in (-0.5, 0.5) for dy in (-0.5, 0.5)])
    in_plane = direction[:2, :2] * spacing[:2]  # physical x, y of the in-plane index axes
    best = 0.0
    for z in range(array.shape[0]):
        yx = np.argwhere(array[z])
        if len(yx) == 0:
            continue
        points = (yx[:, None, ::-1] + corners[None]).reshape(-1, 2) @ in_plane.T
        best = max(best, _diameter(points))
    return best


def _diameter(points: np.ndarray) -> float:
    """The largest distance between two of ``points`` (via their convex hull)."""
    if len(points) > 8:
        try:
            points = points[ConvexHull(points).vertices]
        except QhullError:
            pass
    differences = points[:, None, :] - points[None, :, :]
    return float(np.sqrt((differences**2).sum(-1)).max())
