"""Synthetic LiTS-like abdominal CT phantoms: an int16 CT in HU and a 0/1/2 label, rendered on any grid.

The anatomy of a seed (:func:`sample_anatomy`) is defined in patient LPS millimetres relative to the body centre:
x grows towards the patient's left (so the liver lies at negative x), y towards the back and z towards the head.
Each voxel takes its value from its physical point, origin + direction @ (index * spacing), one slice at a time,
so one seed gives the same patient on grids of any orientation or spacing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from monai_pipeline.io.geometry import Geometry
from monai_pipeline.synth.anatomy import (
    AIR_HU,
    CANCELLOUS_HU,
    CORTICAL_HU,
    CSF_HU,
    DISC_HU,
    FAT_HU,
    LUNG_HU,
    MUSCLE_HU,
    RIB_HU,
    Anatomy,
    Part,
    ellipse_depth,
    sample_anatomy,
)

__all__ = ["direction_cosines", "make_phantom", "phantom_geometry"]

_NOISE_SMOOTHING = 0.6  # in-plane Gaussian sigma (voxels) of the noise filter


def direction_cosines(orientation: str | Sequence[float]) -> tuple[float, ...]:
    """The 9 direction cosines (row-major, column k = index axis k in LPS) of an orientation.

    Args:
        orientation: a 3-letter code naming where each index axis points ("LPS", "RAS", "LAI", ...), or an
            explicit orthonormal 3x3 direction as 9 numbers (oblique grids).

    Raises:
        ValueError: for an unknown code or a direction that is not orthonormal.
    """
    if isinstance(orientation, str):
        cosines = sitk.DICOMOrientImageFilter.GetDirectionCosinesFromOrientation(orientation.upper())
        if not any(cosines):
            raise ValueError(f"unknown orientation code {orientation!r}; expected e.g. 'LPS', 'RAS' or 'LAI'.")
    else:
        cosines = tuple(float(v) for v in np.ravel(orientation))
        if len(cosines) != 9:
            raise ValueError(f"a direction needs 9 cosines, got {len(cosines)}.")
    matrix = np.asarray(cosines, dtype=float).reshape(3, 3)
    if not np.all(np.isfinite(matrix)) or not np.allclose(matrix.T @ matrix, np.eye(3), atol=1e-6):
        raise ValueError(f"direction {cosines} is not orthonormal.")
    return tuple(float(v) for v in matrix.ravel())


def phantom_geometry(
    size: Sequence[int],
    spacing: Sequence[float],
    orientation: str | Sequence[float] = "LPS",
    centre: Sequence[float] = (0.0, 0.0, 0.0),
) -> Geometry:
    """A grid of ``size`` voxels whose field of view is centred on the LPS point ``centre``.

    Raises:
        ValueError: for a size or spacing that is not three positive numbers, or a bad orientation.
    """
    if len(size) != 3 or any(int(n) != n or n < 1 for n in size):
        raise ValueError(f"size must be three positive whole numbers, got {tuple(size)}.")
    if len(spacing) != 3 or not all(np.isfinite(d) and d > 0 for d in spacing):
        raise ValueError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}.")
    direction = direction_cosines(orientation)
    half = (np.asarray(size, dtype=float) - 1) * np.asarray(spacing, dtype=float) / 2
    origin = np.asarray(centre, dtype=float) - np.reshape(direction, (3, 3)) @ half
    return Geometry(tuple(int(n) for n in size), tuple(float(d) for d in spacing), tuple(origin.tolist()), direction)


def make_phantom(
    seed: int,
    *,
    size: Sequence[int] = (160, 160, 48),
    spacing: Sequence[float] = (2.2, 2.2, 5.0),
    orientation: str | Sequence[float] = "LPS",
    noise: bool = True,
) -> tuple[sitk.Image, sitk.Image]:
    """A synthetic abdominal CT (int16, HU) and its label (uint8: 0 background, 1 liver, 2 tumour).

    Args:
        seed: chooses the patient (:func:`sample_anatomy`) and the noise; equal seeds give equal images.
        size: voxels along the index axes (x, y, z).
        spacing: voxel size in mm along the index axes.
        orientation: a 3-letter code ("LPS", "RAS", "LAI", ...) or 9 direction cosines for an oblique grid.
        noise: add Gaussian noise, slightly smoothed in-plane, of 10-20 HU depending on the seed.

    Returns:
        The CT and the label on the same grid, whose field of view is centred on the body.

    Raises:
        ValueError: for a bad seed, size, spacing or orientation.
    """
    anatomy = sample_anatomy(seed)
    geometry = phantom_geometry(size, spacing, orientation, anatomy.centre)
    ct, label = _render(anatomy, geometry, noise)
    return geometry.apply(sitk.GetImageFromArray(ct)), geometry.apply(sitk.GetImageFromArray(label))


class _Slice:
    """The body-centred physical points of one slice of a grid, and the part of the slice near a point."""

    def __init__(self, geometry: Geometry, centre: np.ndarray) -> None:
        self.direction = np.reshape(geometry.direction, (3, 3))
        self.spacing, self.size = geometry.spacing, geometry.size
        self.steps = (self.direction * self.spacing).astype(np.float32)  # column k: one voxel along index axis k
        self._across = self.steps[:, 0, None, None] * np.arange(self.size[0], dtype=np.float32)
        self._down = self.steps[:, 1, None, None] * np.arange(self.size[1], dtype=np.float32)[:, None]
        self._start = np.asarray(geometry.origin) - centre
        self.corner = self._start

    def at(self, k: int) -> np.ndarray:
        """Move to slice ``k`` and return its points (3, ny, nx)."""
        self.corner = self._start + self.direction[:, 2] * (self.spacing[2] * k)
        return (self.corner.astype(np.float32)[:, None, None] + self._down) + self._across

    def window(self, centre: np.ndarray, reach: float) -> tuple[slice, slice] | None:
        """The (rows, columns) of the current slice within ``reach`` mm of ``centre``, or None."""
        offset = centre - self.corner
        if abs(offset @ self.direction[:, 2]) > reach:
            return None
        bounds = []
        for axis in (1, 0):
            mid, half = offset @ self.direction[:, axis] / self.spacing[axis], reach / self.spacing[axis]
            low, high = max(int(np.floor(mid - half)), 0), min(int(np.ceil(mid + half)) + 1, self.size[axis])
            if low >= high:
                return None
            bounds.append(slice(low, high))
        return bounds[0], bounds[1]


def _render(anatomy: Anatomy, geometry: Geometry, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paint the anatomy onto the grid slice by slice; returns the (z, y, x) CT (int16) and label (uint8)."""
    ct = np.empty(geometry.shape, dtype=np.int16)
    label = np.empty(geometry.shape, dtype=np.uint8)
    grid = _Slice(geometry, anatomy.centre)
    rng = np.random.default_rng([anatomy.seed, 1])
    impulse = ndimage.gaussian_filter1d(np.eye(1, 41, 20)[0], _NOISE_SMOOTHING)
    scale = np.float32(anatomy.noise_sigma / np.sum(impulse**2))  # smoothing in 2D divides the std by sum(k^2)
    for k in range(geometry.size[2]):
        hu, label[k] = _render_slice(anatomy, grid, grid.at(k))
        if noise:
            hu += ndimage.gaussian_filter(rng.standard_normal(hu.shape, dtype=np.float32), _NOISE_SMOOTHING) * scale
        ct[k] = np.clip(np.rint(hu), -1024, 3071)
    return ct, label


