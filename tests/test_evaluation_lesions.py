"""Lesion-wise detection: reference and predicted lesions as 26-connected components, merged where they overlap;
split and merged lesions, misses and false positives, the IoU threshold, size classes by the longest axial diameter,
and the lesion measurements shared with ``monai-pipeline infer``."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monai_pipeline.evaluation import SIZE_CLASSES, evaluate_case, match_lesions, size_class, summarize
from monai_pipeline.evaluation.report import json_ready
from monai_pipeline.inference.lesions import measure_lesions
from monai_pipeline.io.geometry import Geometry

SHAPE = (24, 90, 90)  # (z, y, x)
SPACING = (0.8, 0.8, 2.0)  # (x, y, z) mm
LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
GRID = Geometry(size=SHAPE[::-1], spacing=SPACING, origin=(-30.0, 12.0, -100.0), direction=LPS)


def _liver() -> np.ndarray:
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1:-1, 2:-2, 2:-2] = 1
    return labels


def _sphere(centre_zyx_mm, radius_mm: float) -> np.ndarray:
    """Voxels whose centre lies within ``radius_mm`` of a point given in mm from the first voxel's centre."""
    spacing_zyx = np.asarray(SPACING[::-1])
    axes = [np.arange(n) * s - c for n, s, c in zip(SHAPE, spacing_zyx, centre_zyx_mm)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    return z**2 + y**2 + x**2 <= radius_mm**2


def _with_tumours(*masks: np.ndarray) -> np.ndarray:
    labels = _liver()
    for mask in masks:
        labels[mask] = 2
    return labels


def _box(start, stop) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    return mask


def _names(lesions, source: str) -> dict[str, str]:
    return {lesion.name: lesion.matched for lesion in lesions if lesion.source == source}


# ------------------------------------------------------------------------------------------------- matching


def test_identical_lesions_are_detected_one_to_one():
    labels = _with_tumours(_sphere((22, 30, 30), 8.0), _sphere((22, 40, 52), 5.0))
    found = match_lesions(labels, labels, GRID, "same")
    assert [(g.reference, g.predicted, g.iou) for g in found.groups] == [([1], [1], 1.0), ([2], [2], 1.0)]
    assert _names(found.lesions, "reference") == {"R1": "P1", "R2": "P2"}
    assert all(lesion.detected and lesion.overlaps for lesion in found.lesions)
    assert found.counts() == {
        "reference_lesions": 2,
        "detected_reference_lesions": 2,
        "predicted_lesions": 2,
        "detected_predicted_lesions": 2,
        "merge_errors": 0,
        "split_errors": 0,
    }


def test_split_lesion_is_matched_to_the_union_of_its_pieces():
    lesion = _sphere((22, 36, 36), 10.0)
    pred = lesion.copy()
    pred[:, :, 44:46] = False  # a 1.6 mm cut: two 26-separate pieces
    found = match_lesions(_with_tumours(pred), _with_tumours(lesion), GRID, "split")
    (group,) = found.groups
    assert group.reference == [1] and group.predicted == [1, 2]
    assert group.intersection == np.count_nonzero(pred)
    assert group.iou == pytest.approx(np.count_nonzero(pred) / np.count_nonzero(lesion))
    assert group.detected(0.5)
    assert _names(found.lesions, "reference") == {"R1": "P1;P2"}
    assert _names(found.lesions, "prediction") == {"P1": "R1", "P2": "R1"}
    counts = found.counts()
    assert (
        counts["detected_reference_lesions"] == counts["predicted_lesions"] == counts["detected_predicted_lesions"] == 1
    )
    assert (counts["split_errors"], counts["merge_errors"]) == (1, 0)


def test_merged_lesions_are_matched_together():
    left, right = _sphere((22, 36, 24), 6.0), _sphere((22, 36, 42), 6.0)
    pred = left | right | _box((9, 42, 30), (14, 49, 53))  # one blob bridging the two
    found = match_lesions(_with_tumours(pred), _with_tumours(left, right), GRID, "merged")
    (group,) = found.groups
    assert sorted(group.reference) == [1, 2] and group.predicted == [1]
    assert group.iou == pytest.approx((left | right).sum() / pred.sum())
    assert group.iou > 0.5
    counts = found.counts()
    assert counts["reference_lesions"] == counts["detected_reference_lesions"] == 2  # both reference lesions found
    assert counts["predicted_lesions"] == counts["detected_predicted_lesions"] == 1  # by one predicted lesion
    assert (counts["merge_errors"], counts["split_errors"]) == (1, 0)
    assert _names(found.lesions, "prediction") == {"P1": "R1;R2"}


def test_chains_of_overlaps_form_one_group():
    """R1 overlaps P1 and P2, P2 overlaps R2: the connected group holds all four."""
    r1, r2 = _box((8, 20, 20), (14, 30, 30)), _box((8, 20, 40), (14, 30, 50))
    p1, p2 = _box((8, 20, 14), (14, 30, 22)), _box((8, 20, 27), (14, 30, 42))
    found = match_lesions(_with_tumours(p1, p2), _with_tumours(r1, r2), GRID)
    (group,) = found.groups
    assert sorted(group.reference) == [1, 2] and sorted(group.predicted) == [1, 2]
    union_inter = ((r1 | r2) & (p1 | p2)).sum()
    assert group.iou == pytest.approx(union_inter / ((r1 | r2) | (p1 | p2)).sum())


def test_missed_lesion_and_false_positive():
    kept, missed, false = _sphere((22, 24, 24), 6.0), _sphere((22, 24, 50), 5.0), _sphere((22, 50, 36), 4.0)
    found = match_lesions(_with_tumours(kept, false), _with_tumours(kept, missed), GRID, "c")
    groups = {(tuple(g.reference), tuple(g.predicted)): g for g in found.groups}
    assert set(groups) == {((1,), (1,)), ((2,), ()), ((), (2,))}
    assert groups[((2,), ())].iou == 0.0 and not groups[((2,), ())].detected(0.0)
    summary = summarize([evaluate_case(_with_tumours(kept, false), _with_tumours(kept, missed), GRID, "c")])
    detection = summary["lesion_detection"]["iou>0.5"]
    assert (detection["recall"], detection["precision"], detection["f1"]) == (0.5, 0.5, 0.5)
    rows = {lesion.name: lesion for lesion in found.lesions if lesion.source == "prediction"}
    assert rows["P2"].matched == "" and not rows["P2"].overlaps and rows["P2"].group_iou == 0.0


def test_iou_threshold_is_strict_and_any_overlap_counts_at_zero():
    ref = _box((8, 30, 30), (18, 40, 40))
    half = _box((8, 30, 30), (18, 40, 35))  # IoU exactly 0.5
    quarter = _box((8, 30, 36), (18, 40, 46))  # 4 of 10 columns shared: IoU 400 / 1600
    for pred, iou in ((half, 0.5), (quarter, 0.25)):
        found = match_lesions(_with_tumours(pred), _with_tumours(ref), GRID)
        (group,) = found.groups
        assert group.iou == pytest.approx(iou)
        assert not group.detected(0.5) and group.detected(0.0)
        (lesion, _) = found.lesions
        assert (lesion.detected, lesion.overlaps, lesion.group_iou) == (False, True, pytest.approx(iou))


def test_no_tumour_anywhere():
    liver = _liver()
    found = match_lesions(liver, liver, GRID, "clean")
    assert found.lesions == [] and found.groups == []
    detection = summarize([evaluate_case(liver, liver, GRID, "clean")])["lesion_detection"]["iou>0.5"]
    assert detection["reference_lesions"] == detection["predicted_lesions"] == 0
    assert math.isnan(detection["recall"]) and math.isnan(detection["precision"]) and math.isnan(detection["f1"])
    assert json_ready(detection)["recall"] is None


# ------------------------------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("diameter", "expected"),
    [(0.0, "<10 mm"), (9.99, "<10 mm"), (10.0, "10-20 mm"), (20.0, "10-20 mm"), (20.01, ">20 mm")],
)
def test_size_class_boundaries(diameter, expected):
    assert size_class(diameter) == expected


