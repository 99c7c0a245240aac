"""The dataset fingerprint: what the raw scans look like, per case and over the dataset.

HU inside the liver are kept per case as an integer histogram, so that dataset-wide percentiles, mean and standard
deviation are exact (to 1 HU) however the cases are split between workers or runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import SimpleITK as sitk

from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.config import IntensityStats

__all__ = ["case_fingerprint", "dataset_fingerprint", "intensity_stats", "HU_RANGE"]

HU_RANGE: tuple[int, int] = (-1024, 3071)
"""HU values outside this range are counted at its ends."""

PERCENTILES: tuple[float, ...] = (0.5, 5.0, 50.0, 95.0, 99.5)


def case_fingerprint(image: sitk.Image, label: sitk.Image | None) -> dict[str, Any]:
    """Geometry, label voxel counts and the HU histogram inside the liver (label >= 1) of one raw case."""
    geometry = Geometry.of(image)
    record: dict[str, Any] = {"geometry": geometry.to_dict()}
    if label is None:
        return record
    values = sitk.GetArrayViewFromImage(label)
    counts = [int(np.count_nonzero(values == k)) for k in (0, 1, 2)]
    record["label_voxels"] = {str(k): counts[k] for k in range(3)}
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    record["label_volume_ml"] = {str(k): round(counts[k] * voxel_ml, 3) for k in (1, 2)}
    liver_hu = sitk.GetArrayViewFromImage(image)[values >= 1]
    if liver_hu.size:
        low, high = HU_RANGE
        bins = np.clip(np.rint(liver_hu), low, high).astype(np.int64) - low
        histogram = np.bincount(bins, minlength=high - low + 1)
        nonzero = np.flatnonzero(histogram)
        record["liver_hu_histogram"] = {
            "first_hu": int(nonzero[0] + low),
            "counts": histogram[nonzero[0] : nonzero[-1] + 1].tolist(),
        }
        record["liver_hu"] = _histogram_stats(histogram)
    return record


def intensity_stats(cases: Iterable[dict[str, Any]]) -> IntensityStats:
    """HU statistics inside the liver pooled over ``cases`` (their fingerprints), for z-score normalisation.

    Raises:
        ValueError: when no case has a labelled liver.
    """
    histogram = _pooled_histogram(cases)
    if histogram is None:
        raise ValueError("no labelled liver voxels in the dataset to compute intensity statistics from.")
    stats = _histogram_stats(histogram)
    return IntensityStats(stats["percentile_00_5"], stats["percentile_99_5"], stats["mean"], stats["std"])


def dataset_fingerprint(cases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The dataset summary (medians, orientations, pooled liver HU, label totals) followed by every case's record
    (without its histogram)."""
    geometries = [case["geometry"] for case in cases.values()]
    spacings = np.array([g["spacing"] for g in geometries], dtype=float)
    sizes = np.array([g["size"] for g in geometries], dtype=float)
    totals: Counter[str] = Counter()
    for case in cases.values():
        totals.update(case.get("label_voxels", {}))
    histogram = _pooled_histogram(cases.values())
    summary: dict[str, Any] = {
        "num_cases": len(cases),
        "num_labelled": sum("label_voxels" in case for case in cases.values()),
        "median_spacing": np.median(spacings, axis=0).tolist() if len(cases) else None,
        "min_spacing": spacings.min(axis=0).tolist() if len(cases) else None,
        "max_spacing": spacings.max(axis=0).tolist() if len(cases) else None,
        "median_size": np.median(sizes, axis=0).tolist() if len(cases) else None,
        "orientations": dict(Counter(g["orientation"] for g in geometries)),
        "label_voxels": dict(sorted(totals.items())),
        "liver_hu": _histogram_stats(histogram) if histogram is not None else None,
        "hu_note": "HU inside label >= 1 (liver and tumour), pooled over all labelled cases, 1 HU bins",
    }
    summary["cases"] = {
        name: {key: value for key, value in case.items() if key != "liver_hu_histogram"} for name, case in cases.items()
    }
    return summary


def _pooled_histogram(cases: Iterable[dict[str, Any]]) -> np.ndarray | None:
    low, high = HU_RANGE
    pooled = np.zeros(high - low + 1, dtype=np.int64)
    found = False
    for case in cases:
        entry = case.get("liver_hu_histogram")
        if not entry:
            continue
        start = entry["first_hu"] - low
        pooled[start : start + len(entry["counts"])] += np.asarray(entry["counts"], dtype=np.int64)
        found = True
    return pooled if found else None


def _histogram_stats(histogram: np.ndarray) -> dict[str, float]:
    hu = np.arange(HU_RANGE[0], HU_RANGE[1] + 1, dtype=float)
    total = int(histogram.sum())
    mean = float((hu * histogram).sum() / total)
    std = float(np.sqrt(((hu - mean) ** 2 * histogram).sum() / total))
    cumulative = np.cumsum(histogram)
    stats = {"voxels": total, "mean": round(mean, 3), "std": round(std, 3)}
    for q in PERCENTILES:
        index = int(np.searchsorted(cumulative, q / 100.0 * total, side="left"))
        stats[f"percentile_{q:04.1f}".replace(".", "_")] = float(hu[min(index, len(hu) - 1)])
    return stats
