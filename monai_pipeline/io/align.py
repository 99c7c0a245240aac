"""Bring a label map onto the grid of the image it belongs to: as it is, reoriented, or resampled when asked.

Two grids may hold the same voxels with their index axes in another order or running the other way: a dcm2niix
NIfTI of a DICOM series is LAS where SimpleITK reads the series as LPS. Such a label is reoriented, exactly (a
permutation of its voxels, each keeping its physical position); a label on other voxels is resampled with nearest
neighbour only when the user asks for it.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from monai_pipeline.io.geometry import Geometry

__all__ = ["same_voxels", "onto_grid", "describe_change"]


def same_voxels(own: Geometry, grid: Geometry, tolerance: float = 1e-3) -> bool:
    """True when ``own`` holds the voxels of ``grid``, in the same or in another axis order or direction."""
    reoriented = own.reoriented_like(grid, tolerance)
    return reoriented is not None and not grid.differences(reoriented, tolerance)


def onto_grid(label: sitk.Image, grid: Geometry, *, resample: bool = False, tolerance: float = 1e-3) -> sitk.Image:
    """``label`` on ``grid``, its values unchanged: as it is, reoriented (:func:`same_voxels`), or with
    ``resample`` interpolated with nearest neighbour.

    Raises:
        ValueError: the label holds other voxels than ``grid`` and ``resample`` is off (check
            :func:`same_voxels` first to say so in the user's terms).
    """
    own = Geometry.of(label)
    if not grid.differences(own, tolerance):
        return label
    if same_voxels(own, grid, tolerance):
        return grid.apply(sitk.GetImageFromArray(_reorient(sitk.GetArrayViewFromImage(label), own, grid)))
    if not resample:
        raise ValueError(f"the label map's grid differs from the target grid: {'; '.join(grid.differences(own))}.")
    return sitk.Resample(label, grid.reference_image(label.GetPixelID()), sitk.Transform(), sitk.sitkNearestNeighbor)


def _reorient(array: np.ndarray, own: Geometry, grid: Geometry) -> np.ndarray:
    """The (z, y, x) ``array`` of grid ``own`` with its axes permuted and flipped to run as ``grid``'s."""
    order, signs = own.axis_map(grid)  # type: ignore[misc]
    # numpy axis 2 - k is index axis k
    moved = np.transpose(array, [2 - order[2 - a] for a in range(3)])
    flips = tuple(slice(None, None, -1) if signs[2 - a] < 0 else slice(None) for a in range(3))
    return np.ascontiguousarray(moved[flips])


def describe_change(own: Geometry, grid: Geometry, tolerance: float = 1e-3) -> str | None:
    """What :func:`onto_grid` does to a label of grid ``own``, in words for a log line; ``None`` for nothing."""
    if not grid.differences(own, tolerance):
        return None
    if same_voxels(own, grid, tolerance):
        return f"reoriented from {own.orientation} to {grid.orientation}"
    return "resampled (nearest neighbour)"
