"""Evaluation of predicted masks against reference masks: the API behind ``monai-pipeline evaluate``.

It writes into the output folder::

    metrics.csv     a row per case: every metric of the liver and the tumour, tumour burden, lesion counts
    lesions.csv     a row per reference and predicted lesion: size, centroid, group, match, IoU, detected
    summary.json    Dice per case and global Dice, every metric's mean and std, lesion detection, burden error
    summary.png     Dice per case, and lesion recall by size
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.evaluation.aggregate import summarize
from monai_pipeline.evaluation.case import CaseResult, evaluate_case
from monai_pipeline.evaluation.matching import CasePair, Source, match_cases
from monai_pipeline.evaluation.metrics import EMPTY_DISTANCE_MM
from monai_pipeline.evaluation.plot import write_summary_png
from monai_pipeline.evaluation.report import write_lesions_csv, write_metrics_csv, write_summary
from monai_pipeline.io.align import describe_change, onto_grid, same_voxels
from monai_pipeline.io.atomic import atomic_group, check_writable
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.io.reader import check_label_values, read_image

__all__ = ["CONVENTIONS", "EvaluationResult", "evaluate", "evaluate_pair", "load_pair"]

logger = logging.getLogger(__name__)

CONVENTIONS: dict[str, str] = {
    "reference": "Bilic et al., The Liver Tumor Segmentation Benchmark (LiTS), Medical Image Analysis 84, 2023",
    "regions": "liver = label >= 1 (liver with its tumours), tumour = label 2",
    "surface": "voxels removed by one erosion with the face-connected structure (as medpy); distances in mm",
    "assd_mm": "mean of the pooled surface distances of both directions (medpy assd)",
    "mssd_mm": "maximum of the pooled surface distances (Hausdorff distance, medpy hd)",
    "hd95_mm": "95th percentile of the pooled surface distances (medpy hd95)",
    "rvd": "(|P| - |R|) / |R|; undefined (null) when the reference is empty",
    "empty_masks": (
        "both empty: Dice = Jaccard = precision = recall = 1, distances 0; one empty: Dice = Jaccard = 0, "
        f"distances {EMPTY_DISTANCE_MM:g} mm (the LiTS scorer's penalty)"
    ),
    "lesions": "26-connected components of label 2, overlapping ones merged into groups; detected at IoU > 0.5",
    "size_classes": "longest axial diameter of the reference lesion: < 10 mm, 10-20 mm, > 20 mm",
    "tumour_burden": "tumour voxels / liver voxels (label >= 1); error = predicted - reference",
    "std": "population standard deviation over cases (numpy's default)",
}
"""The conventions of the metrics, as written into ``summary.json`` (``docs/EVALUATION.md`` has the details)."""


@dataclass
class EvaluationResult:
    """What an evaluation found.

    Attributes:
        cases: the result of every matched case, in the order of the references.
        summary: the aggregates, as written to ``summary.json``.
        unmatched_predictions: predicted masks without a reference (not evaluated).
        unmatched_references: reference masks without a prediction (not evaluated).
        output_dir: the output folder, when one was given.
        files: the files written, by name.
    """

    cases: list[CaseResult]
    summary: dict[str, Any]
    unmatched_predictions: list[Path] = field(default_factory=list)
    unmatched_references: list[Path] = field(default_factory=list)
    output_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)


def evaluate(
    pred: Source,
    ref: Source,
    out_dir: str | os.PathLike[str] | None = None,
    strict: bool = False,
    *,
    resample_ref: bool = False,
    progress: bool = False,
) -> EvaluationResult:
    """Evaluate predicted liver and tumour masks against reference masks, as the LiTS challenge scores them.

    Args:
        pred: the predicted masks: a folder (e.g. the output of ``monai-pipeline infer``), one file, or a list of
            files; values 0 background, 1 liver, 2 tumour.
        ref: the reference masks, in the same forms; paired with the predictions by case name (see
            :mod:`monai_pipeline.evaluation.matching`).
        out_dir: where to write ``metrics.csv``, ``lesions.csv``, ``summary.json`` and ``summary.png``; nothing is
            written when None.
        strict: refuse to run when a prediction or a reference has no partner (otherwise they are listed in a
            warning and the matched cases are evaluated).
        resample_ref: a reference on other voxels than its prediction is resampled onto the prediction's grid
            with nearest neighbour (otherwise it is refused). A reference holding the same voxels in another axis
            order or direction (a dcm2niix NIfTI, LAS, of a DICOM series read as LPS) is always reoriented onto
            the prediction's grid: the comparison is made in physical space.
        progress: show a progress bar.

    Returns:
        The per-case results and the summary.

    Raises:
        InputError: a missing file or folder, a mask that is not a 3D image, labels outside {0, 1, 2}, or (without
            ``resample_ref``) a prediction and a reference on different voxels.
        PipelineError: no case matches, or (with ``strict``) some do not.
    """
    if out_dir is not None and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(out_dir, "exists and is not a folder")
    if out_dir is not None:
        check_writable(out_dir)
    matching = match_cases(pred, ref)
    problem = matching.problem()
    if problem and strict:
        raise PipelineError(f"{problem} (without --strict only the matched cases are evaluated)")
    if problem:
        logger.warning("%s; evaluating the %d matched case(s) only", problem, len(matching.pairs))
    for pair in matching.pairs:
        _check_headers(pair, resample_ref)
    bar = tqdm(matching.pairs, desc="evaluate", unit="case", disable=None if progress else True)
    cases = [evaluate_pair(pair, resample_ref=resample_ref) for pair in bar]
    summary = summarize(cases)
    summary.update(
        pred=_describe(pred),
        ref=_describe(ref),
        unmatched_predictions=[str(p) for p in matching.unmatched_predictions],
        unmatched_references=[str(p) for p in matching.unmatched_references],
        conventions=CONVENTIONS,
    )
    result = EvaluationResult(cases, summary, matching.unmatched_predictions, matching.unmatched_references)
    if out_dir is not None:
        out = Path(out_dir)
        result.output_dir = out
        with atomic_group():  # the four files appear together or not at all
            result.files = {
                "metrics.csv": write_metrics_csv(cases, out / "metrics.csv"),
                "lesions.csv": write_lesions_csv(cases, out / "lesions.csv"),
                "summary.json": write_summary(summary, out / "summary.json"),
                "summary.png": write_summary_png(cases, summary, out / "summary.png"),
            }
    return result


def evaluate_pair(pair: CasePair, *, resample_ref: bool = False) -> CaseResult:
    """Read, check and evaluate one predicted mask against its reference (see :func:`load_pair`)."""
    pred, ref, geometry = load_pair(pair, resample_ref=resample_ref)
    result = evaluate_case(pred, ref, geometry, pair.case)
    result.pred, result.ref = pair.pred, pair.ref
    return result


def load_pair(pair: CasePair, *, resample_ref: bool = False) -> tuple[np.ndarray, np.ndarray, Geometry]:
    """The predicted and reference label arrays (z, y, x, uint8) of a pair on the prediction's grid, and that grid.

    A reference holding the prediction's voxels in another axis order or direction is reoriented onto it; one on
    other voxels is resampled (nearest neighbour) with ``resample_ref``.

    Raises:
        InputError: a mask cannot be read, has labels outside {0, 1, 2}, or (without ``resample_ref``) the two hold
            different voxels.
    """
    ref_image = read_image(pair.ref)
    pred_image = read_image(pair.pred)
    geometry = Geometry.of(pred_image)
    _check_geometry(pair, geometry, Geometry.of(ref_image), resample_ref)
    for image, path in ((pred_image, pair.pred), (ref_image, pair.ref)):
        check_label_values(image, path)
    ref_image = onto_grid(ref_image, geometry, resample=resample_ref)
    pred, ref = (sitk.GetArrayFromImage(image).astype(np.uint8, copy=False) for image in (pred_image, ref_image))
    return pred, ref, geometry


def _check_geometry(pair: CasePair, pred: Geometry, ref: Geometry, resample_ref: bool) -> None:
    """Refuse a reference on other voxels than its prediction, unless ``resample_ref``."""
    if resample_ref or same_voxels(ref, pred):
        change = describe_change(ref, pred)
        if change:
            logger.info("case %s: reference %s %s onto the prediction's grid", pair.case, pair.ref.name, change)
        return
    raise InputError(
        pair.pred,
        f"case {pair.case}: geometry differs from its reference {pair.ref} and they cover different voxels "
        f"(prediction vs reference: {'; '.join(ref.differences(pred))}); pass --resample-ref to resample the "
        "reference onto the prediction's grid (nearest neighbour)",
    )


def _check_headers(pair: CasePair, resample_ref: bool) -> None:
    """Compare the geometries in the two files' headers, so that a mismatch stops the run before any case is
    evaluated; files whose header cannot be read here are checked fully when the case is read."""
    geometries = []
    for path in (pair.pred, pair.ref):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return
        if reader.GetDimension() != 3:
            return
        geometries.append(
            Geometry(
                size=tuple(int(n) for n in reader.GetSize()),
                spacing=tuple(float(v) for v in reader.GetSpacing()),
                origin=tuple(float(v) for v in reader.GetOrigin()),
                direction=tuple(float(v) for v in reader.GetDirection()),
            )
        )
    _check_geometry(pair, geometries[0], geometries[1], resample_ref)


def _describe(source: Source) -> str | list[str]:
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    return [os.fspath(path) for path in source]
