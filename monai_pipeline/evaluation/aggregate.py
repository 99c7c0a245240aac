"""Aggregates over cases, as LiTS reports them: Dice per case and global Dice, the mean and spread of every metric,
lesion detection overall and by size, and the tumour-burden error."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from monai_pipeline.evaluation.case import CaseResult
from monai_pipeline.evaluation.lesions import IOU_THRESHOLDS, SIZE_CLASSES, size_class
from monai_pipeline.evaluation.metrics import METRIC_NAMES, REGIONS

__all__ = ["summarize", "region_summary", "detection_summary", "burden_summary", "f1_score", "threshold_key"]


def summarize(cases: Sequence[CaseResult]) -> dict[str, Any]:
    """The summary of ``cases``: per region, lesion detection at each IoU threshold, and tumour burden."""
    summary: dict[str, Any] = {"cases": len(cases)}
    for region in REGIONS:
        summary[region] = region_summary(cases, region)
    summary["lesion_detection"] = {
        threshold_key(threshold): detection_summary(cases, threshold) for threshold in IOU_THRESHOLDS
    }
    summary["tumour_burden"] = burden_summary(cases)
    return summary


def threshold_key(threshold: float) -> str:
    """``"iou>0.5"``, ``"iou>0"``: the key of a detection threshold in the summary."""
    return f"iou>{threshold:g}"


def region_summary(cases: Sequence[CaseResult], region: str) -> dict[str, Any]:
    """Dice per case (mean, std), global Dice (2 sum|P and R| / sum(|P| + |R|) over the cases), every metric's mean,
    standard deviation and number of cases where it is defined, and the cases with an empty mask."""
    metrics = [case.regions[region] for case in cases]
    overlap = sum(m.intersection for m in metrics)
    total = sum(m.pred_voxels + m.ref_voxels for m in metrics)
    return {
        "dice_per_case": _stats(m.dice for m in metrics),
        "dice_global": 2.0 * overlap / total if total else math.nan,
        "metrics": {name: _stats(getattr(m, name) for m in metrics) for name in METRIC_NAMES},
        "empty_reference_cases": sum(1 for m in metrics if m.ref_voxels == 0),
        "empty_prediction_cases": sum(1 for m in metrics if m.pred_voxels == 0),
        "both_empty_cases": sum(1 for m in metrics if m.ref_voxels == 0 and m.pred_voxels == 0),
    }


def detection_summary(cases: Sequence[CaseResult], threshold: float) -> dict[str, Any]:
    """Lesion recall (detected reference lesions / reference lesions), precision (detected predicted lesions /
    predicted lesions, a group of merged predicted components counting once) and F1 at IoU > ``threshold``, overall
    and by size class (reference lesions by their own size, predicted lesions by their group's)."""
    references: list[tuple[str, bool]] = []
    predictions: list[tuple[str, bool]] = []
    merges = splits = 0
    for case in cases:
        groups = {group.group: group for group in case.lesions.groups}
        for lesion in case.lesions.reference():
            references.append((lesion.size_class, groups[lesion.group].detected(threshold)))
        for group in groups.values():
            if group.predicted:
                predictions.append((size_class(group.predicted_diameter_mm), group.detected(threshold)))
        counts = case.lesions.counts(threshold)
        merges += counts["merge_errors"]
        splits += counts["split_errors"]
    overall = _detection(references, predictions)
    overall.update(merge_errors=merges, split_errors=splits)
    overall["by_size"] = {
        name: _detection([r for r in references if r[0] == name], [p for p in predictions if p[0] == name])
        for name in SIZE_CLASSES
    }
    return overall


def burden_summary(cases: Sequence[CaseResult]) -> dict[str, float]:
    """Root mean square, mean and largest absolute tumour-burden error (predicted minus reference) over the cases."""
    errors = np.array([case.tumour_burden_error for case in cases], dtype=float)
    if errors.size == 0:
        return {"rmse": math.nan, "mean_error": math.nan, "max_abs_error": math.nan}
    return {
        "rmse": float(np.sqrt(np.mean(errors**2))),
        "mean_error": float(errors.mean()),
        "max_abs_error": float(np.abs(errors).max()),
    }


def f1_score(precision: float, recall: float) -> float:
    """The harmonic mean of precision and recall; 0 when one is 0 or undefined (no predicted lesion means nothing
    detected, no reference lesion means every prediction is false), NaN when both are undefined."""
    if math.isnan(precision) and math.isnan(recall):
        return math.nan
    if math.isnan(precision) or math.isnan(recall) or precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def _detection(references: list[tuple[str, bool]], predictions: list[tuple[str, bool]]) -> dict[str, Any]:
    found = sum(1 for _, detected in references if detected)
    hits = sum(1 for _, detected in predictions if detected)
    recall = found / len(references) if references else math.nan
    precision = hits / len(predictions) if predictions else math.nan
    return {
        "reference_lesions": len(references),
        "detected_reference_lesions": found,
        "recall": recall,
        "predicted_lesions": len(predictions),
        "detected_predicted_lesions": hits,
        "precision": precision,
        "f1": f1_score(precision, recall),
    }


def _stats(values: Iterable[float]) -> dict[str, float | int]:
    """Mean and (population) standard deviation of the defined (not NaN) values, and how many there are."""
    array = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if array.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {"mean": float(array.mean()), "std": float(array.std()), "n": int(array.size)}
