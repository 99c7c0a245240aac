"""Contrast phases: the attenuation (HU) of blood, organs and liver lesions before and after intravenous contrast.

The ranges follow published attenuation values of multiphase abdominal CT (unenhanced, late arterial at about
35 s, portal venous at about 70 s); each phantom draws its own values from them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["LESION_KINDS", "PHASES", "TISSUE_RANGES", "check_phase", "lesion_values", "sample_contrast"]

PHASES: tuple[str, ...] = ("non-contrast", "arterial", "portal-venous")
"""The contrast phases a phantom can be rendered in."""

LESION_KINDS: tuple[str, ...] = ("metastasis", "hcc", "cyst")
"""Hypo-enhancing metastasis (some with an enhancing rim), arterially enhancing HCC that washes out, simple cyst."""

TISSUE_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "non-contrast": {
        "liver": (50, 65),
        "spleen": (40, 50),
        "spleen_mottle": (0, 0),
        "cortex": (28, 38),
        "medulla": (25, 35),
        "aorta": (35, 50),
        "portal": (35, 50),
        "hepatic": (35, 50),
        "ivc": (35, 50),
        "pancreas": (35, 50),
        "bowel_wall": (30, 45),
        "muscle": (40, 55),
        "myocardium": (40, 50),
        "heart_blood": (35, 50),
        "bile": (0, 20),
        "urine": (0, 15),
    },
    "arterial": {
        "liver": (65, 85),
        "spleen": (80, 140),
        "spleen_mottle": (25, 45),
        "cortex": (150, 250),
        "medulla": (60, 90),
        "aorta": (250, 400),
        "portal": (90, 150),
        "hepatic": (40, 70),
        "ivc": (50, 90),
        "pancreas": (100, 150),
        "bowel_wall": (70, 110),
        "muscle": (50, 65),
        "myocardium": (100, 140),
        "heart_blood": (200, 350),
        "bile": (0, 20),
        "urine": (0, 15),
    },
    "portal-venous": {
        "liver": (100, 130),
        "spleen": (110, 130),
        "spleen_mottle": (0, 0),
        "cortex": (150, 190),
        "medulla": (150, 190),
        "aorta": (140, 190),
        "portal": (140, 190),
        "hepatic": (130, 170),
        "ivc": (110, 150),
        "pancreas": (80, 110),
        "bowel_wall": (80, 120),
        "muscle": (55, 70),
        "myocardium": (100, 130),
        "heart_blood": (130, 180),
        "bile": (0, 20),
        "urine": (0, 20),
    },
}
"""Per phase and tissue, the (low, high) HU a phantom draws its value from. ``spleen_mottle`` is the amplitude of
the spleen's arciform enhancement; in the portal-venous phase the medulla equals the cortex within 10 HU."""


def check_phase(phase: str) -> str:
    """Return ``phase`` when it is one of :data:`PHASES`.

    Raises:
        ValueError: for any other value.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}.")
    return phase


def sample_contrast(phase: str, rng: np.random.Generator) -> dict[str, float]:
    """The HU of each tissue of one patient in ``phase``, drawn uniformly from :data:`TISSUE_RANGES`.

    Raises:
        ValueError: for an unknown phase.
    """
    ranges = TISSUE_RANGES[check_phase(phase)]
    values = {tissue: float(rng.uniform(low, high)) for tissue, (low, high) in ranges.items()}
    if phase == "portal-venous":  # nephrographic: cortex and medulla alike
        values["medulla"] = values["cortex"] - float(rng.uniform(0, 10))
    return values


def lesion_values(kind: str, phase: str, liver: float, rng: np.random.Generator) -> tuple[float, float, float]:
    """The (body, rim, necrotic centre) HU of a liver lesion of ``kind`` in ``phase`` next to liver of ``liver`` HU.

    A metastasis is darker than the liver in every phase, with an enhancing rim in half of them after contrast;
    an HCC is a little darker before contrast, brighter in the arterial phase and washed out (darker, with an
    enhancing capsule) in the portal-venous phase; a cyst stays near water. Necrosis is 10-30 HU.

    Raises:
        ValueError: for an unknown kind or phase.
    """
    check_phase(phase)
    u = rng.uniform
    necrosis = float(u(10, 30))
    if kind == "cyst":
        water = float(u(0, 15))
        return water, water, water
    if kind == "metastasis":
        drop = {"non-contrast": u(15, 30), "arterial": u(20, 40), "portal-venous": u(35, 70)}[phase]
        body = liver - drop
        rim = body if phase == "non-contrast" or u() < 0.5 else liver + u(-5, 35)
        return float(body), float(rim), necrosis
    if kind == "hcc":
        body = {"non-contrast": liver - u(5, 15), "arterial": liver + u(30, 70), "portal-venous": liver - u(10, 25)}
        rim = liver + u(5, 15) if phase == "portal-venous" else body[phase]
        return float(body[phase]), float(rim), necrosis
    raise ValueError(f"lesion kind must be one of {', '.join(LESION_KINDS)}, got {kind!r}.")
