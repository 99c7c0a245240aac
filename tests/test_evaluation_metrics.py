"""Per-case metrics and aggregates of the evaluation: boxes with hand-computed overlap and surface distances on an
anisotropic grid, the conventions for empty masks, global Dice, and agreement with MONAI's metrics and medpy (the
LiTS scorer's library) on real masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from monai_pipeline.evaluation import (
    EMPTY_DISTANCE_MM,
    evaluate,
    evaluate_case,
    region_metrics,
    summarize,
    tumour_burden,
)
from monai_pipeline.io.geometry import Geometry

SPACING_ZYX = (2.5, 0.9, 0.7)
LPS = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def _grid(shape_zyx, spacing_zyx=SPACING_ZYX) -> Geometry:
    return Geometry(
        size=tuple(shape_zyx[::-1]), spacing=tuple(spacing_zyx[::-1]), origin=(0.0, 0.0, 0.0), direction=LPS
    )


def _box(shape, start, stop) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(a, b) for a, b in zip(start, stop))] = True
    return mask


# ------------------------------------------------------------------------------------------------- overlap


def test_shifted_cubes_overlap_by_hand():
    ref = _box((20, 20, 20), (3, 3, 3), (13, 13, 13))  # 1000 voxels
    pred = _box((20, 20, 20), (3, 3, 5), (13, 13, 15))  # the same cube 2 voxels along x: 800 shared
    m = region_metrics(pred, ref, SPACING_ZYX)
    assert (m.pred_voxels, m.ref_voxels, m.intersection) == (1000, 1000, 800)
    assert m.dice == pytest.approx(0.8)
    assert m.jaccard == pytest.approx(2 / 3)
    assert m.voe == pytest.approx(1 / 3)
    assert m.rvd == 0.0
    assert (m.precision, m.recall, m.f1) == pytest.approx((0.8, 0.8, 0.8))


def test_larger_prediction_volume_difference_by_hand():
    ref = _box((20, 20, 20), (3, 3, 3), (13, 13, 13))  # 1000
    pred = _box((20, 20, 20), (3, 3, 3), (13, 13, 15))  # 1200, holds the reference
    m = region_metrics(pred, ref, SPACING_ZYX)
    assert m.dice == pytest.approx(2000 / 2200)
    assert m.jaccard == pytest.approx(1000 / 1200)
    assert m.rvd == pytest.approx(0.2)  # (|P| - |R|) / |R|: positive for over-segmentation
    assert (m.precision, m.recall) == pytest.approx((1000 / 1200, 1.0))
    assert m.f1 == pytest.approx(m.dice)


# ------------------------------------------------------------------------------------------------- surfaces


def _nested_boxes():
    """An outer box [0, 10)^3 and an inner box [2, 8)^3 (voxel indices) in a 14^3 grid, offset by 2."""
    outer = _box((14, 14, 14), (2, 2, 2), (12, 12, 12))
    inner = _box((14, 14, 14), (4, 4, 4), (10, 10, 10))
    return outer, inner


def _nested_distances_by_hand(spacing) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form surface distances of the nested boxes (in box coordinates 0..9 and 2..7).

    The outer surface is the six faces of [0, 9]^3; from an inner-surface voxel the nearest of them is straight
    across to the closest face. The inner surface is the boundary of [2, 7]^3; from an outer-surface voxel (outside
    the inner box) its nearest voxel is the voxel clamped into [2, 7]^3."""
    s = np.asarray(spacing)
    grid = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    outer_surface = grid[((grid == 0) | (grid == 9)).any(axis=1)]
    inside = grid[((grid >= 2) & (grid <= 7)).all(axis=1)]
    inner_surface = inside[((inside == 2) | (inside == 7)).any(axis=1)]
    outer_to_inner = np.linalg.norm((outer_surface - np.clip(outer_surface, 2, 7)) * s, axis=1)
    inner_to_outer = np.min(np.concatenate([inner_surface * s, (9 - inner_surface) * s], axis=1), axis=1)
    return outer_to_inner, inner_to_outer


