"""Liver lesions: metastases, HCCs and cysts placed inside the liver, valued for the phantom's contrast phase."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from monai_pipeline.synth.contrast import lesion_values
from monai_pipeline.synth.shapes import Ellipsoid, rotation

__all__ = ["Lesion", "place_lesions"]


@dataclass(frozen=True)
class Lesion:
    """A lesion (label 2): ``rim_hu`` within ``rim`` mm of its surface, ``hu`` deeper, ``necrosis_hu`` beyond
    ``necrosis`` mm deep (never, when ``necrosis`` is infinite)."""

    kind: str
    shape: Ellipsoid
    hu: float
    rim_hu: float
    rim: float
    necrosis_hu: float
    necrosis: float = float("inf")

    def values(self, depth: np.ndarray) -> np.ndarray:
        """The HU at points of the given depth (mm) inside the lesion."""
        inner = np.where(depth > self.necrosis, self.necrosis_hu, self.hu)
        return np.where(depth < self.rim, self.rim_hu, inner).astype(np.float32)


def place_lesions(
    lobes: tuple[Ellipsoid, ...],
    liver_depth: Callable[[np.ndarray], np.ndarray],
    phase: str,
    liver_hu: float,
    rng: np.random.Generator,
    values: np.random.Generator,
) -> tuple[Lesion, ...]:
    """1-6 lesions 5-40 mm across (7-14 in a multifocal liver), 5 mm or more apart, most 3 mm or more inside the liver.

    The first is 18-40 mm across and the second, when there is one, 5-10 mm. A patient has metastases (half of
    them), HCCs (a third) or cysts as its main kind; each further lesion is of that kind or, one time in four, a
    cyst. One metastatic liver in five is multifocal: 7-14 lesions. Metastases and HCCs over 25 mm across have a
    necrotic centre. A third of the lesions after the first are subcapsular: they reach the liver's surface and are
    cut by it (their label is the part inside the liver), as metastases often are. ``rng`` draws where they are,
    ``values`` their HU, so a patient's lesions lie in the same places in every phase.
    """
    u = rng.uniform
    main = str(rng.choice(["metastasis", "hcc", "cyst"], p=[0.5, 0.33, 0.17]))
    multifocal = main == "metastasis" and u() < 0.2
    count = int(rng.integers(7, 15)) if multifocal else 1 + int(rng.binomial(5, 0.45))
    diameters = [u(18, 40), u(5, 10), *np.exp(u(np.log(6), np.log(30), max(count - 2, 0)))]
    lesions: list[Lesion] = []
    for index, diameter in enumerate(diameters[:count]):
        kind = main if index == 0 or u() < 0.75 else "cyst"
        subcapsular = index > 0 and diameter < diameters[0] and u() < 1 / 3
        radius = diameter / 2
        for attempt in range(1, 401):
            lobe = lobes[rng.integers(len(lobes))]
            centre = lobe.centre + lobe.axes @ (u(-0.85 if subcapsular else -0.7, 0.85 if subcapsular else 0.7, 3)
                                                * lobe.radii)  # fmt: skip
            shape = Ellipsoid(centre, radius * u(0.85, 1.15, 3), rotation(u(0, 180), u(-30, 30), u(-30, 30)))
            apart = all(np.linalg.norm(centre - t.shape.centre) > shape.reach + t.shape.reach + 5 for t in lesions)
            if apart and _fits(liver_depth, shape, radius, subcapsular):
                body, rim_hu, necrosis_hu = lesion_values(kind, phase, liver_hu, values)
                rim = values.uniform(1.5, 3.5) if rim_hu != body else 0.0
                necrosis = u(0.35, 0.6) * radius if diameter > 25 and kind != "cyst" else float("inf")
                lesions.append(Lesion(kind, shape, body, rim_hu, rim, necrosis_hu, necrosis))
                break
            if attempt % 100 == 0:  # no room for it: try smaller
                radius *= 0.8
    return tuple(lesions)


def _fits(liver_depth: Callable[[np.ndarray], np.ndarray], shape: Ellipsoid, radius: float, subcapsular: bool) -> bool:
    """Whether a lesion lies 3 mm or more inside the liver or, if ``subcapsular``, has its centre inside (by at least
    a third of its radius) and reaches out through the liver's surface."""
    surface = liver_depth(shape.surface_points())
    if not subcapsular:
        return bool(surface.min() > 3.0)
    return bool(surface.min() < 0.0 and surface[0] > radius / 3)  # surface[0]: the centre
