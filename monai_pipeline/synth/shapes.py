"""Solid shapes in body millimetres whose depth (signed distance, positive inside) is cheap to evaluate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["Ellipsoid", "Tube", "ellipse_depth", "rotation", "smooth_max"]


@dataclass(frozen=True)
class Ellipsoid:
    """A solid ellipsoid in body millimetres.

    Attributes:
        centre: (3,) position relative to the body centre (LPS).
        radii: (3,) semi-axes along the ellipsoid's own axes.
        axes: 3x3 matrix whose columns are those axes in LPS.
    """

    centre: np.ndarray
    radii: np.ndarray
    axes: np.ndarray

    @property
    def reach(self) -> float:
        """The largest semi-axis: no point of the ellipsoid is farther from its centre."""
        return float(self.radii.max())

    @property
    def z_extent(self) -> float:
        """Half the ellipsoid's extent along z."""
        return float(np.sqrt(np.sum((self.axes[2] * self.radii) ** 2)))

    def depth(self, points: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm, positive inside) of ``points`` (3, ...) to the surface.

        Inside it never exceeds the true distance, so a depth margin is a safe margin.
        """
        dtype = points.dtype
        shape = (3,) + (1,) * (points.ndim - 1)
        local = np.tensordot(self.axes.T.astype(dtype), points - self.centre.reshape(shape).astype(dtype), axes=1)
        radii = self.radii.reshape(shape).astype(dtype)
        k0 = np.sqrt(np.sum((local / radii) ** 2, axis=0))
        k1 = np.sqrt(np.sum((local / radii**2) ** 2, axis=0))
        r_min = float(self.radii.min())
        outside = (1 - k0) * (k0 + 1e-6) / (k1 + 1e-6 / r_min)
        return np.where(k0 < 1, (1 - k0) * r_min, outside)

    def surface_points(self) -> np.ndarray:
        """The centre and 26 points spread over the surface, as (3, 27)."""
        grid = np.stack(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T
        unit = np.array([g / np.linalg.norm(g) if g.any() else g for g in grid], dtype=float)
        return self.centre[:, None] + self.axes @ (unit * self.radii).T


@dataclass(frozen=True)
class Tube:
    """A straight tube with rounded ends from ``start`` to ``end`` whose radius goes from ``radii[0]`` to ``radii[1]``.

    Vessels, bowel loops, muscles and long bones are chains of tubes.
    """

    start: np.ndarray
    end: np.ndarray
    radii: tuple[float, float]

    @property
    def centre(self) -> np.ndarray:
        """The middle of the axis."""
        return (np.asarray(self.start) + np.asarray(self.end)) / 2

    @property
    def reach(self) -> float:
        """No point of the tube is farther from :attr:`centre`."""
        return float(np.linalg.norm(np.subtract(self.end, self.start)) / 2 + max(self.radii))

    @property
    def z_extent(self) -> float:
        """Half the tube's extent along z."""
        return float(abs(self.end[2] - self.start[2]) / 2 + max(self.radii))

    def depth(self, points: np.ndarray) -> np.ndarray:
        """Radius at the nearest axis point minus the distance to it (mm, positive inside) of ``points`` (3, ...)."""
        dtype = points.dtype
        shape = (3,) + (1,) * (points.ndim - 1)
        axis = np.subtract(self.end, self.start)
        offset = points - np.asarray(self.start, dtype=dtype).reshape(shape)
        along = np.tensordot(axis.astype(dtype) / max(float(axis @ axis), 1e-9), offset, axes=1)
        np.clip(along, 0, 1, out=along)
        offset -= axis.astype(dtype).reshape(shape) * along
        return self.radii[0] + (self.radii[1] - self.radii[0]) * along - np.sqrt(np.sum(offset**2, axis=0))


def smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """A smooth union of two depth fields, rounding the crease over about ``k`` mm."""
    h = np.maximum(k - np.abs(a - b), 0) / k
    return np.maximum(a, b) + h * h * (k / 4)


def ellipse_depth(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Depth (mm, positive inside, at most the distance) in an axis-aligned ellipse centred at 0."""
    return (1 - np.sqrt((x / rx) ** 2 + (y / ry) ** 2)) * min(rx, ry)


def rotation(z_deg: float, x_deg: float = 0.0, y_deg: float = 0.0) -> np.ndarray:
    """The rotation matrix Rz @ Ry @ Rx, angles in degrees."""
    return Rotation.from_euler("ZYX", [z_deg, y_deg, x_deg], degrees=True).as_matrix()
