"""Prepare one case: read and check the raw pair, fingerprint it, preprocess it, write it atomically."""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk

from monai_pipeline.errors import InputError, case_failure
from monai_pipeline.io.align import describe_change, onto_grid, same_voxels
from monai_pipeline.io.atomic import atomic_group, atomic_path, discard
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.io.reader import check_label_values, read_image
from monai_pipeline.io.writer import write_image
from monai_pipeline.prepare.discover import RawCase
from monai_pipeline.prepare.fingerprint import case_fingerprint
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.preprocessing.hu import ensure_hu
from monai_pipeline.preprocessing.pipeline import preprocess

__all__ = ["FOLDERS", "CaseResult", "case_paths", "read_case", "prepare_case", "fingerprint_case", "load_finished"]

FOLDERS = ("images", "labels", "records")
"""The sub-folders of a prepared dataset that hold one file per case (see :func:`case_paths`)."""

logger = logging.getLogger(__name__)

GEOMETRY_TOLERANCE = 1e-3
"""Image and label grids that differ by less than this (relative spacing, 1/100 voxel origin) are the same grid."""


@dataclass
class CaseResult:
    """The outcome of one case: its record when it succeeded, else the one-line error (and traceback)."""

    name: str
    record: dict[str, Any] | None = None
    error: str | None = None
    details: str | None = None
    skipped: bool = False


def case_paths(out_dir: Path, name: str) -> dict[str, Path]:
    """Where a prepared case's files go."""
    images, labels, records = (out_dir / folder for folder in FOLDERS)
    return {"image": images / f"{name}.nii.gz", "label": labels / f"{name}.nii.gz", "record": records / f"{name}.json"}


def read_case(case: RawCase, resample_labels: bool = False) -> tuple[sitk.Image, sitk.Image | None]:
    """Read a raw case and check it: a 3D CT in HU (see :func:`~monai_pipeline.preprocessing.hu.ensure_hu`), and a
    label with values in {0, 1, 2} on the CT's grid. A label holding the CT's voxels in another axis order or
    direction (a dcm2niix NIfTI, LAS, of a DICOM series read as LPS) is reoriented onto it; one on other voxels is
    resampled onto it with nearest neighbour when ``resample_labels``, else refused.

    Returns the CT and the label as uint8 (with the CT's exact geometry), or ``None`` for an unlabelled case.

    Raises:
        InputError: naming the file and the problem.
    """
    image = ensure_hu(read_image(case.image), case.image)
    if case.label is None:
        return image, None
    label = read_image(case.label)
    grid = Geometry.of(image)
    problems = grid.differences(Geometry.of(label), GEOMETRY_TOLERANCE)
    if problems and not resample_labels and not same_voxels(Geometry.of(label), grid, GEOMETRY_TOLERANCE):
        raise InputError(
            case.label,
            f"geometry differs from its image {case.image.name} and they cover different voxels: "
            f"{'; '.join(problems)}; pass --resample-labels to resample it onto the image (nearest neighbour)",
        )
    check_label_values(label, case.label)
    change = describe_change(Geometry.of(label), grid, GEOMETRY_TOLERANCE)
    if change:
        logger.info("%s: %s onto its image's grid", case.label.name, change)
    label = sitk.Cast(onto_grid(label, grid, resample=resample_labels, tolerance=GEOMETRY_TOLERANCE), sitk.sitkUInt8)
    label.CopyInformation(image)
    return image, label


def fingerprint_case(case: RawCase, resample_labels: bool = False) -> CaseResult:
    """Read and check a case and return only its fingerprint (the first pass of z-score preparation)."""
    try:
        image, label = read_case(case, resample_labels)
        return CaseResult(case.name, record={"fingerprint": case_fingerprint(image, label)})
    except Exception as err:  # noqa: BLE001 - a bad case is reported and the others go on
        return _failure(case, err)


def load_finished(case: RawCase, out_dir: Path, digest: str) -> dict[str, Any] | None:
    """The record of a case already prepared with the same parameters, or ``None`` when it must be (re)done."""
    paths = case_paths(out_dir, case.name)
    if not paths["record"].is_file() or not paths["image"].is_file():
        return None
    if case.label is not None and not paths["label"].is_file():
        return None
    try:
        record = json.loads(paths["record"].read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("config_digest") == digest else None


def prepare_case(
    case: RawCase, out_dir: Path, config: PreprocessingConfig, raw_dir: Path, resample_labels: bool = False
) -> CaseResult:
    """Prepare one case into ``out_dir`` unless it is already done with the same parameters (``resample_labels``:
    see :func:`read_case`).

    Never raises for a bad case: the failure is returned so that the other cases go on, and the case is left
    with none of its files (they appear together, only when all are written).
    """
    digest = config.digest()
    finished = load_finished(case, out_dir, digest)
    if finished is not None:
        return CaseResult(case.name, record=finished, skipped=True)
    try:
        image, label = read_case(case, resample_labels)
        fingerprint = case_fingerprint(image, label)
        prepared = preprocess(image, config, label)
        del image, label
        paths = case_paths(out_dir, case.name)
        record = {
            "case": case.name,
            "split": case.split,
            "source": {
                "image": case.image.relative_to(raw_dir).as_posix(),
                "label": case.label.relative_to(raw_dir).as_posix() if case.label is not None else None,
            },
            "config_digest": digest,
            "fingerprint": fingerprint,
            "preprocessing": prepared.record,
        }
        with atomic_group():
            write_image(prepared.image, paths["image"])
            if prepared.label is not None:
                write_image(prepared.label, paths["label"])
            with atomic_path(paths["record"]) as tmp:
                tmp.write_text(json.dumps(record, indent=1) + "\n")
        return CaseResult(case.name, record=record)
    except Exception as err:  # noqa: BLE001 - a bad case is reported and the others go on
        discard(case_paths(out_dir, case.name).values())
        return _failure(case, err)


def _failure(case: RawCase, err: Exception) -> CaseResult:
    if isinstance(err, MemoryError):
        message = f"{case.image}: out of memory while preparing this case"
    else:
        message = case_failure(err, case.image)
    return CaseResult(case.name, error=message, details=traceback.format_exc())
