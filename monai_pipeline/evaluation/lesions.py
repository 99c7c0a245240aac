"""Lesion-wise detection of one case, as LiTS lesion recognition (Bilic et al., Medical Image Analysis 2023).

Lesions are the 26-connected components of the tumour (label 2) of the reference and of the prediction. Components
that overlap are merged: the bipartite graph of overlapping (reference, predicted) pairs is split into its connected
groups, so one reference lesion split into several predicted pieces is compared with their union, and several
reference lesions covered by one predicted blob are compared with it together. A group is a detection when the
intersection over union of its merged reference and merged predicted masks is above a threshold (LiTS: 0.5; 0, any
overlap, is reported too). Every reference lesion of a detected group counts as detected (recall); every group with a
predicted component counts once as a predicted lesion (precision).

Each component is measured with :func:`monai_pipeline.inference.lesions.measure_lesions`, the measurement of
``monai-pipeline infer``: volume, centroid and the longest axial diameter (RECIST) that sets its size class.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from monai_pipeline.evaluation.metrics import bounding_box
from monai_pipeline.inference.lesions import Lesion, measure_lesions
from monai_pipeline.inference.postprocess import CONNECTIVITY
from monai_pipeline.io.geometry import Geometry

__all__ = [
    "IOU_THRESHOLDS",
    "SIZE_CLASSES",
    "CaseLesions",
    "LesionGroup",
    "LesionRecord",
    "match_lesions",
    "size_class",
]

IOU_THRESHOLDS: tuple[float, ...] = (0.5, 0.0)
"""A group is a detection when its IoU is above the threshold: 0.5 as LiTS, and 0 (any overlap)."""

SIZE_CLASSES: tuple[str, ...] = ("<10 mm", "10-20 mm", ">20 mm")
"""Lesion size classes by the longest axial diameter: below 10 mm, 10 to 20 mm inclusive, above 20 mm."""


def size_class(diameter_mm: float) -> str:
    """The size class of a lesion with this longest axial diameter."""
    if diameter_mm < 10.0:
        return SIZE_CLASSES[0]
    return SIZE_CLASSES[1] if diameter_mm <= 20.0 else SIZE_CLASSES[2]


@dataclass
class LesionRecord:
    """One reference or predicted lesion (a 26-connected tumour component) and its match, a row of ``lesions.csv``.

    Lesions are numbered per case and source, largest first (as ``monai-pipeline infer`` numbers them); ``matched``
    names the lesions of the other source in the same group (``R1``, ``P2``, ...).
    """

    case: str
    source: str
    lesion_id: int
    voxels: int
    volume_ml: float
    longest_axial_diameter_mm: float
    size_class: str
    centroid_lps_x_mm: float
    centroid_lps_y_mm: float
    centroid_lps_z_mm: float
    group: int
    matched: str
    group_iou: float
    detected: bool
    overlaps: bool

    @property
    def name(self) -> str:
        """``R<id>`` for a reference lesion, ``P<id>`` for a predicted one."""
        return f"{'R' if self.source == 'reference' else 'P'}{self.lesion_id}"


@dataclass
class LesionGroup:
    """A connected group of overlapping reference and predicted lesions (either side may be empty).

    Attributes:
        group: the group's number in its case.
        reference: ids of its reference lesions.
        predicted: ids of its predicted lesions.
        intersection: voxels in both the merged reference and the merged prediction.
        union: voxels in either.
        predicted_diameter_mm: the largest longest axial diameter of its predicted lesions (0 without any), which
            sets the size class of the group as a predicted lesion.
    """

    group: int
    reference: list[int]
    predicted: list[int]
    intersection: int
    union: int
    predicted_diameter_mm: float

    @property
    def iou(self) -> float:
        """Intersection over union of the merged masks; 0 for a group of one side only."""
        return self.intersection / self.union if self.union else 0.0

    def detected(self, threshold: float = 0.5) -> bool:
        """Whether the group is a detection: IoU above ``threshold``."""
        return bool(self.reference and self.predicted and self.iou > threshold)


@dataclass
class CaseLesions:
    """The lesions of one case, their groups, and the case's detection counts."""

    case: str
    lesions: list[LesionRecord] = field(default_factory=list)
    groups: list[LesionGroup] = field(default_factory=list)

    def reference(self) -> list[LesionRecord]:
        """The reference lesions."""
        return [lesion for lesion in self.lesions if lesion.source == "reference"]

    def predicted(self) -> list[LesionRecord]:
        """The predicted lesions."""
        return [lesion for lesion in self.lesions if lesion.source == "prediction"]

    def counts(self, threshold: float = 0.5) -> dict[str, int]:
        """Reference lesions, detected reference lesions, predicted groups and detected predicted groups, and the
        merge errors (detected groups of several reference lesions) and split errors (of several predicted ones)."""
        detected = [group for group in self.groups if group.detected(threshold)]
        return {
            "reference_lesions": sum(len(group.reference) for group in self.groups),
            "detected_reference_lesions": sum(len(group.reference) for group in detected),
            "predicted_lesions": sum(1 for group in self.groups if group.predicted),
            "detected_predicted_lesions": len(detected),
            "merge_errors": sum(1 for group in detected if len(group.reference) > 1),
            "split_errors": sum(1 for group in detected if len(group.predicted) > 1),
        }


