"""The anatomy of a synthetic patient, drawn from a seed, in patient LPS millimetres relative to the body centre.

x grows towards the patient's left (so the liver lies at negative x), y towards the back and z towards the head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from monai_pipeline.synth.contrast import PHASES, check_phase, sample_contrast
from monai_pipeline.synth.lesions import Lesion, place_lesions
from monai_pipeline.synth.organs import Builder, Part
from monai_pipeline.synth.shapes import Ellipsoid, ellipse_depth, smooth_max

__all__ = ["Anatomy", "Ellipsoid", "Lesion", "Part", "sample_anatomy"]

LIVER_GAP_MM = 4.0
"""Least depth (mm) the liver keeps from the abdominal wall (where the ribs run) and from the spine."""
_SUPERELLIPSE = 2.4  # exponent of the body outline: between an ellipse (2) and a rounded rectangle


@dataclass(frozen=True)
class Anatomy:
    """One synthetic patient; lengths in mm relative to ``centre``, values in HU.

    Attributes:
        seed: the seed it was drawn from (also seeds the image noise).
        phase: the contrast phase, one of :data:`~monai_pipeline.synth.contrast.PHASES`.
        hu: the patient's tissue values in that phase (see :func:`~monai_pipeline.synth.contrast.sample_contrast`).
        centre: the LPS position of the body centre; an abdominal field of view is centred on it.
        outline: semi-axes of the body outline, left-right and front-back.
        wobble: relative amplitude, wavelength (mm) and phase of the outline's variation along z.
        hips: height below which the outline widens, and by how much (relative) 80 mm lower.
        fat: thickness of the subcutaneous fat; the abdominal wall muscle lies inside it.
        muscle: thickness of the abdominal wall muscle, in which the ribs run.
        spine_y: y of the vertebral bodies' centre.
        sacrum_z: height of the top of the sacrum, where the lumbar spine ends.
        domes: heights of the right and left diaphragm domes; lung lies above them.
        organs: parts painted in order over the abdominal cavity before the lungs.
        late: parts painted over the cavity after the lungs (heart, great vessels, airways).
        skeleton: parts painted inside the subcutaneous fat after them (pelvic bones, gluteal muscles).
        hepatic: vessels painted inside the liver, which keep its label.
        carved: parts the liver keeps clear of (vena cava, gallbladder, right kidney).
        lobes: the liver is their smooth union, warped, kept inside the wall and off the spine.
        warp: (3, 5) per coordinate a wave vector (3), phase and amplitude of the liver's deformation.
        tumours: lesions painted inside the liver with label 2, apart from each other.
        texture: (m, 4) wave vectors and phases of a smooth texture field of unit variance.
        visceral_fat: texture level above which the abdominal cavity holds fat rather than collapsed bowel.
        table: y of the top of the scanner table.
        noise_sigma: standard deviation (HU) of the image noise.
        noise_peak: spatial frequency (cycles/mm) at which the noise power peaks.
    """

    seed: int
    phase: str
    hu: dict[str, float]
    centre: np.ndarray
    outline: tuple[float, float]
    wobble: tuple[float, float, float]
    hips: tuple[float, float]
    fat: float
    muscle: float
    spine_y: float
    sacrum_z: float
    domes: tuple[float, float]
    organs: tuple[Part, ...]
    late: tuple[Part, ...]
    skeleton: tuple[Part, ...]
    hepatic: tuple[Part, ...]
    carved: tuple[Part, ...]
    lobes: tuple[Ellipsoid, ...]
    warp: np.ndarray
    tumours: tuple[Lesion, ...]
    texture: np.ndarray
    visceral_fat: float
    table: float
    noise_sigma: float
    noise_peak: float

    @property
    def liver_hu(self) -> float:
        """Mean HU of the liver parenchyma."""
        return self.hu["liver"]

    @property
    def cavity(self) -> tuple[float, float]:
        """Semi-axes of the abdominal cavity (inside fat and muscle) where the outline is at its mean."""
        return self.outline[0] - self.fat - self.muscle, self.outline[1] - self.fat - self.muscle

    def liver_z_range(self) -> tuple[float, float]:
        """Heights (mm) between which all of the liver lies, with some margin."""
        reach = float(np.abs(self.warp[:, 4]).max())
        low = min(lobe.centre[2] - lobe.z_extent for lobe in self.lobes) - reach
        high = max(lobe.centre[2] + lobe.z_extent for lobe in self.lobes) + reach
        return float(low), float(high)

    def wall_depth(self, points: np.ndarray, inset: float) -> np.ndarray:
        """Depth (mm, positive inside, at most the distance) of ``points`` in the outline shrunk by ``inset`` mm."""
        amplitude, wavelength, phase = self.wobble
        scale = 1 + amplitude * np.sin(points[2] * (2 * np.pi / wavelength) + phase)
        hip_z, hip = self.hips
        a = self.outline[0] * scale * (1 + hip * np.clip((hip_z - points[2]) / 80, 0, 1)) - inset
        b = self.outline[1] * scale - inset
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
            depth = smooth_max(depth, lobe.depth(warped), 20.0)
        if cavity is None:
            cavity = self.wall_depth(points, self.fat + self.muscle)
        x, y = np.abs(points[0]), points[1] - self.spine_y
        spine = ellipse_depth(x, y, 30.0, 26.0)  # vertebral body and diaphragmatic crus
        spine = np.maximum(spine, ellipse_depth(x - 32.0, y - 37.0, 32.0, 28.0))  # and the back muscles
        depth = np.minimum(depth, np.minimum(cavity, -spine) - LIVER_GAP_MM)
        low, high = float(points[2].min()), float(points[2].max())
        for part in self.carved:
            z, reach = float(part.shape.centre[2]), part.shape.z_extent
            if z - reach < high and z + reach > low:
                gap = 0.0 if part.name == "ivc" else 1.5  # the liver wraps the cava; fat lines the others
                depth = np.minimum(depth, -part.shape.depth(points) - gap)
        return depth

    def textured(self, points: np.ndarray) -> np.ndarray:
        """A smooth field of about unit variance at ``points`` (3, ...)."""
        shape, dtype = (-1,) + (1,) * (points.ndim - 1), points.dtype
        waves = np.tensordot(self.texture[:, :3].astype(dtype), points, axes=1)
        waves += self.texture[:, 3].reshape(shape).astype(dtype)
        return np.cos(waves).sum(0) * np.float32(np.sqrt(2 / len(self.texture)))


def _top_of(parts: list[Part], names: set[str]) -> float:
    """The highest z that the parts called ``names`` reach."""
    return max(float(part.shape.centre[2]) + part.shape.z_extent for part in parts if part.name in names)


def sample_anatomy(seed: int, phase: str | None = None) -> Anatomy:
    """Draw one patient: body, skeleton, organs around a liver of 4-5 smoothly merged lobes with 1-6 lesions.

    Args:
        seed: chooses the patient.
        phase: the contrast phase (one of :data:`~monai_pipeline.synth.contrast.PHASES`); default: drawn from the
            seed, a third each.

    Raises:
        ValueError: for a seed that is not a non-negative whole number, or an unknown phase.
    """
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed!r}.")
    rng = np.random.default_rng(int(seed))
    drawn = PHASES[int(rng.integers(len(PHASES)))]
    phase = drawn if phase is None else check_phase(phase)
    values = np.random.default_rng([int(seed), 5])  # its own stream: one patient, whatever the phase
    hu = sample_contrast(phase, values)
    u = rng.uniform
    a, b, fat, muscle = u(130, 170), u(95, 130), u(8, 30), u(9, 14)
    ca, cb = a - fat - muscle, b - fat - muscle
    spine_y, dz = b - fat - 62.0, u(-10, 10)
    build = Builder(rng, (ca, cb), spine_y, dz, hu)

    size = u(0.82, 1.08)  # the liver grows half as much as the abdominal cavity from patient to patient
    lx, ly = (ca + 118.0) / 2, (cb + 80.0) / 2
    lobes = [
        build.ellipsoid((-0.45 * lx, 0.12 * ly, 10), (0.6 * lx, ly, 80), scale=size),
        build.ellipsoid((-0.62 * lx, 0.3 * ly, -50), (0.32 * lx, 0.6 * ly, 45), scale=size),
        build.ellipsoid((-0.12 * lx, -0.1 * ly, 35), (0.32 * lx, 0.6 * ly, 45), scale=size),
        build.ellipsoid((0.22 * lx, -0.5 * ly, 45), (0.4 * lx, 0.35 * ly, 32), z_deg=-15, scale=size * u(0.6, 1.2)),
    ]
    if u() < 0.5:  # an inferior tongue of the right lobe (Riedel's lobe) in half the patients
        lobes.append(build.ellipsoid((-0.7 * lx, 0.05 * ly, -85), (0.22 * lx, 0.4 * ly, 40), scale=size))
    top = float(lobes[0].centre[2] + 0.9 * lobes[0].radii[2])
    organs = build.abdomen()
    late = build.late(top)
    gallbladder = next(part for part in organs if part.name == "gallbladder")
    kidney = next(part for part in organs if part.name == "kidney_right")
    warp = rng.normal(size=(3, 3))
    warp *= (2 * np.pi / u(80, 140, (3, 1))) / np.linalg.norm(warp, axis=1, keepdims=True)
    texture = rng.normal(size=(12, 3))
    texture *= (2 * np.pi / u(20, 70, (12, 1))) / np.linalg.norm(texture, axis=1, keepdims=True)
    anatomy = Anatomy(
        seed=int(seed),
        phase=phase,
        hu=hu,
        centre=np.array([u(-20, 20), u(-30, 10), u(-700, -100)]),
        outline=(float(a), float(b)),
        wobble=(float(u(0.02, 0.05)), float(u(250, 450)), float(u(0, 2 * np.pi))),
        hips=(float(build.bifurcation - 20), float(u(0.04, 0.15))),
        fat=float(fat),
        muscle=float(muscle),
        spine_y=float(spine_y),
        sacrum_z=float(build.bifurcation - 30),
        domes=(top, max(top - float(u(10, 25)), _top_of(organs, {"spleen", "stomach"}) + 3)),
        organs=tuple(organs),
        late=tuple(late),
        skeleton=tuple(build.pelvis()),
        hepatic=tuple(build.hepatic_vessels(lx, ly, top, build.ivc)),
        carved=(*build.ivc[1:3], gallbladder, kidney),
        lobes=tuple(lobes),
        warp=np.column_stack([warp, u(0, 2 * np.pi, 3), u(5, 10, 3)]),
        tumours=(),
        texture=np.column_stack([texture, u(0, 2 * np.pi, 12)]),
        visceral_fat=float(u(0.3, 1.2)),
        table=0.0,
        noise_sigma=float(u(8, 30)),
        noise_peak=float(u(0.12, 0.3)),
    )
    amplitude = anatomy.wobble[0]
    anatomy = dataclasses.replace(anatomy, table=float(b * (1 + amplitude) + u(1, 8)))
    lesions = place_lesions(anatomy.lobes, anatomy.liver_depth, phase, hu["liver"], rng, values)
    return dataclasses.replace(anatomy, tumours=lesions)
