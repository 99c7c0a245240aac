"""Small synthetic abdominal CT volumes with liver and tumour labels, for the preprocessing and prepare tests.

Everything is defined in physical space (ITK's LPS frame, mm) around the centre of the field of view, so that
the same anatomy can be put on grids of any spacing and orientation:

- air at -1000 HU outside an elliptic body (a cylinder along the patient's S axis) at 40 HU;
- a liver ellipsoid at 60 HU on the patient's right (smaller x in LPS), label 1;
- tumour spheres at 20 HU inside the liver, label 2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

AIR_HU, BODY_HU, LIVER_HU, TUMOUR_HU = -1000, 40, 60, 20

LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
LAI = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, -1.0)


def rotation(z_deg: float, x_deg: float) -> np.ndarray:
    """A rotation about the S axis by ``z_deg`` followed by one about the L axis by ``x_deg``."""
    a, b = np.radians(z_deg), np.radians(x_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return rz @ rx


OBLIQUE = tuple(float(v) for v in rotation(20.0, 10.0).ravel())
"""An oblique grid whose closest axis code is LPS."""

DIRECTIONS = {"LPS": LPS, "RAS": RAS, "LAI": LAI, "oblique": OBLIQUE}


@dataclass(frozen=True)
class Phantom:
    """The anatomy of a synthetic abdomen, in mm relative to the centre of the field of view (LPS axes).

    Attributes:
        body: semi-axes (x, y) of the elliptic body cross-section; the body runs through every slice.
        liver_centre: centre of the liver ellipsoid.
        liver: semi-axes (x, y, z) of the liver ellipsoid.
        tumours: (centre, radius) of each tumour sphere, inside the liver.
    """

    body: tuple[float, float] = (40.0, 30.0)
    liver_centre: tuple[float, float, float] = (-15.0, 0.0, 0.0)
    liver: tuple[float, float, float] = (20.0, 16.0, 18.0)
    tumours: tuple[tuple[tuple[float, float, float], float], ...] = (((-18.0, 2.0, 0.0), 6.0),)
    extra_labels: tuple[tuple[tuple[float, float, float], float, int], ...] = field(default=())


SMALL = Phantom()
"""Fits a 96 x 80 x 60 mm field of view."""

LARGE = Phantom(
    body=(75.0, 55.0),
    liver_centre=(-30.0, 0.0, 0.0),
    liver=(38.0, 30.0, 34.0),
    tumours=(((-32.0, 2.0, 4.0), 15.0),),
)
"""Fits a 180 x 140 x 100 mm field of view: a liver of about 160 mL with a 30 mm tumour."""


def grid(
    fov_mm: Sequence[float],
    spacing: Sequence[float],
    direction: Sequence[float] = LPS,
    centre: Sequence[float] = (12.0, -30.0, 150.0),
) -> tuple[tuple[int, int, int], tuple[float, float, float], tuple[float, ...]]:
    """(size, origin, direction) of a grid of ``spacing`` covering ``fov_mm`` along its own axes, centred on
    ``centre`` (LPS)."""
    size = tuple(int(round(f / s)) for f, s in zip(fov_mm, spacing))
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    origin = np.asarray(centre, dtype=float) - matrix @ ((np.asarray(size) - 1) / 2 * np.asarray(spacing))
    return size, tuple(float(o) for o in origin), tuple(float(d) for d in matrix.ravel())


def physical_points(image: sitk.Image) -> np.ndarray:
    """The LPS position of every voxel, as an array of shape (z, y, x, 3)."""
    size = np.asarray(image.GetSize())
    spacing = np.asarray(image.GetSpacing())
    matrix = np.asarray(image.GetDirection()).reshape(3, 3)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    index = np.stack([i, j, k], axis=-1).astype(float)
    return (index * spacing) @ matrix.T + np.asarray(image.GetOrigin())


def make_case(
    fov_mm: Sequence[float] = (96.0, 80.0, 60.0),
    spacing: Sequence[float] = (0.8, 0.8, 2.5),
    direction: Sequence[float] = LPS,
    *,
    centre: Sequence[float] = (12.0, -30.0, 150.0),
    phantom: Phantom = SMALL,
    noise_hu: float = 0.0,
    seed: int = 0,
) -> tuple[sitk.Image, sitk.Image]:
    """A CT (int16 HU, as LiTS ships them) and its label map (uint8) on the same grid.

    Args:
        fov_mm: extent of the grid along its own axes.
        spacing: voxel size (x, y, z).
        direction: 3x3 direction cosines, row-major.
        centre: LPS position of the centre of the field of view.
        phantom: the anatomy.
        noise_hu: standard deviation of Gaussian noise added to the CT.
        seed: of the noise.
    """
    size, origin, direction = grid(fov_mm, spacing, direction, centre)
    reference = sitk.Image(list(size), sitk.sitkUInt8)
    reference.SetSpacing(tuple(float(s) for s in spacing))
    reference.SetOrigin(origin)
    reference.SetDirection(direction)
    p = physical_points(reference) - np.asarray(centre, dtype=float)

    body = (p[..., 0] / phantom.body[0]) ** 2 + (p[..., 1] / phantom.body[1]) ** 2 <= 1.0
    liver = (((p - np.asarray(phantom.liver_centre)) / np.asarray(phantom.liver)) ** 2).sum(-1) <= 1.0
    label = np.zeros(p.shape[:3], dtype=np.uint8)
    ct = np.full(p.shape[:3], AIR_HU, dtype=np.float64)
    ct[body] = BODY_HU
    ct[liver] = LIVER_HU
    label[liver] = 1
    for tumour_centre, radius in phantom.tumours:
        inside = ((p - np.asarray(tumour_centre)) ** 2).sum(-1) <= radius**2
        ct[inside] = TUMOUR_HU
        label[inside] = 2
    for extra_centre, radius, value in phantom.extra_labels:
        label[((p - np.asarray(extra_centre)) ** 2).sum(-1) <= radius**2] = value
    if noise_hu:
        ct += np.random.default_rng(seed).normal(0.0, noise_hu, ct.shape)
    return with_geometry(np.rint(ct).astype(np.int16), reference), with_geometry(label, reference)


def with_geometry(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """``array`` (z, y, x) as a SimpleITK image with the geometry of ``reference``."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """The Dice coefficient of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def value_at(image: sitk.Image, point: Sequence[float]) -> float:
    """The value of the voxel whose centre is nearest to the LPS ``point``."""
    return image[image.TransformPhysicalPointToIndex(tuple(float(v) for v in point))]