def test_nested_boxes_surface_distances_by_hand_anisotropic():
    outer, inner = _nested_boxes()
    m = region_metrics(outer, inner, SPACING_ZYX)
    a, b = _nested_distances_by_hand(SPACING_ZYX)
    pooled = np.concatenate([a, b])
    assert len(a) == 10**3 - 8**3 and len(b) == 6**3 - 4**3
    assert m.mssd_mm == pytest.approx(2 * math.sqrt(2.5**2 + 0.9**2 + 0.7**2), abs=1e-9)  # corner to corner
    assert m.mssd_mm == pytest.approx(pooled.max(), abs=1e-9)
    assert m.assd_mm == pytest.approx(pooled.mean(), abs=1e-9)
    assert m.hd95_mm == pytest.approx(np.percentile(pooled, 95), abs=1e-9)
    assert m.rmssd_mm == pytest.approx(math.sqrt(np.mean(pooled**2)), abs=1e-9)
    assert m.dice == pytest.approx(2 * 216 / (1000 + 216))
    # symmetric: swapping prediction and reference changes no distance
    swapped = region_metrics(inner, outer, SPACING_ZYX)
    assert (swapped.assd_mm, swapped.mssd_mm, swapped.hd95_mm) == pytest.approx((m.assd_mm, m.mssd_mm, m.hd95_mm))
    assert m.rvd == pytest.approx(1000 / 216 - 1) and swapped.rvd == pytest.approx(216 / 1000 - 1)


def test_distances_scale_with_spacing():
    ref = _box((12, 12, 12), (2, 2, 2), (10, 10, 10))
    pred = _box((12, 12, 12), (2, 2, 4), (10, 10, 12))  # shifted 2 voxels along x only
    iso = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert iso.mssd_mm == pytest.approx(2.0)
    wide = region_metrics(pred, ref, (1.0, 1.0, 3.0))
    assert wide.mssd_mm == pytest.approx(6.0)
    assert wide.assd_mm > iso.assd_mm


def test_masks_touching_the_grid_edge():
    """The edge of the array counts as background, as medpy has it, also when the masks are cropped internally."""
    ref = _box((6, 6, 6), (0, 0, 0), (6, 6, 6))  # the whole grid: every face is surface
    pred = _box((6, 6, 6), (0, 0, 0), (6, 6, 5))
    m = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert m.mssd_mm == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------- empty masks


def test_both_empty_is_perfect_agreement():
    empty = np.zeros((5, 6, 7), dtype=bool)
    m = region_metrics(empty, empty, SPACING_ZYX)
    assert (m.dice, m.jaccard, m.voe, m.precision, m.recall, m.f1) == (1.0, 1.0, 0.0, 1.0, 1.0, 1.0)
    assert (m.assd_mm, m.mssd_mm, m.hd95_mm, m.rmssd_mm) == (0.0, 0.0, 0.0, 0.0)
    assert math.isnan(m.rvd)


def test_missed_region_gets_the_lits_penalty():
    ref = _box((8, 8, 8), (2, 2, 2), (5, 5, 5))
    m = region_metrics(np.zeros_like(ref), ref, SPACING_ZYX)
    assert (m.dice, m.jaccard, m.voe, m.precision, m.recall, m.f1) == (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    assert m.rvd == -1.0
    assert (m.assd_mm, m.mssd_mm, m.hd95_mm, m.rmssd_mm) == (EMPTY_DISTANCE_MM,) * 4 == (9001.0,) * 4


def test_prediction_without_reference():
    pred = _box((8, 8, 8), (2, 2, 2), (5, 5, 5))
    m = region_metrics(pred, np.zeros_like(pred), SPACING_ZYX)
    assert (m.dice, m.precision, m.recall) == (0.0, 0.0, 0.0)
    assert math.isnan(m.rvd)
    assert m.hd95_mm == EMPTY_DISTANCE_MM


def test_region_metrics_rejects_other_shapes():
    with pytest.raises(ValueError, match="one shape"):
        region_metrics(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)), (1, 1, 1))


# ------------------------------------------------------------------------------------------------- regions and cases


def test_liver_region_includes_the_tumour():
    ref = np.zeros((10, 10, 10), dtype=np.uint8)
    ref[2:8, 2:8, 2:8] = 1
    ref[4:6, 4:6, 4:6] = 2
    pred = (ref > 0).astype(np.uint8)  # all liver: the tumour missed, the liver (label >= 1) perfect
    case = evaluate_case(pred, ref, _grid(ref.shape), "c")
    assert case.regions["liver"].dice == 1.0 and case.regions["liver"].mssd_mm == 0.0
    assert case.regions["tumour"].dice == 0.0
    assert case.tumour_burden_ref == pytest.approx(8 / 216)
    assert case.tumour_burden_pred == 0.0
    assert case.tumour_burden_error == pytest.approx(-8 / 216)
    row = case.row()
    assert row["liver_ref_ml"] == pytest.approx(216 * 2.5 * 0.9 * 0.7 / 1000)
    assert row["lesions_ref"] == 1 and row["lesions_pred"] == 0 and row["lesions_detected"] == 0


