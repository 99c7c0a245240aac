"""The geometry of a 3D image on its scanner grid: size, spacing, origin and direction.

All values follow SimpleITK/ITK: index order (x, y, z) and physical coordinates in the patient's LPS frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

__all__ = ["Geometry", "orientation_code", "lps_to_ras_affine", "shear_problem"]

SHEAR_TOLERANCE_DEG = 0.01
"""Largest departure from 90 degrees between two axes of an image that is still taken as orthogonal (rounding of
float32 headers stays far below it)."""


def orientation_code(direction: tuple[float, ...] | np.ndarray) -> str:
    """Three-letter orientation (the direction each index axis points to, LPS/RAS letters) of a 3x3 direction."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(matrix.ravel().tolist())


def lps_to_ras_affine(spacing, origin, direction) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine (as nibabel and NIfTI use it) of an ITK geometry."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3) * np.asarray(spacing, dtype=float)
    affine = np.eye(4)
    affine[:3, :3] = matrix
    affine[:3, 3] = origin
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def shear_problem(matrix: np.ndarray | Sequence[float] | None = None) -> str | None:
    """What is wrong with a 3x3 matrix whose columns are an image's axes (direction cosines, optionally scaled by
    the spacing) when they are not orthogonal, as a phrase for the user; ``None`` when they are.

    ITK, and so this pipeline, can only place voxels on an orthogonal grid: a sheared scan must be resampled first.
    With no matrix (ITK refused the file's), the phrase without the angle.
    """
    fix = "resample it onto an orthogonal grid first, e.g. with nibabel.processing.resample_to_output"
    if matrix is None:
        return f"the direction matrix is not orthonormal (a sheared or skewed grid); {fix}"
    columns = np.asarray(matrix, dtype=float).reshape(3, 3)
    unit = columns / np.linalg.norm(columns, axis=0)
    cosines = np.abs(unit.T @ unit)[np.triu_indices(3, 1)]
    worst = float(np.degrees(np.arcsin(min(1.0, float(np.max(cosines))))))
    if worst <= SHEAR_TOLERANCE_DEG:
        return None
    return f"the direction matrix is not orthonormal (axes {worst:.3g} degrees off square: a sheared grid); {fix}"


