"""Quality flags of a segmented scan: a mask that is probably wrong is marked, not returned silently.

Four checks, each giving a :class:`QualityFlag` with a code and a reason that states the measured value and the
threshold:

==================  ============================================================================================
``no_liver``        the liver (liver + tumour) is below :data:`NO_LIVER_ML`, or below :data:`MIN_WHOLE_LIVER_ML` while
                    the scan covers it whole; post-processing then empties the mask
``liver_volume``    the liver is outside :data:`LIVER_ML_RANGE` (only its upper end when the liver is cut off)
``partial_liver``   the liver reaches the scan's first or last slice along the head-foot axis, or the in-plane edge
``low_confidence``  mean entropy inside the liver above :data:`MAX_LIVER_ENTROPY`, or TTA flips disagreeing
                    (liver Dice below :data:`MIN_TTA_DICE`)
==================  ============================================================================================

How the thresholds were chosen: the volumes from adult CT volumetry, checked on the phantoms of
:func:`monai_pipeline.synth.make_phantom` (seeds 0-11: whole livers 895-2077 mL, none flagged for volume; 390-880 mL
in a 50 mm cut through the middle, well above :data:`NO_LIVER_ML`). The confidence thresholds from the entropy of a
softmax: a voxel at (0.9, 0.05, 0.05) has 0.36, one at (0.8, 0.1, 0.1) 0.58, a liver rim voxel at (0.5, 0.5, 0)
0.63; on the phantoms a sure model gives a mean near 0, an untrained network 0.57-0.67 and a near-uniform one 0.97.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from monai_pipeline.inference.components import slab_slices
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.crop import array_box

__all__ = [
    "QualityFlag",
    "NO_LIVER_ML",
    "MIN_WHOLE_LIVER_ML",
    "not_a_liver",
    "LIVER_ML_RANGE",
    "MAX_LIVER_ENTROPY",
    "MIN_TTA_DICE",
    "liver_flags",
    "confidence_flags",
    "mean_entropy",
    "head_foot_axis",
    "log_flags",
]

logger = logging.getLogger(__name__)

NO_LIVER_ML = 30.0
"""Below this, no liver was found: the smallest adult livers are near 600 mL and even a scan that catches only the
liver's tip holds more, while spurious specks the network calls liver (in the spleen, the heart, bowel) are a few mL.
The phantoms' livers are 895-2077 mL whole and 390-880 mL in a 50 mm cut."""

MIN_WHOLE_LIVER_ML = 200.0
"""A liver that no edge of the scan cuts off (so the scan holds all of it) and is smaller than this is no liver: a
third of the smallest adult livers. It catches what a network calls liver in a scan that holds none (a blob of a
few tens of mL in the bowel or the spleen of a pelvis-only or chest-only scan, 36 mL on the lowest 150 mm of the
TotalSegmentator example CT), while a liver cut off by the scan's edge keeps the lower :data:`NO_LIVER_ML`."""

LIVER_ML_RANGE = (600.0, 4500.0)
"""A whole adult liver lies in this range (CT volumetry: about 800-2500 mL in healthy adults; small livers of
cirrhosis and the large ones of metastatic disease or steatosis stretch it to 600-4500 mL)."""

MAX_LIVER_ENTROPY = 0.4
"""Mean entropy of the predicted class distribution over the voxels called liver or tumour, in units of log(3) (0:
certain, 1: uniform). A confident model stays below 0.2 inside its liver; the liver rim (one voxel in a few on the
network's 1.5-3 mm grid, entropy near 0.6) keeps the mean above 0 even then."""

MIN_TTA_DICE = 0.9
"""Liver Dice between the prediction of a mirrored input and that of the input as it is (``--tta``); a model that
has learnt the liver agrees with itself above 0.95 on every flip."""


@dataclass(frozen=True)
class QualityFlag:
    """One reason to check a case by eye.

    Attributes:
        code: ``no_liver``, ``liver_volume``, ``partial_liver`` or ``low_confidence``.
        reason: what was measured, against which threshold.
    """

    code: str
    reason: str


def head_foot_axis(geometry: Geometry) -> int:
    """The index axis (0 x, 1 y, 2 z of the grid) closest to the patient's head-foot (LPS S) axis, in any
    orientation, oblique grids included."""
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    return int(np.argmax(np.abs(direction[2])))