def test_tumour_burden_without_liver_is_zero():
    assert tumour_burden(np.zeros((3, 3, 3), dtype=np.uint8)) == 0.0


def test_evaluate_case_checks_the_grid():
    with pytest.raises(ValueError, match="geometry's shape"):
        evaluate_case(np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), _grid((4, 4, 5)))


def test_global_dice_and_dice_per_case():
    grid = _grid((20, 20, 20))
    ref_a = np.zeros((20, 20, 20), dtype=np.uint8)
    ref_a[3:13, 3:13, 3:13] = 1  # 1000 voxels
    pred_a = np.zeros_like(ref_a)
    pred_a[3:13, 3:13, 5:15] = 1  # 800 shared: Dice 0.8
    ref_b = np.zeros_like(ref_a)
    ref_b[0:2, 0:5, 0:10] = 1  # 100 voxels
    pred_b = np.zeros_like(ref_a)  # missed: Dice 0
    empty = np.zeros_like(ref_a)
    cases = [evaluate_case(pred_a, ref_a, grid, "a"), evaluate_case(pred_b, ref_b, grid, "b")]
    cases.append(evaluate_case(empty, empty, grid, "c"))  # no liver anywhere: Dice 1 by convention
    summary = summarize(cases)
    liver = summary["liver"]
    assert liver["dice_per_case"]["mean"] == pytest.approx((0.8 + 0.0 + 1.0) / 3)
    assert liver["dice_per_case"]["std"] == pytest.approx(np.std([0.8, 0.0, 1.0]))
    assert liver["dice_global"] == pytest.approx(2 * 800 / (1000 + 1000 + 100))
    assert (liver["empty_reference_cases"], liver["empty_prediction_cases"], liver["both_empty_cases"]) == (1, 2, 1)
    # RVD is undefined for the case without a reference liver, and left out of its mean
    assert liver["metrics"]["rvd"]["n"] == 2
    assert liver["metrics"]["rvd"]["mean"] == pytest.approx((0.0 - 1.0) / 2)
    assert liver["metrics"]["hd95_mm"]["n"] == 3
    tumour = summary["tumour"]
    assert math.isnan(tumour["dice_global"]) and tumour["empty_reference_cases"] == 3
    assert summary["tumour_burden"] == {"rmse": 0.0, "mean_error": 0.0, "max_abs_error": 0.0}


# ------------------------------------------------------------------------------------------------- references


def _monai_dice_iou(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    import torch
    from monai.metrics import DiceMetric, MeanIoU

    p = torch.from_numpy(pred.astype(np.float32))[None, None]
    r = torch.from_numpy(ref.astype(np.float32))[None, None]
    dice = DiceMetric(include_background=True, reduction="mean")(p, r)
    iou = MeanIoU(include_background=True, reduction="mean")(p, r)
    return float(dice.mean()), float(iou.mean())


def _medpy():
    return pytest.importorskip("medpy.metric.binary", reason="medpy is in the test extra: pip install -e .[test]")


def _medpy_distances(pred: np.ndarray, ref: np.ndarray, spacing_zyx) -> dict[str, float]:
    """medpy's ASSD, Hausdorff and HD95 from one call of its surface distances per direction (its public ``assd``,
    ``hd`` and ``hd95`` compute the same two lists and pool them like this, twice as slowly each)."""
    surface_distances = getattr(_medpy(), "__surface_distances")
    pooled = np.concatenate([surface_distances(pred, ref, spacing_zyx), surface_distances(ref, pred, spacing_zyx)])
    return {"assd_mm": pooled.mean(), "mssd_mm": pooled.max(), "hd95_mm": np.percentile(pooled, 95)}


def _check_against_references(pred: np.ndarray, ref: np.ndarray, spacing_zyx) -> dict[str, float]:
    """Every metric of ``region_metrics`` against MONAI (Dice, Jaccard: 1e-6) and medpy (distances: 1e-3 mm);
    returns the differences."""
    binary = _medpy()
    m = region_metrics(pred, ref, spacing_zyx)
    dice, iou = _monai_dice_iou(pred, ref)
    assert m.dice == pytest.approx(dice, abs=1e-6)
    assert m.jaccard == pytest.approx(iou, abs=1e-6)
    assert m.dice == pytest.approx(binary.dc(pred, ref), abs=1e-12)
    assert m.jaccard == pytest.approx(binary.jc(pred, ref), abs=1e-12)
    assert m.rvd == pytest.approx(binary.ravd(pred, ref), abs=1e-12)
    assert m.precision == pytest.approx(binary.precision(pred, ref), abs=1e-12)
    assert m.recall == pytest.approx(binary.recall(pred, ref), abs=1e-12)
    expected = _medpy_distances(pred, ref, spacing_zyx)
    for name, value in expected.items():
        assert getattr(m, name) == pytest.approx(value, abs=1e-3), name
    differences = {name: abs(getattr(m, name) - value) for name, value in expected.items()}
    differences.update(dice=abs(m.dice - dice), jaccard=abs(m.jaccard - iou))
    return differences


def _perturb(labels: np.ndarray) -> np.ndarray:
    """A plausible other segmentation: liver grown by a voxel, tumours eroded, one tumour shifted, a false tumour."""
    out = labels.copy()
    out[ndimage.binary_dilation(labels >= 1) & (labels == 0)] = 1
    tumour = labels == 2
    out[tumour & ~ndimage.binary_erosion(tumour)] = 1
    out[np.roll(tumour, 3, axis=2) & (out >= 1)] = 2
    z, y, x = np.argwhere(labels == 1)[len(np.argwhere(labels == 1)) // 3]
    out[z - 2 : z + 2, y - 2 : y + 2, x - 2 : x + 2] = 2
    return out


@pytest.mark.realdata
def test_lits_117_against_a_perturbed_copy_matches_monai_and_medpy(real_data):
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(real_data / "lits117" / "segmentation-117.nii.gz")))
    pred = _perturb(ref)
    spacing = (2.0, 0.8, 0.7)  # anisotropic, as LiTS scans are (the file's 1 mm is a placeholder)
    for region, mask in (("liver", lambda a: a >= 1), ("tumour", lambda a: a == 2)):
        differences = _check_against_references(mask(pred), mask(ref), spacing)
        assert max(differences.values()) < 1e-6, (region, differences)


