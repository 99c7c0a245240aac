"""Tissues painted from formulas rather than parts: lungs and mediastinum, spine, ribs and sternum, the table."""

from __future__ import annotations

import numpy as np

from monai_pipeline.synth.anatomy import Anatomy
from monai_pipeline.synth.organs import CANCELLOUS_HU, CORTICAL_HU, FAT_HU

__all__ = ["AIR_HU", "paint_bones", "paint_chest", "paint_table"]

AIR_HU, LUNG_HU, RIB_HU, DISC_HU, CSF_HU, TABLE_HU = -1000.0, -860.0, 650.0, 90.0, 20.0, 250.0
_RIB_PERIOD_MM = 32.0


def _ellipse(x: np.ndarray, y: np.ndarray, rx: float, ry: float) -> np.ndarray:
    return (x / rx) ** 2 + (y / ry) ** 2 < 1


def paint_chest(anatomy: Anatomy, points: np.ndarray, hu: np.ndarray, inside: np.ndarray) -> None:
    """Lungs with their vessels above the diaphragm domes, and mediastinal fat between them."""
    x, y, z = points
    (ca, cb), (right, left) = anatomy.cavity, anatomy.domes
    dome = np.where(x < 0, right, left) - 30 * ((np.abs(x) - 0.5 * ca) / (0.5 * ca)) ** 2 - 15 * (y / cb) ** 2
    chest = inside & (z > dome)
    if not chest.any():
        return
    middle = _ellipse(x, y - (anatomy.spine_y - cb) / 2, 32.0, (anatomy.spine_y + cb) / 2)
    hu[chest & middle] = FAT_HU + 10
    lung = chest & ~middle
    coarse = anatomy.textured(points[:, lung])
    fine = anatomy.textured(points[:, lung] * np.float32(2.5))
    hu[lung] = LUNG_HU + 25 * coarse + 880 * np.exp(-((fine / 0.2) ** 2))  # vessels where the fine field crosses 0


def paint_bones(anatomy: Anatomy, points: np.ndarray, hu: np.ndarray, cavity: np.ndarray) -> None:
    """Spine (vertebrae with discs, canal and arch, down to the sacrum), back muscles, ribs and sternum."""
    x, y, z = points
    muscle = anatomy.hu["muscle"]
    near = (np.abs(x) < 70) & (y > anatomy.spine_y - 25) & (y < anatomy.spine_y + 70)
    if near.any():
        px, py, pz, values = x[near], y[near] - anatomy.spine_y, z[near], hu[near]
        values[_ellipse(np.abs(px) - 32, py - 37, 26, 22) & (values > AIR_HU)] = muscle
        lumbar = pz > anatomy.sacrum_z
        depth = (1 - np.sqrt((px / 21) ** 2 + (py / 16) ** 2)) * 16
        bone = (depth > 0) & lumbar
        disc = np.mod(pz[bone] - 7.0, 32.0) < 7.0
        values[bone] = np.where(disc, DISC_HU, np.where(depth[bone] < 2.5, CORTICAL_HU, CANCELLOUS_HU))
        arch = ((np.hypot(px, py - 25) < 14) | _ellipse(px, py - 47, 5, 12)) & lumbar
        values[arch] = CORTICAL_HU - 200
        values[(np.hypot(px, py - 25) < 8) & lumbar] = CSF_HU
        hu[near] = values
    (ca, cb), low = anatomy.cavity, anatomy.lobes[0].centre[2] - 40
    wall = (cavity < -1) & (cavity > -9) & (np.abs(x) > 30) & ~((y < 0) & (np.abs(x) < 60)) & (z > low)
    arc = np.arctan2(np.abs(x) / ca, y / cb) * ((ca + cb) / 2)  # mm along the wall from the spine
    hu[wall & (np.cos((z + 0.5 * arc) * (2 * np.pi / _RIB_PERIOD_MM)) > 0.55)] = RIB_HU  # ribs fall 1 mm per 2 forward
    sternum = (cavity < 0) & (cavity > -12) & (np.abs(x) < 16) & (y < 0) & (z > anatomy.domes[0] - 30)
    hu[sternum] = CANCELLOUS_HU - 100


def paint_table(anatomy: Anatomy, points: np.ndarray, hu: np.ndarray) -> None:
    """The scanner table under the patient: two thin curved carbon-fibre shells."""
    x, y = points[0], points[1]
    if y.max() < anatomy.table - 20:
        return
    curve = anatomy.table - 0.0004 * x**2  # its sides rise round the patient
    top = (np.abs(y - curve) < 1.5) & (np.abs(x) < 215)
    bottom = (np.abs(y - curve - 45) < 1.5) & (np.abs(x) < 190)
    hu[top | bottom] = TABLE_HU