def test_recall_and_precision_by_size():
    small, medium, large = _sphere((22, 20, 20), 3.0), _sphere((22, 20, 50), 7.0), _sphere((22, 50, 35), 14.0)
    false_small = _sphere((6, 60, 60), 2.5)
    ref = _with_tumours(small, medium, large)
    pred = _with_tumours(medium, large, false_small)  # the small lesion missed, a small false positive
    case = evaluate_case(pred, ref, GRID, "sizes")
    classes = {lesion.name: lesion.size_class for lesion in case.lesions.reference()}
    assert classes == {"R1": ">20 mm", "R2": "10-20 mm", "R3": "<10 mm"}  # numbered largest first
    by_size = summarize([case])["lesion_detection"]["iou>0.5"]["by_size"]
    assert list(by_size) == list(SIZE_CLASSES)
    assert [(by_size[c]["detected_reference_lesions"], by_size[c]["reference_lesions"]) for c in SIZE_CLASSES] == [
        (0, 1),
        (1, 1),
        (1, 1),
    ]
    assert [(by_size[c]["detected_predicted_lesions"], by_size[c]["predicted_lesions"]) for c in SIZE_CLASSES] == [
        (0, 1),
        (1, 1),
        (1, 1),
    ]
    assert by_size["<10 mm"]["recall"] == 0.0 and by_size["<10 mm"]["f1"] == 0.0
    assert by_size[">20 mm"]["f1"] == 1.0


