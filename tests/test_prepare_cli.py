"""Tests for ``monai-pipeline prepare`` and ``python -m data_prep.prepare_lits``: exit codes, one-line errors,
options reaching the preprocessing, and a real LiTS case when the shared samples are present."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import LAI, LPS, OBLIQUE, Phantom, make_case, tree_digest, write_lits_case

from monai_pipeline import cli
from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.preprocessing import PreprocessingConfig

REPO = Path(__file__).resolve().parents[1]
REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real"


@pytest.fixture(autouse=True)
def _repo_on_path(monkeypatch):
    """``data_prep`` is a top-level folder of the repository that an older editable install may not map, so put the
    repository on the path as ``python -m data_prep.prepare_lits`` run from its root has it."""
    monkeypatch.syspath_prepend(str(REPO))


def _prepare_lits(args: list[str]) -> int:
    from data_prep import prepare_lits

    return prepare_lits.main(args)


ENTRY_POINTS = {
    "monai-pipeline": lambda args: cli.main(["prepare", *args]),
    "prepare_lits": _prepare_lits,
}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Three small labelled LiTS cases."""
    root = tmp_path_factory.mktemp("cli") / "RAW"
    for number, direction in ((1, LPS), (2, LAI), (3, OBLIQUE)):
        write_lits_case(root, number, direction)
    return root


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------------- success


def test_prepare_succeeds_and_a_rerun_resumes(raw, tmp_path, capsys):
    out = tmp_path / "PREP"
    args = ["--data-dir", str(raw), "--out-dir", str(out), "--folds", "2", "--quiet"]
    assert cli.main(["prepare", *args]) == 0
    captured = capsys.readouterr()
    assert f"prepared 3 case(s), skipped 0 already done, 0 failed -> {out}" in captured.out.splitlines()
    assert "error" not in captured.err
    assert sorted(p.name for p in (out / "labels").iterdir()) == [f"liver_{n}.nii.gz" for n in (1, 2, 3)]

    assert _prepare_lits(args) == 0
    assert f"prepared 0 case(s), skipped 3 already done, 0 failed -> {out}" in capsys.readouterr().out.splitlines()


def test_options_reach_the_preprocessing(raw, tmp_path, capsys):
    out = tmp_path / "PREP"
    args = [
        *("--data-dir", str(raw), "--out-dir", str(out), "--folds", "3", "--seed", "4", "--quiet"),
        *("--spacing", "2", "2.5", "3", "--window", "-150", "250", "--interpolator", "bspline", "--no-crop"),
        *("--orientation", "lps"),
    ]
    assert _prepare_lits(args) == 0
    config = PreprocessingConfig.load(out / "preprocessing.json")
    assert config == PreprocessingConfig(
        spacing=(2.0, 2.5, 3.0),
        window=(-150.0, 250.0),
        image_interpolator="bspline",
        crop_to_body=False,
        orientation="LPS",
    )
    image = sitk.ReadImage(str(out / "images" / "liver_2.nii.gz"))
    np.testing.assert_allclose(image.GetSpacing(), (2.0, 2.5, 3.0), rtol=1e-6)
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-6)  # LAI reoriented to LPS
    datalist = json.loads((out / "datalist.json").read_text())
    assert (datalist["num_folds"], datalist["fold_seed"]) == (3, 4)
    assert sorted(entry["fold"] for entry in datalist["training"]) == [0, 1, 2]
    capsys.readouterr()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_help(entry, capsys):
    with pytest.raises(SystemExit) as info:
        ENTRY_POINTS[entry](["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--data-dir", "--out-dir", "--spacing", "--window", "--folds", "--workers", "--debug"):
        assert option in out


def test_help_of_the_module_in_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare_lits", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "usage: python -m data_prep.prepare_lits" in result.stdout


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_missing_data_dir_is_one_line(entry, tmp_path, capsys):
    missing = tmp_path / "no-such-folder"
    code = ENTRY_POINTS[entry](["--data-dir", str(missing), "--out-dir", str(tmp_path / "PREP")])
    assert code == 1
    captured = capsys.readouterr()
    assert _one_error_line(captured.err) == f"error: {missing}: no such folder"
    assert not (tmp_path / "PREP").exists()


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_debug_lets_the_error_propagate(entry, tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(InputError) as info:
        ENTRY_POINTS[entry](["--data-dir", str(missing), "--out-dir", str(tmp_path / "PREP"), "--debug"])
    assert info.value.path == str(missing)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--window", "200", "100"], "error: invalid option: window must be LO HI with LO < HI, got (200.0, 100.0)."),
        (["--folds", "10"], "error: --folds 10 needs at least 10 labelled cases, found 3"),
        (["--folds", "0"], "error: --folds must be at least 1, got 0"),
        (["--workers", "0"], "error: --workers must be at least 1, got 0"),
        (["--spacing", "1.5", "0", "1.5"], "error: invalid option: spacing must be three positive numbers in mm"),
    ],
    ids=["window", "folds-10", "folds-1", "workers", "spacing"],
)
def test_bad_options_are_one_line(options, message, raw, tmp_path, capsys):
    out = tmp_path / "PREP"
    assert _prepare_lits(["--data-dir", str(raw), "--out-dir", str(out), *options]) == 1
    assert _one_error_line(capsys.readouterr().err).startswith(message)
    assert not out.exists(), "nothing is written before the options are checked"


