"""Resampling with SimpleITK: to a target spacing (anisotropy-aware) and back onto a scan's own grid."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from monai_pipeline.errors import PipelineError
from monai_pipeline.io.geometry import Geometry

__all__ = [
    "INTERPOLATORS",
    "MAX_GRID_VOXELS",
    "reorient",
    "reoriented_geometry",
    "target_grid",
    "anisotropic_axis",
    "resample_to_spacing",
    "resample_onto",
]

INTERPOLATORS: dict[str, int] = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}

MAX_GRID_VOXELS = 512 * 512 * 2048
"""The most voxels a resampled grid may have (2 GiB as float32): a 512 x 512 x 2048 grid, more than a whole-body CT
at 0.5 mm holds. A header whose spacing says otherwise (200 mm or 1e30 mm voxels) is wrong, and is refused before
anything is allocated."""


def reorient(image: sitk.Image, orientation: str) -> sitk.Image:
    """Permute and flip the axes so they point as ``orientation`` says (e.g. ``"RAS"``); voxels are not interpolated.

    An oblique image keeps its obliquity and gets the closest axis order.
    """
    if image.GetDimension() != 3:
        raise ValueError(f"expected a 3D image, got {image.GetDimension()}D.")
    return sitk.DICOMOrient(image, orientation.upper())


def reoriented_geometry(geometry: Geometry, orientation: str) -> Geometry:
    """The geometry :func:`reorient` would give an image with ``geometry``, computed without touching voxels.

    Resampling straight from the scan onto a grid derived from this geometry avoids a full-size reoriented copy.
    """
    orienter = sitk.DICOMOrientImageFilter()
    orienter.SetDesiredCoordinateOrientation(orientation.upper())
    probe = sitk.Image([2, 2, 2], sitk.sitkUInt8)
    probe.SetDirection(geometry.direction)
    orienter.Execute(probe)
    order, flips = orienter.GetPermuteOrder(), orienter.GetFlipAxes()
    direction = np.asarray(geometry.direction).reshape(3, 3)
    spacing, size = np.asarray(geometry.spacing), np.asarray(geometry.size)
    origin = np.asarray(geometry.origin, dtype=float)
    new_direction = np.empty((3, 3))
    for axis, (source, flip) in enumerate(zip(order, flips)):
        new_direction[:, axis] = -direction[:, source] if flip else direction[:, source]
        if flip:
            origin = origin + direction[:, source] * (size[source] - 1) * spacing[source]
    return Geometry(
        size=tuple(int(size[source]) for source in order),
        spacing=tuple(float(spacing[source]) for source in order),
        origin=tuple(float(o) for o in origin),
        direction=tuple(float(d) for d in new_direction.ravel()),
    )


def target_grid(geometry: Geometry, spacing: Sequence[float]) -> Geometry:
    """The grid with ``spacing`` that covers the same field of view as ``geometry``, centred on it.

    Raises:
        PipelineError: the grid would have more than :data:`MAX_GRID_VOXELS` voxels.
    """
    old_spacing = np.asarray(geometry.spacing)
    new_spacing = np.asarray(spacing, dtype=float)
    old_size = np.asarray(geometry.size)
    with np.errstate(over="ignore", invalid="ignore"):
        exact = np.maximum(1.0, np.round(old_size * old_spacing / new_spacing))
        voxels = float(np.prod(exact))
    if not np.all(np.isfinite(exact)) or not voxels <= MAX_GRID_VOXELS:
        shown = " x ".join(f"{v:.4g}" for v in old_spacing)
        raise PipelineError(
            f"spacing {shown} mm in the header: resampled to {' x '.join(f'{v:g}' for v in new_spacing)} mm it "
            f"would be a {' x '.join(f'{v:.6g}' for v in exact)} grid ({voxels:.3g} voxels), over the budget of "
            f"{MAX_GRID_VOXELS} (512 x 512 x 2048); is the spacing in the wrong units?"
        )
    new_size = exact.astype(int)
    direction = np.asarray(geometry.direction).reshape(3, 3)
    centre = np.asarray(geometry.origin) + direction @ ((old_size - 1) / 2 * old_spacing)
    origin = centre - direction @ ((new_size - 1) / 2 * new_spacing)
    return Geometry(
        size=tuple(int(s) for s in new_size),
        spacing=tuple(float(s) for s in new_spacing),
        origin=tuple(float(o) for o in origin),
        direction=geometry.direction,
    )


def anisotropic_axis(spacing: Sequence[float], target: Sequence[float], threshold: float) -> int | None:
    """The index axis that is more than ``threshold`` times coarser than the finest one, in the source spacing or
    else in the target spacing; ``None`` when neither is anisotropic."""
    for candidate in (spacing, target):
        values = np.asarray(candidate, dtype=float)
        if values.max() / values.min() > threshold:
            return int(np.argmax(values))
    return None


def resample_to_spacing(
    image: sitk.Image,
    spacing: Sequence[float],
    *,
    frame: Geometry | None = None,
    interpolator: str = "linear",
    anisotropy_threshold: float = 3.0,
    anisotropic_axis_interpolator: str = "nearest",
    default_value: float = 0.0,
    output_pixel_type: int = sitk.sitkFloat32,
) -> sitk.Image:
    """Resample ``image`` to ``spacing`` over the field of view of ``frame`` (default: the image's own grid).

    When the source or target spacing is anisotropic (one axis more than ``anisotropy_threshold`` times coarser),
    the in-plane axes are resampled first with ``interpolator`` and the coarse axis afterwards with
    ``anisotropic_axis_interpolator``, as nnU-Net does; otherwise one pass with ``interpolator``.

    Args:
        image: a 3D SimpleITK image.
        spacing: target voxel size in mm along the axes of ``frame``.
        frame: the grid whose field of view and axes the result covers, e.g. a reoriented, cropped view of
            ``image`` from :func:`reoriented_geometry`; the voxels are taken straight from ``image``.
        interpolator: ``"linear"``, ``"bspline"`` or ``"nearest"``.
        anisotropy_threshold: ratio of coarsest to finest spacing above which the axes are resampled separately.
        anisotropic_axis_interpolator: interpolation along the coarse axis in the separate scheme.
        default_value: value of points outside the image (border voxels use their nearest neighbour instead).
        output_pixel_type: SimpleITK pixel type of the result.
    """
    frame = frame or Geometry.of(image)
    final = target_grid(frame, spacing)
    axis = anisotropic_axis(frame.spacing, final.spacing, anisotropy_threshold)
    options = {"default_value": default_value, "output_pixel_type": output_pixel_type}
    if axis is None or interpolator == anisotropic_axis_interpolator or frame.size[axis] == final.size[axis]:
        return resample_onto(image, final, interpolator, **options)
    in_plane_spacing = list(final.spacing)
    in_plane_spacing[axis] = frame.spacing[axis]
    in_plane = resample_onto(image, target_grid(frame, in_plane_spacing), interpolator, **options)
    return resample_onto(in_plane, final, anisotropic_axis_interpolator, **options)


def resample_onto(
    image: sitk.Image,
    geometry: Geometry,
    interpolator: str = "linear",
    *,
    default_value: float = 0.0,
    output_pixel_type: int | None = None,
) -> sitk.Image:
    """Resample ``image`` onto the grid ``geometry`` through physical space (any orientation, crop or spacing).

    Points within half a voxel beyond the image's border take the border value; points further out get
    ``default_value``.

    Args:
        image: a 3D SimpleITK image.
        geometry: the grid to sample on, e.g. the original scan's.
        interpolator: ``"linear"``, ``"bspline"`` or ``"nearest"`` (use nearest for label maps).
        default_value: value outside the image.
        output_pixel_type: SimpleITK pixel type of the result (default: the input's).
    """
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"interpolator must be one of {tuple(INTERPOLATORS)}, got {interpolator!r}.")
    pixel_type = image.GetPixelID() if output_pixel_type is None else output_pixel_type
    return sitk.Resample(
        image,
        list(geometry.size),
        sitk.Transform(),
        INTERPOLATORS[interpolator],
        list(geometry.origin),
        list(geometry.spacing),
        list(geometry.direction),
        float(default_value),
        pixel_type,
        False,
    )