@dataclass(frozen=True)
class Geometry:
    """Where an image's voxels lie in the scanner's space.

    Attributes:
        size: voxels along the index axes (x, y, z).
        spacing: voxel size in mm along (x, y, z).
        origin: the LPS position in mm of the centre of voxel (0, 0, 0).
        direction: the 3x3 direction cosines, row-major, column k being index axis k in LPS.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        """The geometry of a SimpleITK image."""
        return cls(
            size=tuple(int(s) for s in image.GetSize()),
            spacing=tuple(float(s) for s in image.GetSpacing()),
            origin=tuple(float(o) for o in image.GetOrigin()),
            direction=tuple(float(d) for d in image.GetDirection()),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Geometry:
        """The inverse of :meth:`to_dict`."""
        return cls(
            size=tuple(int(s) for s in data["size"]),
            spacing=tuple(float(s) for s in data["spacing"]),
            origin=tuple(float(o) for o in data["origin"]),
            direction=tuple(float(d) for d in data["direction"]),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record, with the orientation code for people to read."""
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
            "orientation": self.orientation,
        }

    @property
    def shape(self) -> tuple[int, int, int]:
        """The numpy shape (z, y, x) of the image's array as SimpleITK returns it."""
        return self.size[::-1]

    @property
    def orientation(self) -> str:
        """Three-letter orientation code, e.g. ``"LPS"`` or ``"RAS"`` (closest one for oblique images)."""
        return orientation_code(self.direction)

    @property
    def affine_ras(self) -> np.ndarray:
        """The 4x4 voxel-to-RAS affine as nibabel reports it for a NIfTI file with this geometry."""
        return lps_to_ras_affine(self.spacing, self.origin, self.direction)

    def to_physical(self, index_xyz: np.ndarray | Sequence[float]) -> np.ndarray:
        """LPS positions (mm) of continuous indices (x, y, z); ``index_xyz`` is one index or an (N, 3) array."""
        direction = np.asarray(self.direction).reshape(3, 3)
        return np.asarray(self.origin) + (np.asarray(index_xyz, dtype=float) * self.spacing) @ direction.T

    def to_index(self, points: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous indices (x, y, z) of LPS positions (mm): the inverse of :meth:`to_physical`."""
        inverse = np.linalg.inv(np.asarray(self.direction).reshape(3, 3))
        return ((np.asarray(points, dtype=float) - self.origin) @ inverse.T) / np.asarray(self.spacing)

    def apply(self, image: sitk.Image) -> sitk.Image:
        """Give ``image`` (same size) this geometry, in place, and return it.

        Raises:
            ValueError: when the image's size differs from this geometry's.
        """
        if tuple(image.GetSize()) != self.size:
            raise ValueError(f"image size {image.GetSize()} does not match the geometry's size {self.size}.")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def reference_image(self, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
        """An empty image on this grid, for use as a resampling reference."""
        return self.apply(sitk.Image(list(self.size), pixel_id))

    def axis_map(self, like: Geometry, tolerance: float = 1e-3) -> tuple[list[int], list[int]] | None:
        """For each index axis of ``like``: the axis of this grid parallel to it and +1 or -1 (same or opposite
        direction); ``None`` when no order of this grid's axes is parallel to ``like``'s."""
        own = np.asarray(self.direction, dtype=float).reshape(3, 3)
        target = np.asarray(like.direction, dtype=float).reshape(3, 3)
        dots = target.T @ own  # [i, j]: cosine between like's axis i and this grid's axis j
        order = np.argmax(np.abs(dots), axis=1)
        cosines = dots[np.arange(3), order]
        if sorted(order.tolist()) != [0, 1, 2] or not np.allclose(np.abs(cosines), 1.0, atol=tolerance):
            return None
        return [int(j) for j in order], [1 if c > 0 else -1 for c in cosines]

    def reoriented_like(self, like: Geometry, tolerance: float = 1e-3) -> Geometry | None:
        """This grid with its index axes permuted and flipped (:meth:`axis_map`) to run as ``like``'s do, or
        ``None`` when they cannot be.

        The voxels stay where they are in physical space: when the result has no :meth:`differences` from ``like``,
        the two grids hold the same voxels, e.g. a dcm2niix NIfTI (LAS) of a DICOM series read as LPS.
        """
        mapping = self.axis_map(like, tolerance)
        if mapping is None:
            return None
        order, signs = mapping
        corner = np.zeros(3)
        for axis, sign in zip(order, signs):
            corner[axis] = 0 if sign > 0 else self.size[axis] - 1
        own = np.asarray(self.direction, dtype=float).reshape(3, 3)
        return Geometry(
            size=tuple(self.size[j] for j in order),
            spacing=tuple(self.spacing[j] for j in order),
            origin=tuple(float(v) for v in self.to_physical(corner)),
            direction=tuple(float(v) for v in (own[:, order] * np.asarray(signs)).ravel()),
        )

    def differences(self, other: Geometry, tolerance: float = 1e-3) -> list[str]:
        """What differs between two geometries, beyond ``tolerance`` (relative for spacing, mm for origin).

        Returns an empty list when the two describe the same grid.
        """
        problems = []
        if self.size != other.size:
            problems.append(f"size {list(other.size)} vs {list(self.size)}")
        if not np.allclose(self.spacing, other.spacing, rtol=tolerance, atol=0):
            problems.append(f"spacing {_fmt(other.spacing)} vs {_fmt(self.spacing)}")
        scale = max(1.0, float(np.max(self.spacing)))
        if not np.allclose(self.origin, other.origin, rtol=0, atol=tolerance * scale * 10):
            problems.append(f"origin {_fmt(other.origin)} vs {_fmt(self.origin)}")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=tolerance):
            problems.append(f"direction {other.orientation} vs {self.orientation}")
        return problems


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
