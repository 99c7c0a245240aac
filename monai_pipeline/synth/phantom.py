"""Synthetic LiTS-like CT phantoms: an int16 CT in HU and a 0/1/2 label, rendered on any grid.

The anatomy of a seed (:func:`sample_anatomy`) is defined in patient LPS millimetres relative to the body centre:
x grows towards the patient's left (so the liver lies at negative x), y towards the back and z towards the head.
Each voxel takes its value from its physical point, origin + direction @ (index * spacing), one slice at a time,
so one seed gives the same patient on grids of any orientation or spacing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from monai_pipeline.io.geometry import Geometry
from monai_pipeline.synth.anatomy import Anatomy, Lesion, Part, sample_anatomy
from monai_pipeline.synth.body import AIR_HU, paint_bones, paint_chest, paint_table
from monai_pipeline.synth.imaging import NoiseTexture, slice_weights
from monai_pipeline.synth.organs import FAT_HU

__all__ = ["FIELDS_OF_VIEW", "default_thickness", "direction_cosines", "make_phantom", "phantom_geometry"]

FIELDS_OF_VIEW: tuple[str, ...] = ("abdomen", "partial-liver", "chest", "pelvis")
"""``abdomen``: centred on the body, the whole liver in a usual field of view; ``partial-liver``: the scan starts or
ends part way through the liver; ``chest``: lungs and heart above the liver, none of it; ``pelvis``: bladder,
pelvic bones and bowel below the liver, none of it."""


def default_thickness(spacing: Sequence[float]) -> float:
    """The slice thickness (mm) of a grid when none is given: its slice spacing, kept within 1-5 mm."""
    return float(min(max(float(spacing[2]), 1.0), 5.0))


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
    phase: str | None = None,
    fov: str = "abdomen",
    thickness: float | None = None,
) -> tuple[sitk.Image, sitk.Image]:
    """A synthetic CT (int16, HU) and its label (uint8: 0 background, 1 liver, 2 lesion).

    The liver's label includes the portal and hepatic veins inside it; the vena cava, gallbladder and every other
    organ are background. Every lesion (metastasis, HCC or cyst) is label 2.

    Args:
        seed: chooses the patient (:func:`sample_anatomy`) and the noise; equal arguments give equal images.
        size: voxels along the index axes (x, y, z).
        spacing: voxel size in mm along the index axes.
        orientation: a 3-letter code ("LPS", "RAS", "LAI", ...) or 9 direction cosines for an oblique grid.
        noise: add CT-like correlated noise of 8-30 HU depending on the seed.
        phase: contrast phase, one of ``non-contrast``, ``arterial``, ``portal-venous``; default: drawn from the seed.
        fov: field of view, one of :data:`FIELDS_OF_VIEW`; the label has no liver in ``chest`` and ``pelvis``.
        thickness: slice thickness in mm, blurring the image (not the label) across slices; default:
            :func:`default_thickness`.

    Returns:
        The CT and the label on the same grid.

    Raises:
        ValueError: for a bad seed, size, spacing, orientation, phase, field of view or thickness.
    """
    if fov not in FIELDS_OF_VIEW:
        raise ValueError(f"fov must be one of {', '.join(FIELDS_OF_VIEW)}, got {fov!r}.")
    anatomy = sample_anatomy(seed, phase)
    geometry = phantom_geometry(size, spacing, orientation, anatomy.centre)
    thickness = default_thickness(spacing) if thickness is None else thickness
    weights = slice_weights(thickness, geometry.spacing[2])
    if fov != "abdomen":
        margin = thickness + 2 * geometry.spacing[2]
        rng = np.random.default_rng([anatomy.seed, 4])
        geometry = phantom_geometry(size, spacing, orientation, _fov_centre(anatomy, geometry, fov, margin, rng))
    ct, label = _render(anatomy, geometry, weights, noise)
    return geometry.apply(sitk.GetImageFromArray(ct)), geometry.apply(sitk.GetImageFromArray(label))


def _fov_centre(anatomy: Anatomy, geometry: Geometry, fov: str, margin: float, rng: np.random.Generator) -> np.ndarray:
    """The LPS centre of a field of view of ``geometry``'s size that shows the part of the body ``fov`` names."""
    direction = np.reshape(geometry.direction, (3, 3))
    half = 0.5 * float(np.sum(np.abs(direction[2]) * (np.asarray(geometry.size) - 1) * geometry.spacing))
    low, high = anatomy.liver_z_range()
    if fov == "chest":
        shift = high + margin + half
    elif fov == "pelvis":  # below the liver, and down to the ischia when the field of view is long enough
        shift = min(low - margin - half, anatomy.sacrum_z - 175 + half)
    else:
        cut = low + (high - low) * rng.uniform(0.35, 0.65)
        shift = cut - half if rng.uniform() < 0.5 else cut + half
    return anatomy.centre + np.array([0.0, 0.0, shift])


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


