"""The evaluation's files and printed table: ``metrics.csv`` (a row per case), ``lesions.csv`` (a row per reference
and predicted lesion), ``summary.json`` and a plain-text table."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from monai_pipeline.evaluation.case import METRICS_COLUMNS, CaseResult
from monai_pipeline.evaluation.lesions import SIZE_CLASSES, LesionRecord
from monai_pipeline.io.writer import atomic_path

__all__ = ["LESION_COLUMNS", "format_table", "json_ready", "write_lesions_csv", "write_metrics_csv", "write_summary"]

LESION_COLUMNS: list[str] = [f.name for f in fields(LesionRecord)]
"""The columns of ``lesions.csv``."""


def write_metrics_csv(cases: Sequence[CaseResult], path: str | os.PathLike[str]) -> Path:
    """Write a row per case (columns :data:`~monai_pipeline.evaluation.case.METRICS_COLUMNS`); NaN is empty."""
    return _write_csv([case.row() for case in cases], METRICS_COLUMNS, path)


def write_lesions_csv(cases: Sequence[CaseResult], path: str | os.PathLike[str]) -> Path:
    """Write a row per reference and predicted lesion of every case, with its group, match and IoU."""
    rows = [asdict(lesion) for case in cases for lesion in case.lesions.lesions]
    return _write_csv(rows, LESION_COLUMNS, path)


def write_summary(summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the summary as JSON; undefined values (NaN) become ``null``."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(json_ready(summary), indent=2, allow_nan=False) + "\n")
    return Path(path)


def json_ready(value: Any) -> Any:
    """``value`` with NaN and infinite numbers as None and paths, tuples and numpy scalars as JSON types."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, dict):
        return {str(key): json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(item) for item in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def format_table(cases: Sequence[CaseResult], summary: dict[str, Any]) -> str:
    """A table of the main metrics per case with their mean and standard deviation, then global Dice, lesion
    detection and tumour-burden error."""
    columns = [("liver", "dice", "liver Dice"), ("liver", "assd_mm", "ASSD mm"), ("liver", "hd95_mm", "HD95 mm")]
    columns += [("tumour", "dice", "tumour Dice"), ("tumour", "assd_mm", "ASSD mm"), ("tumour", "hd95_mm", "HD95 mm")]
    width = max([20, *(len(case.case) for case in cases)])
    header = f"{'case':<{width}}" + "".join(f" {title:>11}" for *_, title in columns)
    header += f" {'lesions R/P/det':>15} {'burden error':>12}"
    rule = "-" * len(header)
    lines = [header, rule]
    for case in cases:
        counts = case.lesions.counts(0.5)
        found, predicted = counts["detected_reference_lesions"], len(case.lesions.predicted())
        lesions = f"{counts['reference_lesions']}/{predicted}/{found}"
        cells = "".join(f" {_num(getattr(case.regions[region], name), 4):>11}" for region, name, _ in columns)
        lines.append(f"{case.case:<{width}}{cells} {lesions:>15} {case.tumour_burden_error:>+12.4f}")
    lines.append(rule)
    stats = [summary[region]["metrics"][name] for region, name, _ in columns]
    lines.append(f"{'mean':<{width}}" + "".join(f" {_num(s['mean'], 4):>11}" for s in stats))
    lines.append(f"{'std':<{width}}" + "".join(f" {_num(s['std'], 4):>11}" for s in stats))
    lines.append(
        f"{'global Dice':<{width}} {_num(summary['liver']['dice_global'], 4):>11} {'':>23} "
        f"{_num(summary['tumour']['dice_global'], 4):>11}"
    )
    for key, detection in summary["lesion_detection"].items():
        by_size = ", ".join(f"{name} {_fraction(detection['by_size'][name], 'recall')}" for name in SIZE_CLASSES)
        lines.append(
            f"lesions {key}: recall {_fraction(detection, 'recall')}, precision {_fraction(detection, 'precision')}, "
            f"F1 {_num(detection['f1'])}; recall by size: {by_size}"
        )
    burden = summary["tumour_burden"]
    lines.append(f"tumour burden error: RMSE {_num(burden['rmse'], 4)}, max {_num(burden['max_abs_error'], 4)}")
    return "\n".join(lines)


def _write_csv(rows: list[dict[str, Any]], columns: list[str], path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        with tmp.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=columns)
            writer.writeheader()
            writer.writerows({key: _cell(row.get(key)) for key in columns} for row in rows)
    return Path(path)


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(round(float(value), 8))
    return value


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _fraction(counts: dict[str, Any], which: str) -> str:
    """``0.667 (2/3)`` for a recall or precision with its counts."""
    if which == "recall":
        hit, total = counts["detected_reference_lesions"], counts["reference_lesions"]
    else:
        hit, total = counts["detected_predicted_lesions"], counts["predicted_lesions"]
    return f"{_num(counts[which])} ({hit}/{total})"