def liver_flags(
    labels: np.ndarray,
    geometry: Geometry,
    liver_ml: float,
    found_ml: float | None = None,
    whole_ml: float | None = None,
) -> list[QualityFlag]:
    """``no_liver``, ``partial_liver`` and ``liver_volume`` of a mask (z, y, x) on the scan's grid ``geometry``.

    Args:
        labels: the mask, 0 background, 1 liver, 2 tumour.
        geometry: the scan's grid.
        liver_ml: the mask's liver + tumour volume.
        found_ml: the liver the network marked on its own grid, named when post-processing left none of it.
        whole_ml: the liver post-processing emptied as :func:`not_a_liver`, named instead.
    """
    if liver_ml < NO_LIVER_ML:
        emptied = f" (the network marked {found_ml:.1f} mL, post-processing left none)" if found_ml else ""
        reason = f"liver {liver_ml:.1f} mL, below {NO_LIVER_ML:g} mL: no liver found{emptied}"
        if whole_ml:
            reason = (
                f"no liver found: the network marked {whole_ml:.1f} mL that no edge of the scan cuts off, below "
                f"{MIN_WHOLE_LIVER_ML:g} mL for a whole liver; post-processing left none"
            )
        return [QualityFlag("no_liver", reason)]
    flags = []
    edges = _edges_reached(labels, geometry)
    if edges:
        flags.append(
            QualityFlag("partial_liver", f"the liver reaches {' and '.join(edges)}: only part of it may be scanned")
        )
    low, high = LIVER_ML_RANGE
    if liver_ml > high:
        flags.append(QualityFlag("liver_volume", f"liver {liver_ml:.0f} mL, above the plausible {high:g} mL"))
    elif liver_ml < low and not edges:
        flags.append(QualityFlag("liver_volume", f"liver {liver_ml:.0f} mL, below the plausible {low:g} mL"))
    return flags


def not_a_liver(labels: np.ndarray, geometry: Geometry, liver_ml: float) -> bool:
    """True for a liver that the scan covers whole (it reaches no edge) and that is below
    :data:`MIN_WHOLE_LIVER_ML`: post-processing empties it, and :func:`liver_flags` then says ``no_liver``."""
    return 0 < liver_ml < MIN_WHOLE_LIVER_ML and not _edges_reached(labels, geometry)


def _edges_reached(labels: np.ndarray, geometry: Geometry) -> list[str]:
    """The edges of the scan's grid that liver or tumour voxels reach, named for the patient."""
    box = array_box(labels)
    if box is None:
        return []
    start, size = np.asarray(box[0]), np.asarray(box[1])
    low, high = start == 0, start + size == np.asarray(geometry.size)
    axis = head_foot_axis(geometry)
    superior = np.asarray(geometry.direction, dtype=float).reshape(3, 3)[2, axis] > 0
    name = "xyz"[axis]
    edges = []
    for reached, end in ((low[axis], "first"), (high[axis], "last")):
        if reached:
            side = "head" if (end == "last") == superior else "feet"
            edges.append(f"the {end} slice along {name} ({side} end)")
    in_plane = [f"{'xyz'[a]}" for a in range(3) if a != axis and (low[a] or high[a])]
    if in_plane:
        edges.append(f"the in-plane edge of the field of view (along {', '.join(in_plane)})")
    return edges


def mean_entropy(probabilities: np.ndarray, inside: np.ndarray) -> float | None:
    """Mean entropy, in units of log(C), of the class probabilities (C, z, y, x) over the voxels of ``inside``
    (None when it is empty). Summed slab by slab, so the float64 copies it needs stay small however many voxels
    ``inside`` holds."""
    count = int(np.count_nonzero(inside))
    if count == 0:
        return None
    total = 0.0
    for zs in slab_slices(inside.shape[0], int(np.prod(inside.shape[1:]))):
        part = inside[zs]
        if not part.any():
            continue
        p = np.clip(probabilities[:, zs][:, part].astype(np.float64), 1e-12, 1.0)
        total += float(-(p * np.log(p)).sum())
    return total / count / float(np.log(len(probabilities)))


def confidence_flags(entropy: float | None, tta_dice: float | None) -> list[QualityFlag]:
    """``low_confidence`` from the mean entropy inside the liver and the lowest liver Dice between TTA flips."""
    reasons = []
    if entropy is not None and entropy > MAX_LIVER_ENTROPY:
        reasons.append(f"mean entropy in the liver {entropy:.2f}, above {MAX_LIVER_ENTROPY:g}")
    if tta_dice is not None and tta_dice < MIN_TTA_DICE:
        reasons.append(f"liver Dice between mirrored predictions {tta_dice:.3f}, below {MIN_TTA_DICE:g}")
    return [QualityFlag("low_confidence", "; ".join(reasons))] if reasons else []


def log_flags(case: str, flags: list[QualityFlag]) -> None:
    """One warning line per flag, naming the case."""
    for flag in flags:
        logger.warning("%s: %s: %s", case, flag.code, flag.reason)