def _render(anatomy: Anatomy, geometry: Geometry, weights: np.ndarray, noise: bool) -> tuple[np.ndarray, np.ndarray]:
    """Paint the anatomy slice by slice, average slabs with ``weights`` and add noise; (z, y, x) int16 CT, uint8 label.

    Each slice is painted once and kept only while a later slab still needs it.
    """
    ct = np.empty(geometry.shape, dtype=np.int16)
    label = np.empty(geometry.shape, dtype=np.uint8)
    grid = _Slice(geometry, anatomy.centre)
    rng = np.random.default_rng([anatomy.seed, 1])
    texture = NoiseTexture(geometry.shape[1:], geometry.spacing[1::-1], anatomy.noise_sigma, anatomy.noise_peak)
    reach, last = len(weights) // 2, geometry.size[2] - 1
    painted: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k in range(geometry.size[2]):
        for j in range(max(k - reach, 0), min(k + reach, last) + 1):
            if j not in painted:
                painted[j] = _render_slice(anatomy, grid, grid.at(j))
        hu = sum(w * painted[min(max(k + o, 0), last)][0] for o, w in zip(range(-reach, reach + 1), weights))
        label[k] = painted[k][1]
        painted.pop(k - reach, None)
        if noise:
            hu = hu + texture.sample(rng)
        ct[k] = np.clip(np.rint(hu), -1024, 3071)
    return ct, label


def _paint(anatomy: Anatomy, part: Part, points: np.ndarray, hu: np.ndarray, where: np.ndarray) -> None:
    """Paint ``part`` into ``hu`` (the values at ``points``) only ``where`` true."""
    depth = part.shape.depth(points)
    mask = (depth > 0) & where
    if not mask.any():
        return
    core = depth[mask] > part.rim
    values = np.where(core, np.float32(part.core_hu), np.float32(part.hu))
    if part.mottle:  # the product of two fine fields: blotches without a direction
        fine = points[:, mask] * np.float32(3.0)
        values += core * part.mottle * anatomy.textured(fine) * anatomy.textured(fine[::-1] * np.float32(0.8))
    hu[mask] = values


def _paint_layer(
    anatomy: Anatomy, parts: tuple[Part, ...], grid: _Slice, points: np.ndarray, hu: np.ndarray, where: np.ndarray
) -> None:
    """Paint ``parts`` in turn, each only near itself and ``where`` true."""
    for part in parts:
        if (window := grid.window(part.shape.centre, part.shape.reach)) is not None:
            _paint(anatomy, part, points[(slice(None), *window)], hu[window], where[window])


def _render_slice(anatomy: Anatomy, grid: _Slice, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The noiseless HU (float32) and the label of one slice of points (3, ny, nx)."""
    hu = np.full(points.shape[1:], AIR_HU, dtype=np.float32)
    lab = np.zeros(points.shape[1:], dtype=np.uint8)
    body = anatomy.wall_depth(points, 0.0) > 0
    inner = points[:, body]
    texture = np.zeros_like(hu)
    texture[body] = anatomy.textured(inner)
    hu[body] = FAT_HU + 6 * texture[body]
    wall = np.zeros_like(body)
    wall[body] = anatomy.wall_depth(inner, anatomy.fat) > 0
    hu[wall] = anatomy.hu["muscle"]
    cavity = np.full(hu.shape, -1e3, dtype=np.float32)  # outside the body: far outside the cavity
    cavity[body] = anatomy.wall_depth(inner, anatomy.fat + anatomy.muscle)
    inside = cavity > 0
    bowel = 0.5 * anatomy.hu["bowel_wall"] + 10  # collapsed bowel and mesentery, or visceral fat
    hu[inside] = bowel + (FAT_HU - bowel) / (1 + np.exp(-4 * (texture[inside] - anatomy.visceral_fat)))
    _paint_layer(anatomy, anatomy.organs, grid, points, hu, inside)
    paint_chest(anatomy, points, hu, inside)
    _paint_layer(anatomy, anatomy.late, grid, points, hu, inside)
    _paint_layer(anatomy, anatomy.skeleton, grid, points, hu, wall)
    paint_bones(anatomy, points, hu, cavity)
    paint_table(anatomy, points, hu)
    low, high = anatomy.liver_z_range()
    reach = max(np.linalg.norm(lobe.centre) + lobe.reach for lobe in anatomy.lobes) + 30
    if low < points[2].max() and points[2].min() < high and (window := grid.window(np.zeros(3), reach)) is not None:
        liver = anatomy.liver_depth(points[(slice(None), *window)], cavity[window]) > 0
        hu[window][liver] = anatomy.liver_hu + 3 * texture[window][liver]
        lab[window][liver] = 1
        _paint_layer(anatomy, anatomy.hepatic, grid, points, hu, lab == 1)
        for tumour in anatomy.tumours:
            _paint_tumour(anatomy, tumour, grid, points, hu, lab)
    return hu, lab


def _paint_tumour(
    anatomy: Anatomy, tumour: Lesion, grid: _Slice, points: np.ndarray, hu: np.ndarray, lab: np.ndarray
) -> None:
    """Paint a lesion (label 2) where it lies in the liver and so do the centres of all 6 neighbouring voxels."""
    if (window := grid.window(tumour.shape.centre, tumour.shape.reach)) is None:
        return
    sub = points[(slice(None), *window)]
    depth = tumour.shape.depth(sub)
    candidate = (depth > 0) & (lab[window] >= 1)
    if not candidate.any():
        return
    keep = np.ones(int(candidate.sum()), dtype=bool)
    for step in np.concatenate([grid.steps.T, -grid.steps.T]):
        keep &= anatomy.liver_depth(sub[:, candidate] + step[:, None]) > 0
    candidate[candidate] = keep
    hu[window][candidate] = tumour.values(depth[candidate])
    lab[window][candidate] = 2