def match_lesions(pred: np.ndarray, ref: np.ndarray, geometry: Geometry, case: str = "") -> CaseLesions:
    """Find, measure and match the tumours of a predicted and a reference label map (z, y, x) on ``geometry``.

    Only the bounding box of the two tumour masks is processed.

    Args:
        pred: predicted labels (0 background, 1 liver, 2 tumour).
        ref: reference labels on the same grid.
        geometry: the grid of both.
        case: the case name written into each :class:`LesionRecord`.
    """
    result = CaseLesions(case)
    pred_tumour, ref_tumour = np.asarray(pred) == 2, np.asarray(ref) == 2
    box = bounding_box(pred_tumour | ref_tumour)
    if box is None:
        return result
    ref_cc, n_ref = _components(ref_tumour[box])
    pred_cc, n_pred = _components(pred_tumour[box])
    overlap = _overlaps(ref_cc, pred_cc, n_pred)
    groups = _group(n_ref, n_pred, overlap)
    ref_sizes = np.bincount(ref_cc.ravel(), minlength=n_ref + 1)
    pred_sizes = np.bincount(pred_cc.ravel(), minlength=n_pred + 1)
    part = _sub_geometry(geometry, box)
    ref_measured = _measure(ref_cc, part)
    pred_measured = _measure(pred_cc, part)
    for number, (refs, preds) in enumerate(groups, start=1):
        inter = sum(overlap.get((r, p), 0) for r in refs for p in preds)
        union = int(ref_sizes[refs].sum() + pred_sizes[preds].sum()) - inter
        diameter = max((pred_measured[p].longest_axial_diameter_mm for p in preds), default=0.0)
        group = LesionGroup(number, refs, preds, inter, union, diameter)
        result.groups.append(group)
        for source, ids, others, prefix, measured in (
            ("reference", refs, preds, "P", ref_measured),
            ("prediction", preds, refs, "R", pred_measured),
        ):
            for lesion_id in ids:
                result.lesions.append(
                    _record(case, source, lesion_id, measured[lesion_id], group, [f"{prefix}{o}" for o in others])
                )
    result.lesions.sort(key=lambda lesion: (lesion.source != "reference", lesion.lesion_id))
    return result


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components numbered by size, largest first (ties in scan order)."""
    labelled, count = ndimage.label(mask, structure=CONNECTIVITY)
    if count == 0:
        return labelled, 0
    sizes = np.bincount(labelled.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    lut = np.zeros(count + 1, dtype=labelled.dtype)
    lut[order] = np.arange(1, count + 1)
    return lut[labelled], count


def _overlaps(ref_cc: np.ndarray, pred_cc: np.ndarray, n_pred: int) -> dict[tuple[int, int], int]:
    """Voxels shared by each overlapping (reference, predicted) pair of components."""
    both = (ref_cc > 0) & (pred_cc > 0)
    codes = ref_cc[both].astype(np.int64) * (n_pred + 1) + pred_cc[both]
    pairs, counts = np.unique(codes, return_counts=True)
    return {(int(c // (n_pred + 1)), int(c % (n_pred + 1))): int(n) for c, n in zip(pairs, counts)}


def _group(n_ref: int, n_pred: int, overlap: dict[tuple[int, int], int]) -> list[tuple[list[int], list[int]]]:
    """The connected groups of the overlap graph as (reference ids, predicted ids): first the groups in the order of
    their first reference lesion, then predicted lesions that overlap nothing."""
    if n_ref + n_pred == 0:
        return []
    rows = [r - 1 for r, _ in overlap]
    cols = [n_ref + p - 1 for _, p in overlap]
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_ref + n_pred,) * 2)
    _, labels = connected_components(graph, directed=False)
    order: dict[int, tuple[list[int], list[int]]] = {}
    for node in range(n_ref + n_pred):
        refs, preds = order.setdefault(int(labels[node]), ([], []))
        (refs if node < n_ref else preds).append(node + 1 if node < n_ref else node - n_ref + 1)
    return list(order.values())


def _sub_geometry(geometry: Geometry, box: tuple[slice, ...]) -> Geometry:
    """The geometry of the part ``box`` (z, y, x slices) of an image on ``geometry``."""
    start_xyz = np.array([s.start for s in box[::-1]], dtype=float)
    direction = np.asarray(geometry.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(geometry.origin) + direction @ (start_xyz * np.asarray(geometry.spacing))
    return Geometry(
        size=tuple(int(s.stop - s.start) for s in box[::-1]),
        spacing=geometry.spacing,
        origin=tuple(float(o) for o in origin),
        direction=geometry.direction,
    )


def _measure(labelled: np.ndarray, geometry: Geometry) -> dict[int, Lesion]:
    """Each component measured by :func:`measure_lesions` on its own bounding box."""
    measured = {}
    for index, box in enumerate(ndimage.find_objects(labelled), start=1):
        if box is None:
            continue
        alone = np.where(labelled[box] == index, 2, 0).astype(np.uint8)
        (lesion,) = measure_lesions(alone, _sub_geometry(geometry, box))
        measured[index] = lesion
    return measured


def _record(
    case: str, source: str, lesion_id: int, lesion: Lesion, group: LesionGroup, matched: Iterable[str]
) -> LesionRecord:
    return LesionRecord(
        case=case,
        source=source,
        lesion_id=lesion_id,
        voxels=lesion.voxels,
        volume_ml=lesion.volume_ml,
        longest_axial_diameter_mm=lesion.longest_axial_diameter_mm,
        size_class=size_class(lesion.longest_axial_diameter_mm),
        centroid_lps_x_mm=lesion.centroid_lps_x_mm,
        centroid_lps_y_mm=lesion.centroid_lps_y_mm,
        centroid_lps_z_mm=lesion.centroid_lps_z_mm,
        group=group.group,
        matched=";".join(matched),
        group_iou=round(group.iou, 6),
        detected=group.detected(0.5),
        overlaps=group.detected(0.0),
    )
