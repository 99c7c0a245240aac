"""The anatomy of a synthetic patient, drawn from a seed, in patient LPS millimetres relative to the body centre.

x grows towards the patient's left (so the liver lies at negative x), y towards the back and z towards the head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["Anatomy", "Ellipsoid", "Part", "sample_anatomy"]

AIR_HU, FAT_HU, MUSCLE_HU, LUNG_HU = -1000.0, -100.0, 45.0, -850.0
CORTICAL_HU, CANCELLOUS_HU, RIB_HU, DISC_HU, CSF_HU, GAS_HU = 900.0, 400.0, 650.0, 90.0, 20.0, -950.0
LIVER_GAP_MM = 4.0
"""Least depth (mm) the liver keeps from the abdominal wall (where the ribs run) and from the spine."""
_SUPERELLIPSE = 2.4  # exponent of the body outline: between an ellipse (2) and a rounded rectangle


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
class Part:
    """An organ painted as one ellipsoid: ``hu`` within ``rim`` mm of its surface, ``core_hu`` deeper."""

    shape: Ellipsoid
    hu: float
    core_hu: float
    rim: float = 0.0


@dataclass(frozen=True)
class Anatomy:
    """One synthetic patient; lengths in mm relative to ``centre``, values in HU.

    Attributes:
        seed: the seed it was drawn from (also seeds the image noise).
        centre: the LPS position of the body centre; a phantom's field of view is centred on it.
        outline: semi-axes of the body outline, left-right and front-back.
        wobble: relative amplitude, wavelength (mm) and phase of the outline's variation along z.
        fat: thickness of the subcutaneous fat; the abdominal wall muscle lies inside it.
        muscle: thickness of the abdominal wall muscle, in which the ribs run.
        spine_y: y of the vertebral bodies' centre.
        domes: heights of the right and left diaphragm domes; lung lies above them.
        organs: parts painted in order over the abdominal cavity before the lungs.
        heart: painted over the lungs.
        lobes: the liver is their smooth union, warped, kept inside the wall and off the spine.
        warp: (3, 5) per coordinate a wave vector (3), phase and amplitude of the liver's deformation.
        tumours: parts painted inside the liver with label 2, apart from each other.
        texture: (m, 4) wave vectors and phases of a smooth texture field of unit variance.
        liver_hu: mean HU of the liver parenchyma.
        visceral_fat: texture level above which the abdominal cavity holds fat rather than bowel.
        noise_sigma: standard deviation (HU) of the image noise.
    """

    seed: int
    centre: np.ndarray
    outline: tuple[float, float]
    wobble: tuple[float, float, float]
    fat: float
    muscle: float
    spine_y: float
    domes: tuple[float, float]
    organs: tuple[Part, ...]
    heart: Part
    lobes: tuple[Ellipsoid, ...]
    warp: np.ndarray
    tumours: tuple[Part, ...]
    texture: np.ndarray
    liver_hu: float
    visceral_fat: float
    noise_sigma: float

    @property
    def cavity(self) -> tuple[float, float]:
        """Semi-axes of the abdominal cavity (inside fat and muscle) where the outline is at its mean."""
        return self.outline[0] - self.fat - self.muscle, self.outline[1] - self.fat - self.muscle

    def wall_depth(self, points: np.ndarray, inset: float) -> np.ndarray:
        """Depth (mm, positive inside, at most the distance) of ``points`` in the outline shrunk by ``inset`` mm."""
        amplitude, wavelength, phase = self.wobble
        scale = 1 + amplitude * np.sin(points[2] * (2 * np.pi / wavelength) + phase)
        a, b = self.outline[0] * scale - inset, self.outline[1] * scale - inset
        rho = (np.abs(points[0] / a) ** _SUPERELLIPSE + np.abs(points[1] / b) ** _SUPERELLIPSE) ** (1 / _SUPERELLIPSE)
        return (1 - rho) * np.minimum(a, b)

    def liver_depth(self, points: np.ndarray, cavity: np.ndarray | None = None) -> np.ndarray:
        """Approximate depth (mm, positive inside) of ``points`` (3, ...) in the liver.

        Args:
            points: body-centred LPS points.
            cavity: their :meth:`wall_depth` in the abdominal cavity, when already known.
        """
        shape, dtype = (3,) + (1,) * (points.ndim - 1), points.dtype
        phase = np.tensordot(self.warp[:, :3].astype(dtype), points, axes=1) + self.warp[:, 3].reshape(shape)
        warped = points + self.warp[:, 4].reshape(shape).astype(dtype) * np.sin(phase.astype(dtype))
        depth = self.lobes[0].depth(warped)
        for lobe in self.lobes[1:]:
            depth = _smooth_max(depth, lobe.depth(warped), 20.0)
        if cavity is None:
            cavity = self.wall_depth(points, self.fat + self.muscle)
        x, y = np.abs(points[0]), points[1] - self.spine_y
        spine = ellipse_depth(x, y, 30.0, 26.0)  # vertebral body and diaphragmatic crus
        spine = np.maximum(spine, ellipse_depth(x - 32.0, y - 37.0, 32.0, 28.0))  # and the back muscles
        return np.minimum(depth, np.minimum(cavity, -spine) - LIVER_GAP_MM)

    def textured(self, points: np.ndarray) -> np.ndarray:
        """A smooth field of about unit variance at ``points`` (3, ...)."""
        shape, dtype = (-1,) + (1,) * (points.ndim - 1), points.dtype
        waves = np.tensordot(self.texture[:, :3].astype(dtype), points, axes=1)
        waves += self.texture[:, 3].reshape(shape).astype(dtype)
        return np.cos(waves).sum(0) * np.float32(np.sqrt(2 / len(self.texture)))


def _smooth_max(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """A smooth union of two depth fields, rounding the crease over about ``k`` mm."""
    h = np.maximum(k - np.abs(a - b), 0) / k
    return np.maximum(a, b) + h * h * (k / 4)


def ellipse_depth(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    """Depth (mm, positive inside, at most the distance) in an axis-aligned ellipse centred at 0."""
    return (1 - np.sqrt((x / rx) ** 2 + (y / ry) ** 2)) * min(rx, ry)


def _rotation(z_deg: float, x_deg: float = 0.0, y_deg: float = 0.0) -> np.ndarray:
    """The rotation matrix Rz @ Ry @ Rx, angles in degrees."""
    return Rotation.from_euler("ZYX", [z_deg, y_deg, x_deg], degrees=True).as_matrix()


def sample_anatomy(seed: int) -> Anatomy:
    """Draw one patient: body, spine, organs, a liver of 4-5 smoothly merged lobes and 1-6 tumours inside it.

    Raises:
        ValueError: for a seed that is not a non-negative whole number.
    """
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}.")
    rng = np.random.default_rng(int(seed))
    u = rng.uniform
    a, b, fat, muscle = u(140, 160), u(100, 122), u(10, 26), u(9, 14)
    ca, cb = a - fat - muscle, b - fat - muscle
    spine_y, dz = b - fat - 62.0, u(-10, 10)

    def ellipsoid(centre, radii, z_deg: float = 0.0, scale: float = 1.0) -> Ellipsoid:
        return Ellipsoid(
            centre=np.asarray(centre, dtype=float) + u(-6, 6, 3),
            radii=np.asarray(radii, dtype=float) * u(0.9, 1.1, 3) * scale,
            axes=_rotation(z_deg + u(-12, 12), u(-6, 6), u(-6, 6)),
        )

    def tube(x: float, y: float, radius: float, hu: float) -> Part:  # a vessel along z
        return Part(Ellipsoid(np.array([x, y, 0.0]), np.array([radius, radius, 1e4]), np.eye(3)), hu, hu)

    size = u(0.86, 1.02)  # the liver grows half as much as the abdominal cavity from patient to patient
    lx, ly = (ca + 118.0) / 2, (cb + 80.0) / 2
    lobes = [
        ellipsoid((-0.45 * lx, 0.12 * ly, 10 + dz), (0.6 * lx, ly, 80), scale=size),
        ellipsoid((-0.62 * lx, 0.3 * ly, -50 + dz), (0.32 * lx, 0.6 * ly, 45), scale=size),
        ellipsoid((-0.12 * lx, -0.1 * ly, 35 + dz), (0.32 * lx, 0.6 * ly, 45), scale=size),
        ellipsoid((0.22 * lx, -0.5 * ly, 45 + dz), (0.4 * lx, 0.35 * ly, 32), z_deg=-15, scale=size),
    ]
    if u() < 0.5:  # an inferior tongue of the right lobe (Riedel's lobe) in half the patients
        lobes.append(ellipsoid((-0.7 * lx, 0.05 * ly, -85 + dz), (0.22 * lx, 0.4 * ly, 40), scale=size))
    vessel_hu, kidney_hu, spleen_hu = u(40, 170), u(120, 160), u(45, 55)
    stomach = ellipsoid((0.35 * ca, -0.3 * cb, 30 + dz), (0.3 * ca, 0.4 * cb, 45), z_deg=20)
    gas = Ellipsoid(stomach.centre - stomach.axes[:, 1] * 0.55 * stomach.radii[1], stomach.radii * [0.6, 0.3, 0.6],
                    stomach.axes)  # fmt: skip
    spleen = ellipsoid((0.7 * ca, 0.35 * cb, 25 + dz), (0.2 * ca, 0.5 * cb, 50), z_deg=u(20, 40))
    organs = [
        Part(spleen, spleen_hu, spleen_hu),
        Part(stomach, 15.0, 15.0),
        Part(gas, GAS_HU, GAS_HU),
        Part(ellipsoid((-0.6 * ca, spine_y + 10, -75 + dz), (25, 22, 55), z_deg=25), kidney_hu, 35.0, 6.0),
        Part(ellipsoid((0.6 * ca, spine_y + 10, -60 + dz), (25, 22, 55), z_deg=-25), kidney_hu, 35.0, 6.0),
        tube(10.0, spine_y - 30, 12.0, vessel_hu),  # aorta
        tube(-24.0, spine_y - 24, 12.0, vessel_hu - 15),  # inferior vena cava
    ]
    for _ in range(rng.integers(2, 6)):  # gas in the bowel
        centre = np.array([u(-0.2, 0.7) * ca, u(-0.7, -0.1) * cb, u(-120, -30) + dz])
        organs.append(Part(Ellipsoid(centre, u(6, 16, 3), _rotation(u(0, 180))), GAS_HU, GAS_HU))
    top = float(lobes[0].centre[2] + 0.9 * lobes[0].radii[2])
    warp = rng.normal(size=(3, 3))
    warp *= (2 * np.pi / u(80, 140, (3, 1))) / np.linalg.norm(warp, axis=1, keepdims=True)
    texture = rng.normal(size=(12, 3))
    texture *= (2 * np.pi / u(20, 70, (12, 1))) / np.linalg.norm(texture, axis=1, keepdims=True)
    anatomy = Anatomy(
        seed=int(seed),
        centre=np.array([u(-20, 20), u(-30, 10), u(-700, -100)]),
        outline=(float(a), float(b)),
        wobble=(float(u(0.02, 0.05)), float(u(250, 450)), float(u(0, 2 * np.pi))),
        fat=float(fat),
        muscle=float(muscle),
        spine_y=float(spine_y),
        domes=(top, top - float(u(10, 25))),
        organs=tuple(organs),
        heart=Part(ellipsoid((0.2 * ca, -0.3 * cb, top + 45), (0.42 * ca, 0.6 * cb, 60), z_deg=30), 40.0, 40.0),
        lobes=tuple(lobes),
        warp=np.column_stack([warp, u(0, 2 * np.pi, 3), u(5, 10, 3)]),
        tumours=(),
        texture=np.column_stack([texture, u(0, 2 * np.pi, 12)]),
        liver_hu=float(u(55, 70)),
        visceral_fat=float(u(0.0, 0.8)),
        noise_sigma=float(u(10, 20)),
    )
    return dataclasses.replace(anatomy, tumours=_place_tumours(anatomy, rng))


def _place_tumours(anatomy: Anatomy, rng: np.random.Generator) -> tuple[Part, ...]:
    """1-6 hypodense tumours 5-40 mm across, 3 mm or more inside the liver and 5 mm or more apart.

    The first is 18-40 mm across and the second, when there is one, 5-10 mm.
    """
    u = rng.uniform
    count = 1 + int(rng.binomial(5, 0.45))
    diameters = [u(18, 40), u(5, 10), *np.exp(u(np.log(6), np.log(30), 4))]
    base_hu = min(u(12, 32), anatomy.liver_hu - 28)
    tumours: list[Part] = []
    for diameter in diameters[:count]:
        radius = diameter / 2
        for attempt in range(1, 401):
            lobe = anatomy.lobes[rng.integers(len(anatomy.lobes))]
            centre = lobe.centre + lobe.axes @ (u(-0.7, 0.7, 3) * lobe.radii)
            shape = Ellipsoid(centre, radius * u(0.85, 1.15, 3), _rotation(u(0, 180), u(-30, 30), u(-30, 30)))
            apart = all(np.linalg.norm(centre - t.shape.centre) > shape.reach + t.shape.reach + 5 for t in tumours)
            if apart and anatomy.liver_depth(shape.surface_points()).min() > 3.0:
                hu = base_hu + u(-4, 4)
                necrosis = u(5, 15) if diameter > 25 else 0.0  # a darker centre in large tumours
                tumours.append(Part(shape, hu, hu - necrosis, 0.4 * radius))
                break
            if attempt % 100 == 0:  # no room for it: try smaller
                radius *= 0.8
    return tuple(tumours)