def centroid(mask_image: sitk.Image, value: int | None = None) -> np.ndarray:
    """The LPS centroid of the voxels equal to ``value`` (non-zero voxels when ``None``)."""
    values = sitk.GetArrayViewFromImage(mask_image)
    mask = values != 0 if value is None else values == value
    return physical_points(mask_image)[mask].mean(axis=0)


@dataclass(frozen=True)
class RawFiles:
    """The files of one synthetic LiTS case."""

    number: int
    image: Path
    label: Path | None


def write_lits_case(
    folder: Path,
    number: int,
    direction: Sequence[float] = LPS,
    *,
    spacing: Sequence[float] = (0.8, 0.8, 2.5),
    fov_mm: Sequence[float] = (96.0, 80.0, 60.0),
    ending: str = ".nii.gz",
    noise_hu: float = 10.0,
    labelled: bool = True,
    phantom: Phantom = SMALL,
) -> RawFiles:
    """Write ``volume-<N>`` and ``segmentation-<N>`` (or ``test-volume-<N>`` when not ``labelled``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ct, label = make_case(fov_mm, spacing, direction, phantom=phantom, noise_hu=noise_hu, seed=number)
    image_path = folder / (f"volume-{number}{ending}" if labelled else f"test-volume-{number}{ending}")
    sitk.WriteImage(ct, str(image_path), useCompression=ending.endswith(".gz"))
    label_path = None
    if labelled:
        label_path = folder / f"segmentation-{number}{ending}"
        sitk.WriteImage(label, str(label_path), useCompression=ending.endswith(".gz"))
    return RawFiles(number, image_path, label_path)


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root``, by relative path."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