def test_out_dir_equal_to_data_dir_is_one_line(raw, capsys):
    before = tree_digest(raw)
    assert cli.main(["prepare", "--data-dir", str(raw), "--out-dir", str(raw / "." / "")]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {raw}: ") and "raw data folder" in line
    assert tree_digest(raw) == before


@pytest.mark.parametrize(
    ("options", "word"),
    [(["--window", "nan", "200"], "window"), (["--orientation", "XYZ"], "orientation")],
    ids=["nan-window", "orientation-XYZ"],
)
def test_invalid_option_values_are_one_line(options, word, raw, tmp_path, capfd):
    out = tmp_path / "PREP"
    code = _prepare_lits(["--data-dir", str(raw), "--out-dir", str(out), "--folds", "2", "--quiet", *options])
    captured = capfd.readouterr()
    assert code == 1
    assert word in _one_error_line(captured.err)
    assert not out.exists()


def test_bad_case_among_good_ones_exits_1_and_is_named(raw, tmp_path):
    data = tmp_path / "RAW"
    shutil.copytree(raw, data)
    ct, label = make_case(phantom=Phantom(extra_labels=(((25.0, 0.0, 0.0), 4.0, 3),)))
    sitk.WriteImage(ct, str(data / "volume-4.nii.gz"))
    sitk.WriteImage(label, str(data / "segmentation-4.nii.gz"))
    out = tmp_path / "PREP"
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare_lits", "--data-dir", str(data), "--out-dir", str(out)]
        + ["--folds", "2", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert f"prepared 3 case(s), skipped 0 already done, 1 failed -> {out}" in lines
    failed = [line for line in lines if line.startswith("failed ")]
    assert len(failed) == 1
    assert failed[0].startswith(f"failed liver_4: {data / 'segmentation-4.nii.gz'}: label values 3 outside {{0, 1, 2}}")
    assert "Traceback" not in result.stdout + result.stderr
    datalist = json.loads((out / "datalist.json").read_text())
    assert [entry["case"] for entry in datalist["training"]] == ["liver_1", "liver_2", "liver_3"]


def test_failed_case_details_only_with_debug(raw, tmp_path, capsys):
    data = tmp_path / "RAW"
    shutil.copytree(raw, data)
    ct, label = make_case()
    sitk.WriteImage(ct[:, :, 3], str(data / "volume-4.nii.gz"))
    sitk.WriteImage(label[:, :, 3], str(data / "segmentation-4.nii.gz"))
    args = ["--data-dir", str(data), "--out-dir", str(tmp_path / "PREP"), "--folds", "2", "--quiet"]
    assert cli.main(["prepare", *args]) == 1
    out = capsys.readouterr().out
    assert f"failed liver_4: {data / 'volume-4.nii.gz'}: expected a 3D image, got a 2D image" in out
    assert "Traceback" not in out
    assert cli.main(["prepare", *args, "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().out


def test_all_cases_failing_is_one_line(tmp_path, capsys):
    data = tmp_path / "RAW"
    data.mkdir()
    ct, label = make_case()
    for number in (1, 2):
        sitk.WriteImage(ct[:, :, 3], str(data / f"volume-{number}.nii.gz"))
        sitk.WriteImage(label[:, :, 3], str(data / f"segmentation-{number}.nii.gz"))
    args = ["--data-dir", str(data), "--out-dir", str(tmp_path / "PREP"), "--folds", "2", "--quiet"]
    assert _prepare_lits(args) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {data}: no case could be prepared (2 failed; first: ") and "volume-1" in line
    with pytest.raises(PipelineError):
        _prepare_lits([*args, "--debug"])


# ----------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
@pytest.mark.slow
def test_real_lits_case(tmp_path):
    source = REAL / "lits117"
    if not (source / "volume-117.nii.gz").is_file():
        pytest.skip(f"real LiTS sample not found at {source} (only present in the shared workspace)")
    data = tmp_path / "RAW"
    data.mkdir()
    for number in (117, 1):
        shutil.copyfile(source / "volume-117.nii.gz", data / f"volume-{number}.nii.gz")
        shutil.copyfile(source / "segmentation-117.nii.gz", data / f"segmentation-{number}.nii.gz")
    before = tree_digest(data)
    out = tmp_path / "PREP"
    result = subprocess.run(
        [sys.executable, "-m", "data_prep.prepare_lits", "--data-dir", str(data), "--out-dir", str(out)]
        + ["--folds", "2", "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "prepared 2 case(s), skipped 0 already done, 0 failed" in result.stdout
    assert tree_digest(data) == before

    raw_label = sitk.ReadImage(str(data / "segmentation-117.nii.gz"))
    assert raw_label.GetSpacing() == (1.0, 1.0, 1.0)
    raw_values = sitk.GetArrayFromImage(raw_label)
    raw_liver_ml = np.count_nonzero(raw_values >= 1) * np.prod(raw_label.GetSpacing()) / 1000
    for name in ("liver_1", "liver_117"):
        label = sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz"))
        values = sitk.GetArrayFromImage(label)
        assert set(np.unique(values)) == {0, 1, 2}
        assert np.count_nonzero(values == 2) > 0, "the tumours survive preprocessing"
        liver_ml = np.count_nonzero(values >= 1) * 1.5**3 / 1000
        assert liver_ml == pytest.approx(raw_liver_ml, rel=0.03)
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "images" / f"{name}.nii.gz")))
        assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0
        assert 0.5 < np.median(image[values == 1]) < 0.9, "enhanced liver (about 50-170 HU) sits inside the window"
    one, two = (sitk.GetArrayFromImage(sitk.ReadImage(str(out / "images" / f"liver_{n}.nii.gz"))) for n in (1, 117))
    np.testing.assert_array_equal(one, two)
    datalist = json.loads((out / "datalist.json").read_text())
    assert sorted(entry["fold"] for entry in datalist["training"]) == [0, 1]
