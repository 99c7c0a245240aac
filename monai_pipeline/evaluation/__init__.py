"""Evaluation of liver and liver-tumour masks against references, as the LiTS challenge scores them (Bilic et al.,
Medical Image Analysis 2023): per-case overlap and surface metrics, global Dice, lesion detection by size and
tumour burden; the API behind ``monai-pipeline evaluate`` and the bundle's ``configs/evaluate.json``."""

from __future__ import annotations

from monai_pipeline.evaluation.aggregate import summarize
from monai_pipeline.evaluation.bundle import FoldEvaluation
from monai_pipeline.evaluation.case import CaseResult, evaluate_case, tumour_burden
from monai_pipeline.evaluation.lesions import (
    IOU_THRESHOLDS,
    SIZE_CLASSES,
    CaseLesions,
    LesionGroup,
    LesionRecord,
    match_lesions,
    size_class,
)
from monai_pipeline.evaluation.matching import CasePair, Matching, case_key, find_masks, match_cases
from monai_pipeline.evaluation.metrics import (
    EMPTY_DISTANCE_MM,
    METRIC_NAMES,
    REGIONS,
    RegionMetrics,
    region_metrics,
    surface_distances,
)
from monai_pipeline.evaluation.run import CONVENTIONS, EvaluationResult, evaluate

__all__ = [
    "CONVENTIONS",
    "EMPTY_DISTANCE_MM",
    "IOU_THRESHOLDS",
    "METRIC_NAMES",
    "REGIONS",
    "SIZE_CLASSES",
    "CaseLesions",
    "CasePair",
    "CaseResult",
    "EvaluationResult",
    "FoldEvaluation",
    "LesionGroup",
    "LesionRecord",
    "Matching",
    "RegionMetrics",
    "case_key",
    "evaluate",
    "evaluate_case",
    "find_masks",
    "match_cases",
    "match_lesions",
    "region_metrics",
    "size_class",
    "summarize",
    "surface_distances",
    "tumour_burden",
]
