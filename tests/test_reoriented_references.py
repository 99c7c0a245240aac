"""References and labels on the same voxels in another axis order or direction (a dcm2niix NIfTI, LAS, of a DICOM
series read as LPS) are compared in physical space; on other voxels they are refused unless resampled on request;
folder matching names the files it leaves out."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import LPS, write_lits_case

from monai_pipeline import cli
from monai_pipeline.evaluation import evaluate
from monai_pipeline.io.align import onto_grid, same_voxels
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.prepare import prepare_dataset
from monai_pipeline.preprocessing.config import PreprocessingConfig


def _labels() -> np.ndarray:
    """An asymmetric liver with a tumour (z, y, x): any wrong flip or transpose moves them."""
    labels = np.zeros((12, 30, 36), dtype=np.uint8)
    labels[2:10, 4:22, 3:30] = 1
    labels[3:6, 6:12, 5:11] = 2
    labels[8:10, 18:21, 25:29] = 2
    return labels


def _lps_image(labels: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-12.0, 30.0, -100.0))
    return image


@pytest.mark.parametrize("code", ["LAS", "RAS", "LPI", "SLP", "AIL"])
def test_same_voxels_in_another_orientation_are_reoriented_exactly(code):
    image = _lps_image(_labels())
    other = sitk.DICOMOrient(image, code)
    grid = Geometry.of(image)
    assert Geometry.of(other).differences(grid) and same_voxels(Geometry.of(other), grid)
    back = onto_grid(other, grid)
    assert not Geometry.of(back).differences(grid)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), _labels())


def test_other_voxels_are_not_the_same_and_resample_only_on_request():
    image = _lps_image(_labels())
    shifted = sitk.Image(image)
    shifted.SetOrigin((-12.0 + 0.35, 30.0, -100.0))  # half a voxel off
    assert not same_voxels(Geometry.of(shifted), Geometry.of(image))
    with pytest.raises(ValueError, match="differs"):
        onto_grid(shifted, Geometry.of(image))
    resampled = onto_grid(shifted, Geometry.of(image), resample=True)
    assert not Geometry.of(resampled).differences(Geometry.of(image))
    assert set(np.unique(sitk.GetArrayFromImage(resampled))) <= {0, 1, 2}


def _pred_and_ref(tmp_path: Path, reference: sitk.Image) -> tuple[Path, Path]:
    pred, ref = tmp_path / "case_seg.nii.gz", tmp_path / "REF" / "case.nii.gz"
    ref.parent.mkdir()
    sitk.WriteImage(_lps_image(_labels()), str(pred))
    sitk.WriteImage(reference, str(ref))
    return pred, ref


def test_evaluate_compares_a_las_reference_in_physical_space(tmp_path):
    """A dcm2niix-style reference (LAS) of the prediction's own voxels: a perfect score, no error."""
    pred, ref = _pred_and_ref(tmp_path, sitk.DICOMOrient(_lps_image(_labels()), "LAS"))
    result = evaluate(pred, ref)
    (case,) = result.cases
    assert case.regions["liver"].dice == pytest.approx(1.0)
    assert case.regions["tumour"].dice == pytest.approx(1.0)
    assert case.lesions.counts(0.5)["detected_reference_lesions"] == 2


def test_evaluate_refuses_other_voxels_and_names_the_option(tmp_path, capsys):
    reference = _lps_image(_labels())
    reference.SetSpacing((0.7, 0.8, 3.0))
    pred, ref = _pred_and_ref(tmp_path, reference)
    assert cli.main(["evaluate", "--pred", str(pred), "--ref", str(ref)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resample-ref" in err[0] and "cover different voxels" in err[0]
    assert cli.main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--resample-ref", "--quiet"]) == 0


def test_evaluate_resamples_the_reference_onto_the_prediction_grid(tmp_path):
    """A reference at half the prediction's slice spacing, labels repeated: resampled, the score is perfect."""
    fine = np.repeat(_labels(), 2, axis=0)
    reference = sitk.GetImageFromArray(fine)
    reference.SetSpacing((0.7, 0.8, 1.25))
    reference.SetOrigin((-12.0, 30.0, -100.0 - 0.625))  # the two thin slices straddle each thick slice's centre
    pred, ref = _pred_and_ref(tmp_path, reference)
    (case,) = evaluate(pred, ref, resample_ref=True).cases
    assert case.regions["liver"].dice == pytest.approx(1.0)


def test_folder_matching_names_the_reference_files_it_ignores(tmp_path, caplog):
    ref = tmp_path / "LITS"
    ref.mkdir()
    sitk.WriteImage(_lps_image(_labels()), str(ref / "segmentation-0.nii"))
    sitk.WriteImage(_lps_image(_labels()), str(ref / "volume-0.nii"))
    (ref / "notes.txt").write_text("scanner B")
    sitk.WriteImage(_lps_image(_labels()), str(tmp_path / "volume-0_seg.nii.gz"))
    with caplog.at_level(logging.INFO, logger="monai_pipeline.evaluation.matching"):
        evaluate([tmp_path / "volume-0_seg.nii.gz"], ref)
    lines = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert any("volume-0.nii" in line and "not named as masks" in line for line in lines), lines
    assert any("notes.txt" in line and "not an image file" in line for line in lines), lines


def test_prepare_reorients_a_las_label_and_refuses_other_voxels(tmp_path):
    """The same case prepared with its label as written and as a dcm2niix-style LAS copy: identical outputs. A
    label on other voxels fails with the option named, and is resampled with it."""
    raw, las = tmp_path / "RAW", tmp_path / "RAW_LAS"
    files = write_lits_case(raw, 0, LPS)
    write_lits_case(las, 0, LPS)
    label = sitk.ReadImage(str(files.label))
    sitk.WriteImage(sitk.DICOMOrient(label, "LAS"), str(las / files.label.name))
    config = PreprocessingConfig(spacing=(3.0, 3.0, 3.0))
    assert prepare_dataset(raw, tmp_path / "A", config, folds=1, progress=False).ok
    assert prepare_dataset(las, tmp_path / "B", config, folds=1, progress=False).ok
    for part in ("images", "labels"):
        a = sitk.ReadImage(str(tmp_path / "A" / part / "liver_0.nii.gz"))
        b = sitk.ReadImage(str(tmp_path / "B" / part / "liver_0.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))

    other = tmp_path / "RAW_OTHER"
    write_lits_case(other, 0, LPS)
    label.SetOrigin(tuple(o + 0.4 for o in label.GetOrigin()))
    sitk.WriteImage(label, str(other / files.label.name))
    with pytest.raises(Exception, match="no case could be prepared"):
        prepare_dataset(other, tmp_path / "C", config, folds=1, progress=False)
    summary = prepare_dataset(other, tmp_path / "D", config, folds=1, resample_labels=True, progress=False)
    assert summary.ok and summary.prepared == ["liver_0"]


def test_prepare_failure_names_the_resample_option(tmp_path, capsys):
    raw = tmp_path / "RAW"
    files = write_lits_case(raw, 0, LPS)
    label = sitk.ReadImage(str(files.label))
    label.SetSpacing((0.8, 0.8, 3.0))
    sitk.WriteImage(label, str(files.label))
    assert (
        cli.main(["prepare", "--data-dir", str(raw), "--out-dir", str(tmp_path / "P"), "--folds", "1", "--quiet"]) == 1
    )
    out = capsys.readouterr()
    assert "--resample-labels" in out.out + out.err
