"""Evaluation of one case: a predicted and a reference label map on one grid."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from monai_pipeline.evaluation.lesions import CaseLesions, match_lesions
from monai_pipeline.evaluation.metrics import METRIC_NAMES, REGIONS, RegionMetrics, region_masks, region_metrics
from monai_pipeline.io.geometry import Geometry

__all__ = ["CaseResult", "evaluate_case", "tumour_burden", "METRICS_COLUMNS"]


def _columns() -> list[str]:
    names = ["case"]
    for region in REGIONS:
        names += [f"{region}_{metric}" for metric in METRIC_NAMES]
        names += [f"{region}_ref_ml", f"{region}_pred_ml"]
    names += ["tumour_burden_ref", "tumour_burden_pred", "tumour_burden_error"]
    names += ["lesions_ref", "lesions_pred", "lesions_detected", "lesions_false_positive", "lesions_overlapping"]
    return [*names, "pred_file", "ref_file"]


METRICS_COLUMNS: list[str] = _columns()
"""The columns of ``metrics.csv``, a row per case."""


@dataclass
class CaseResult:
    """Everything measured on one case.

    Attributes:
        case: the case name.
        regions: the metrics of ``liver`` (label >= 1) and ``tumour`` (label 2).
        tumour_burden_ref: tumour voxels / liver voxels (label >= 1) of the reference; 0 without liver.
        tumour_burden_pred: the same of the prediction.
        lesions: the reference and predicted lesions and their matching.
        voxel_ml: the volume of one voxel in mL.
        pred: the predicted mask file, when read from a file.
        ref: the reference mask file, when read from a file.
    """

    case: str
    regions: dict[str, RegionMetrics]
    tumour_burden_ref: float
    tumour_burden_pred: float
    lesions: CaseLesions
    voxel_ml: float
    pred: Path | None = None
    ref: Path | None = None

    @property
    def tumour_burden_error(self) -> float:
        """Predicted minus reference tumour burden."""
        return self.tumour_burden_pred - self.tumour_burden_ref

    def row(self) -> dict[str, Any]:
        """The case's row of ``metrics.csv`` (keys :data:`METRICS_COLUMNS`)."""
        row: dict[str, Any] = {"case": self.case}
        for region in REGIONS:
            metrics = self.regions[region]
            row.update({f"{region}_{name}": value for name, value in metrics.values().items()})
            row[f"{region}_ref_ml"] = metrics.ref_voxels * self.voxel_ml
            row[f"{region}_pred_ml"] = metrics.pred_voxels * self.voxel_ml
        counts = self.lesions.counts(0.5)
        row.update(
            tumour_burden_ref=self.tumour_burden_ref,
            tumour_burden_pred=self.tumour_burden_pred,
            tumour_burden_error=self.tumour_burden_error,
            lesions_ref=counts["reference_lesions"],
            lesions_pred=len(self.lesions.predicted()),
            lesions_detected=counts["detected_reference_lesions"],
            lesions_false_positive=counts["predicted_lesions"] - counts["detected_predicted_lesions"],
            lesions_overlapping=self.lesions.counts(0.0)["detected_reference_lesions"],
            pred_file=str(self.pred) if self.pred else "",
            ref_file=str(self.ref) if self.ref else "",
        )
        return row


def tumour_burden(labels: np.ndarray) -> float:
    """Tumour voxels over liver voxels (label >= 1), as LiTS defines the tumour burden; 0 for a mask without liver."""
    liver = int(np.count_nonzero(labels >= 1))
    return int(np.count_nonzero(labels == 2)) / liver if liver else 0.0


def evaluate_case(pred: np.ndarray, ref: np.ndarray, geometry: Geometry, case: str = "") -> CaseResult:
    """Compare a predicted and a reference label map (z, y, x; 0 background, 1 liver, 2 tumour) on ``geometry``.

    Raises:
        ValueError: when the arrays differ in shape or do not fit the geometry.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape or tuple(ref.shape) != geometry.shape:
        raise ValueError(
            f"prediction {pred.shape} and reference {ref.shape} must both have the geometry's shape {geometry.shape}."
        )
    spacing_zyx = geometry.spacing[::-1]
    pred_regions, ref_regions = region_masks(pred), region_masks(ref)
    regions = {region: region_metrics(pred_regions[region], ref_regions[region], spacing_zyx) for region in REGIONS}
    return CaseResult(
        case=case,
        regions=regions,
        tumour_burden_ref=tumour_burden(ref),
        tumour_burden_pred=tumour_burden(pred),
        lesions=match_lesions(pred, ref, geometry, case),
        voxel_ml=math.prod(geometry.spacing) / 1000.0,
    )