@pytest.mark.realdata
def test_totalsegmentator_livers_against_each_other_match_monai_and_medpy(real_data):
    """The liver of the fast model on the full scan (its last 30 slices) against the normal model's on the crop."""
    fast = sitk.GetArrayFromImage(sitk.ReadImage(str(real_data / "totalseg" / "example_ct_liver_totalseg_fast.nii.gz")))
    crop = sitk.ReadImage(str(real_data / "totalseg" / "example_seg_liver_binary.nii.gz"))
    normal = sitk.GetArrayFromImage(crop)
    fast = fast[-normal.shape[0] :]
    spacing = crop.GetSpacing()[::-1]
    differences = _check_against_references(fast > 0, normal > 0, spacing)
    assert max(differences.values()) < 1e-6, differences
    # medpy's public functions give what the test helper takes from its surface distances
    binary = _medpy()
    public = {
        "assd_mm": binary.assd(fast > 0, normal > 0, voxelspacing=spacing),
        "mssd_mm": binary.hd(fast > 0, normal > 0, voxelspacing=spacing),
        "hd95_mm": binary.hd95(fast > 0, normal > 0, voxelspacing=spacing),
    }
    assert public == pytest.approx(_medpy_distances(fast > 0, normal > 0, spacing), abs=1e-12)
    assert 0.9 < region_metrics(fast > 0, normal > 0, spacing).dice < 1.0  # two real, different segmentations


@pytest.mark.realdata
def test_totalsegmentator_dicom_grid_liver_through_files(real_data, tmp_path):
    """A 512x512x20 anisotropic (0.98 x 0.98 x 2 mm, LAS) liver against itself shifted by a voxel, through
    :func:`evaluate`: the numbers of the API are those of medpy."""
    image = sitk.ReadImage(str(real_data / "totalseg" / "example_seg_dicom_liver_binary.nii.gz"))
    ref = sitk.GetArrayFromImage(image)
    pred = np.roll(ref, 2, axis=2)
    shifted = sitk.GetImageFromArray(pred)
    shifted.CopyInformation(image)
    sitk.WriteImage(shifted, str(tmp_path / "liver_dicom_seg.nii.gz"))
    result = evaluate(
        tmp_path / "liver_dicom_seg.nii.gz", real_data / "totalseg" / "example_seg_dicom_liver_binary.nii.gz"
    )
    (case,) = result.cases
    liver = case.regions["liver"]
    assert liver.dice == pytest.approx(_medpy().dc(pred, ref), abs=1e-12)
    expected = _medpy_distances(pred, ref, image.GetSpacing()[::-1])
    assert {name: getattr(liver, name) for name in expected} == pytest.approx(expected, abs=1e-3)
    assert case.regions["tumour"].dice == 1.0  # no tumour in either