def test_lesions_are_measured_as_infer_measures_them(orientation):
    """Volume, longest axial diameter and centroid of each lesion are those of ``measure_lesions`` on the whole
    mask, in every orientation of the grid."""
    grid = Geometry(size=GRID.size, spacing=GRID.spacing, origin=GRID.origin, direction=orientation.direction)
    ref = _with_tumours(_sphere((22, 24, 24), 9.0), _sphere((22, 50, 50), 5.0), _box((3, 10, 60), (6, 14, 80)))
    found = match_lesions(np.zeros_like(ref), ref, grid)
    expected = measure_lesions(ref, grid)
    got = found.reference()
    assert [lesion.lesion_id for lesion in got] == [lesion.lesion_id for lesion in expected] == [1, 2, 3]
    for mine, theirs in zip(got, expected):
        assert (mine.voxels, mine.volume_ml) == (theirs.voxels, theirs.volume_ml)
        assert mine.longest_axial_diameter_mm == theirs.longest_axial_diameter_mm
        assert (mine.centroid_lps_x_mm, mine.centroid_lps_y_mm, mine.centroid_lps_z_mm) == (
            theirs.centroid_lps_x_mm,
            theirs.centroid_lps_y_mm,
            theirs.centroid_lps_z_mm,
        )
    # the box is 20 columns of 0.8 mm by 4 rows of 0.8 mm in the axial plane: edge to edge 16 by 3.2 mm
    assert got[2].longest_axial_diameter_mm == pytest.approx(math.hypot(16.0, 3.2), abs=0.01)


def test_tumour_burden_error_per_case():
    ref = _with_tumours(_box((8, 30, 30), (18, 40, 40)))  # 1000 tumour voxels
    pred = _with_tumours(_box((8, 30, 30), (18, 40, 35)))  # 500
    case = evaluate_case(pred, ref, GRID, "burden")
    liver = np.count_nonzero(_liver())
    assert case.tumour_burden_ref == pytest.approx(1000 / liver)
    assert case.tumour_burden_error == pytest.approx(-500 / liver)
    assert summarize([case])["tumour_burden"]["rmse"] == pytest.approx(500 / liver)
