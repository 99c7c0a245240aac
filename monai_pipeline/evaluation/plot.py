"""``summary.png``: the Dice of every case (liver and tumour) and the lesion recall by size class."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from monai_pipeline.evaluation.case import CaseResult
from monai_pipeline.evaluation.lesions import SIZE_CLASSES
from monai_pipeline.io.writer import atomic_path

__all__ = ["write_summary_png"]

_COLOURS = {"liver": "#c0504d", "tumour": "#4f81bd", "iou>0.5": "#4f81bd", "iou>0": "#9bbb59"}


def write_summary_png(cases: Sequence[CaseResult], summary: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Draw the Dice per case (bars, with the mean as a line) and the lesion recall by size (bars labelled with the
    detected and total lesion counts) into one PNG."""
    width = min(24.0, 6.0 + 0.25 * len(cases))
    figure = Figure(figsize=(width + 5.0, 4.5), layout="constrained")
    dice_axes, lesion_axes = figure.subplots(1, 2, width_ratios=[width, 5.0])
    _dice_panel(dice_axes, cases, summary)
    _lesion_panel(lesion_axes, summary)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=100, format="png", facecolor="white")
    return Path(path)


def _dice_panel(axes, cases: Sequence[CaseResult], summary: dict[str, Any]) -> None:
    positions = range(len(cases))
    bar = 0.4
    for offset, region in ((-bar / 2, "liver"), (bar / 2, "tumour")):
        values = [case.regions[region].dice for case in cases]
        mean = summary[region]["dice_per_case"]["mean"]
        axes.bar([p + offset for p in positions], values, bar, color=_COLOURS[region], label=f"{region}")
        if not math.isnan(mean):
            axes.axhline(mean, color=_COLOURS[region], linestyle="--", linewidth=1, label=f"{region} mean {mean:.3f}")
    axes.set_xticks(list(positions), [case.case for case in cases], rotation=90 if len(cases) > 8 else 0, fontsize=8)
    axes.set_ylim(0.0, 1.05)
    axes.set_ylabel("Dice")
    axes.set_title(f"Dice per case ({len(cases)} case{'' if len(cases) == 1 else 's'})")
    axes.legend(loc="lower left", fontsize=8)


def _lesion_panel(axes, summary: dict[str, Any]) -> None:
    bar = 0.4
    positions = range(len(SIZE_CLASSES))
    for offset, key in ((-bar / 2, "iou>0.5"), (bar / 2, "iou>0")):
        by_size = summary["lesion_detection"][key]["by_size"]
        values = [by_size[name]["recall"] for name in SIZE_CLASSES]
        heights = [0.0 if math.isnan(v) else v for v in values]
        bars = axes.bar([p + offset for p in positions], heights, bar, color=_COLOURS[key], label=f"IoU {key[3:]}")
        for rect, name in zip(bars, SIZE_CLASSES):
            counts = by_size[name]
            axes.annotate(
                f"{counts['detected_reference_lesions']}/{counts['reference_lesions']}",
                (rect.get_x() + rect.get_width() / 2, rect.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
    axes.set_xticks(list(positions), list(SIZE_CLASSES))
    axes.set_ylim(0.0, 1.12)
    axes.set_xlabel("reference lesion, longest axial diameter")
    axes.set_ylabel("lesion recall")
    axes.set_title("Lesion recall by size")
    axes.legend(loc="upper left", fontsize=8)