def _paint(part: Part, points: np.ndarray, hu: np.ndarray, where: np.ndarray) -> None:
    """Paint ``part`` into ``hu`` (the values at ``points``) only ``where`` true."""
    depth = part.shape.depth(points)
    mask = (depth > 0) & where
    hu[mask] = np.where(depth[mask] > part.rim, part.core_hu, part.hu)


def _render_slice(anatomy: Anatomy, grid: _Slice, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless HU (float32) and the label of one slice of points (3, ny, nx)."""
    x, y, z = points
    hu = np.full(x.shape, AIR_HU, dtype=np.float32)
    lab = np.zeros(x.shape, dtype=np.uint8)
    body = anatomy.wall_depth(points, 0.0) > 0
    texture = np.zeros_like(hu)
    texture[body] = anatomy.textured(points[:, body])
    hu[body] = FAT_HU + 6 * texture[body]
    hu[anatomy.wall_depth(points, anatomy.fat) > 0] = MUSCLE_HU
    cavity = anatomy.wall_depth(points, anatomy.fat + anatomy.muscle)
    inside = cavity > 0
    hu[inside] = 25 - 125 / (1 + np.exp(-4 * (texture[inside] - anatomy.visceral_fat)))  # bowel or visceral fat
    for part in anatomy.organs:
        if (window := grid.window(part.shape.centre, part.shape.reach)) is not None:
            _paint(part, points[(slice(None), *window)], hu[window], inside[window])
    (ca, cb), (right, left) = anatomy.cavity, anatomy.domes
    if z.max() > min(right, left) - 80:
        dome = np.where(x < 0, right, left) - 30 * ((np.abs(x) - 0.5 * ca) / (0.5 * ca)) ** 2 - 15 * (y / cb) ** 2
        lung = inside & (z > dome)
        hu[lung] = LUNG_HU + 40 * texture[lung]
        if (window := grid.window(anatomy.heart.shape.centre, anatomy.heart.shape.reach)) is not None:
            _paint(anatomy.heart, points[(slice(None), *window)], hu[window], inside[window])
    _paint_bones(anatomy, points, hu, cavity)
    reach = max(np.linalg.norm(lobe.centre) + lobe.reach for lobe in anatomy.lobes) + 30
    if (window := grid.window(np.zeros(3), reach)) is not None:
        liver = anatomy.liver_depth(points[(slice(None), *window)], cavity[window]) > 0
        hu[window][liver] = anatomy.liver_hu + 3 * texture[window][liver]
        lab[window][liver] = 1
        for tumour in anatomy.tumours:
            _paint_tumour(anatomy, tumour, grid, points, hu, lab)
    return hu, lab


def _paint_tumour(
    anatomy: Anatomy, tumour: Part, grid: _Slice, points: np.ndarray, hu: np.ndarray, lab: np.ndarray
) -> None:
    """Paint a tumour (label 2) where it lies in the liver and so do the centres of all 6 neighbouring voxels."""
    if (window := grid.window(tumour.shape.centre, tumour.shape.reach)) is None:
        return
    sub = points[(slice(None), *window)]
    candidate = (tumour.shape.depth(sub) > 0) & (lab[window] == 1)
    if not candidate.any():
        return
    keep = np.ones(int(candidate.sum()), dtype=bool)
    for step in np.concatenate([grid.steps.T, -grid.steps.T]):
        keep &= anatomy.liver_depth(sub[:, candidate] + step[:, None]) > 0
    candidate[candidate] = keep
    _paint(tumour, sub, hu[window], candidate)
    lab[window][candidate] = 2


def _paint_bones(anatomy: Anatomy, points: np.ndarray, hu: np.ndarray, cavity: np.ndarray) -> None:
    """Spine (vertebrae with discs, canal and arch), paraspinal muscles and ribs."""
    x, y, z = points
    near = (np.abs(x) < 70) & (y > anatomy.spine_y - 25) & (y < anatomy.spine_y + 70)
    if near.any():
        px, py, pz, values = x[near], y[near] - anatomy.spine_y, z[near], hu[near]
        values[(ellipse_depth(np.abs(px) - 32, py - 37, 26, 22) > 0) & (values > AIR_HU)] = MUSCLE_HU
        depth = ellipse_depth(px, py, 21, 16)
        bone = depth > 0
        disc = np.mod(pz[bone] - 7.0, 32.0) < 7.0
        values[bone] = np.where(disc, DISC_HU, np.where(depth[bone] < 2.5, CORTICAL_HU, CANCELLOUS_HU))
        values[(np.hypot(px, py - 25) < 14) | (ellipse_depth(px, py - 47, 5, 12) > 0)] = CORTICAL_HU - 200  # arch
        values[np.hypot(px, py - 25) < 8] = CSF_HU
        hu[near] = values
    (ca, cb), low = anatomy.cavity, anatomy.lobes[0].centre[2] - 40
    wall = (cavity < -1) & (cavity > -9) & (np.abs(x) > 30) & ~((y < 0) & (np.abs(x) < 60)) & (z > low)
    arc = np.arctan2(np.abs(x) / ca, y / cb) * ((ca + cb) / 2)  # mm along the wall from the spine
    hu[wall & (np.cos((z + 0.5 * arc) * (2 * np.pi / 32.0)) > 0.55)] = RIB_HU  # ribs fall 1 mm per 2 mm forward
