"""Quality flags: each one raised on purpose, by the functions on crafted masks and probabilities and end to end
through ``run_cases`` (summary.json and the warning lines) with the HU oracle on phantoms."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import SimpleITK as sitk
from _oracle import INFERENCE_3D, HUOracle, ct_image, oracle_model, phantom_hu
from conftest import ORIENTATIONS

from monai_pipeline.inference import PostprocessConfig, segment
from monai_pipeline.inference.quality import (
    LIVER_ML_RANGE,
    MAX_LIVER_ENTROPY,
    MIN_TTA_DICE,
    MIN_WHOLE_LIVER_ML,
    NO_LIVER_ML,
    QualityFlag,
    confidence_flags,
    head_foot_axis,
    liver_flags,
    mean_entropy,
)
from monai_pipeline.inference.run import InferenceCase, run_cases
from monai_pipeline.io import Geometry, write_image

SIZE = (40, 40, 30)  # (x, y, z)
SPACING = (6.0, 6.0, 6.0)
BODY = ((5.0, 0.0, 0.0), (105.0, 95.0, 150.0))  # through every slice, as an abdomen
LIVER = ((-10.0, 5.0, 3.0), (70.0, 60.0, 55.0))  # about 970 mL, clear of every edge
TUMOUR = ((-20.0, 10.0, 10.0), 15.0)
WHOLE_WINDOW = dict(INFERENCE_3D, roi_size=[64, 64, 64], sw_batch_size=1)
"""One window over the whole grid: an oracle reading a neighbouring voxel needs it."""


def _phantom(direction=ORIENTATIONS["LPS"].direction, liver=LIVER) -> sitk.Image:
    hu = phantom_hu(SIZE, SPACING, body=BODY, liver=liver, tumour=TUMOUR if liver is LIVER else ((0, 0, 0), 0.0))
    return ct_image(hu, SPACING, (-100.0, 20.0, 300.0), direction)


def _codes(flags: list[QualityFlag]) -> list[str]:
    return [flag.code for flag in flags]


def _grid(size=SIZE, spacing=SPACING, direction=ORIENTATIONS["LPS"].direction) -> Geometry:
    return Geometry(size=size, spacing=spacing, origin=(0.0, 0.0, 0.0), direction=direction)


# ----------------------------------------------------------------------------------------- the functions alone


def test_a_5_ml_blob_is_no_liver():
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[10:12, 10:13, 10:14] = 1  # 24 voxels of 0.216 mL
    flags = liver_flags(labels, _grid(), 5.184)
    assert _codes(flags) == ["no_liver"]
    assert "5.2 mL" in flags[0].reason and f"{NO_LIVER_ML:g} mL" in flags[0].reason
    emptied = liver_flags(np.zeros_like(labels), _grid(), 0.0, found_ml=5.184)
    assert (
        emptied[0].reason.startswith("liver 0.0 mL") and "marked 5.2 mL, post-processing left none" in emptied[0].reason
    )


def test_a_huge_liver_is_flagged_even_when_cut_off():
    labels = np.ones(SIZE[::-1], dtype=np.uint8)  # reaches every edge: 10368 mL
    flags = liver_flags(labels, _grid(), 10368.0)
    assert _codes(flags) == ["partial_liver", "liver_volume"]
    assert "10368 mL" in flags[1].reason and f"{LIVER_ML_RANGE[1]:g} mL" in flags[1].reason


def test_a_small_liver_is_flagged_only_when_fully_covered():
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[5:10, 5:15, 5:15] = 1
    flags = liver_flags(labels, _grid(), 108.0)
    assert _codes(flags) == ["liver_volume"] and f"below the plausible {LIVER_ML_RANGE[0]:g} mL" in flags[0].reason
    labels[0] = labels[5]  # now on the first slice: a cut-off liver may be small
    assert _codes(liver_flags(labels, _grid(), 130.0)) == ["partial_liver"]


@pytest.mark.parametrize("name", ["LPS", "RAS", "LAI", "oblique"])
def test_partial_liver_names_the_head_foot_axis_in_any_orientation(name):
    direction = ORIENTATIONS[name].direction
    assert head_foot_axis(_grid(direction=direction)) == 2
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[0:10, 10:20, 10:20] = 1  # on the first slice along z
    (flag,) = liver_flags(labels, _grid(direction=direction), 1000.0)
    superior = np.reshape(direction, (3, 3))[2, 2] > 0
    assert flag.code == "partial_liver"
    assert f"first slice along z ({'feet' if superior else 'head'} end)" in flag.reason


def test_head_foot_axis_of_a_sagittal_grid_is_its_first_axis():
    sagittal = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0)  # index x runs along S, y along L, z along P
    geometry = _grid(direction=sagittal)
    assert head_foot_axis(geometry) == 0
    labels = np.zeros(SIZE[::-1], dtype=np.uint8)
    labels[10:20, 10:20, 30:40] = 1  # on the last x slice: the head end; no other edge
    (flag,) = liver_flags(labels, geometry, 1000.0)
    assert flag.reason.startswith("the liver reaches the last slice along x (head end)")
    labels[...] = 0
    labels[0:10, 10:20, 10:20] = 1  # on the first z slice: in-plane for this grid
    (flag,) = liver_flags(labels, geometry, 1000.0)
    assert "in-plane edge of the field of view (along z)" in flag.reason


def test_uniform_probabilities_are_low_confidence():
    inside = np.zeros((4, 5, 6), dtype=bool)
    inside[1:3, 1:4, 1:5] = True
    uniform = np.full((3, *inside.shape), 1 / 3, dtype=np.float32)
    assert mean_entropy(uniform, inside) == pytest.approx(1.0)
    certain = np.zeros_like(uniform)
    certain[1] = 1.0
    assert mean_entropy(certain, inside) == pytest.approx(0.0, abs=1e-9)
    assert mean_entropy(uniform, np.zeros_like(inside)) is None
    (flag,) = confidence_flags(1.0, None)
    assert flag.code == "low_confidence" and f"1.00, above {MAX_LIVER_ENTROPY:g}" in flag.reason
    (flag,) = confidence_flags(0.1, 0.5)
    assert f"0.500, below {MIN_TTA_DICE:g}" in flag.reason
    assert confidence_flags(0.1, 0.99) == [] and confidence_flags(None, None) == []


# ------------------------------------------------------------------------------------------------ end to end


def test_normal_phantom_has_no_flag():
    result = segment(_phantom(ORIENTATIONS["oblique"].direction), oracle_model(SPACING))
    assert LIVER_ML_RANGE[0] < result.summary["liver_volume_ml"] < LIVER_ML_RANGE[1]
    assert result.flags == [] and result.summary["flags"] == []
    assert result.summary["liver_entropy"] < 0.01 and result.summary["tta_liver_dice"] is None


def test_each_flag_in_summary_json_and_as_a_warning_line(tmp_path, caplog):
    lai = ORIENTATIONS["LAI"].direction  # slices run from head to feet
    scans = {
        "normal": _phantom(lai),
        "top": _phantom(lai)[:, :, :15],  # the upper half: the liver is cut at the last slice, the feet end
        "blob": _phantom(lai, liver=((-10.0, 5.0, 3.0), (12.0, 12.0, 12.0))),  # 7 mL
    }
    cases = [InferenceCase(name, write_image(image, tmp_path / f"{name}.nii.gz")) for name, image in scans.items()]
    with caplog.at_level(logging.WARNING):
        summary = run_cases(cases, oracle_model(SPACING), tmp_path / "out", progress=False)
    assert summary.ok, summary.failed

    record = json.loads((tmp_path / "out" / "summary.json").read_text())["cases"]
    assert record["normal"]["flags"] == []
    (partial,) = record["top"]["flags"]
    assert partial["code"] == "partial_liver" and "last slice along z (feet end)" in partial["reason"]
    assert record["top"]["liver_volume_ml"] < LIVER_ML_RANGE[0]  # small, but cut off: no liver_volume flag
    (blob,) = record["blob"]["flags"]
    assert blob["code"] == "no_liver" and "post-processing left none" in blob["reason"]
    assert record["blob"]["liver_volume_ml"] == 0.0
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / "blob_seg.nii.gz"))).any()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"top: partial_liver: {partial['reason']}", f"blob: no_liver: {blob['reason']}"]


def test_no_postprocess_keeps_the_small_liver_but_flags_it():
    image = _phantom(liver=((-10.0, 5.0, 3.0), (12.0, 12.0, 12.0)))
    result = segment(image, oracle_model(SPACING), postprocessing=PostprocessConfig.off())
    assert 0 < result.summary["liver_volume_ml"] < NO_LIVER_ML
    assert _codes(result.flags) == ["no_liver"] and "post-processing" not in result.flags[0].reason


def test_a_whole_liver_too_small_to_be_one_is_emptied_and_called_no_liver():
    # 65 mL that no edge cuts off: what a network calls liver in a pelvis-only scan, not a liver
    image = _phantom(liver=((-10.0, 5.0, 3.0), (25.0, 25.0, 25.0)))
    result = segment(image, oracle_model(SPACING))
    assert result.summary["liver_volume_ml"] == 0.0 and not sitk.GetArrayFromImage(result.mask).any()
    (flag,) = result.flags
    assert flag.code == "no_liver" and f"below {MIN_WHOLE_LIVER_ML:g} mL for a whole liver" in flag.reason
    kept = segment(image, oracle_model(SPACING), postprocessing=PostprocessConfig.off())
    assert NO_LIVER_ML < kept.summary["liver_volume_ml"] < MIN_WHOLE_LIVER_ML
    assert _codes(kept.flags) == ["liver_volume"]
    # the same size cut off by the scan's last slice may be the tip of a liver: kept, and flagged as partial
    tip = segment(image[:, :, : int(SIZE[2] * 0.55)], oracle_model(SPACING))
    assert 0 < tip.summary["liver_volume_ml"] < MIN_WHOLE_LIVER_ML and _codes(tip.flags) == ["partial_liver"]


def test_near_uniform_network_is_low_confidence():
    result = segment(_phantom(), oracle_model(SPACING, [HUOracle(scale=0.5)]))
    assert result.summary["liver_entropy"] > 0.9
    assert _codes(result.flags) == ["low_confidence"]


def test_tta_flips_that_disagree_are_low_confidence():
    image = _phantom()
    agreeing = segment(image, oracle_model(SPACING, [HUOracle()], WHOLE_WINDOW), tta=True)
    assert agreeing.summary["tta_liver_dice"] == 1.0 and agreeing.flags == []
    # labels each voxel from its neighbour 3 voxels along x: a mirrored input shifts the liver by 6 voxels
    shifted = segment(image, oracle_model(SPACING, [HUOracle(neighbour=(0, 3))], WHOLE_WINDOW), tta=True)
    assert shifted.summary["tta_liver_dice"] < MIN_TTA_DICE
    assert _codes(shifted.flags) == ["low_confidence"] and "mirrored predictions" in shifted.flags[0].reason
