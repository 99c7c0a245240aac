"""Tests of the command line's first seconds: ``--help`` and argument errors without torch or MONAI, ``evaluate``
without the network's libraries, every default in the help, a failure line printed once, and the default number of
folds of a small dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import LAI, LPS, make_case, write_lits_case

from monai_pipeline import cli

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ("prepare", "train", "infer", "evaluate", "export", "synth", "inspect", "demo")
HEAVY = ("torch", "monai", "ignite", "SimpleITK", "scipy", "matplotlib", "nibabel")


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def test_help_and_argument_errors_import_no_heavy_library():
    code = f"""
import sys
from monai_pipeline import cli
for argv in [["--help"], *[[c, "--help"] for c in {COMMANDS!r}], ["train"], ["prepare", "--folds", "x"]]:
    try:
        cli.main(argv)
    except SystemExit:
        pass
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout[-500:]


def test_evaluate_does_not_import_torch_or_monai(tmp_path):
    label = np.zeros((6, 8, 8), np.uint8)
    label[1:5, 2:6, 2:6] = 1
    label[2:4, 3:5, 3:5] = 2
    for name in ("pred", "ref"):
        sitk.WriteImage(sitk.GetImageFromArray(label), str(tmp_path / f"{name}.nii.gz"))
    code = f"""
import sys
from monai_pipeline import cli
code = cli.main(["evaluate", "--pred", {str(tmp_path / "pred.nii.gz")!r}, "--ref", {str(tmp_path / "ref.nii.gz")!r},
                 "--quiet"])
print(code, sorted(m for m in ("torch", "monai", "ignite") if m in sys.modules))
"""
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def _help(command: str, capsys) -> str:
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # unwrapped


def test_prepare_help_shows_every_default(capsys):
    text = _help("prepare", capsys)
    for phrase in (
        "target spacing (mm) (default: 1.5 1.5 1.5)",
        "(default: -100.0 200.0)",
        "(default: window)",
        "(default: linear)",
        "(default: RAS)",
        "(default: 5, or one per labelled case when there are fewer)",
        "parallel processes (default: 1)",
        "seed of the fold assignment (default: 0)",
    ):
        assert phrase in text, phrase


def test_train_and_infer_help_show_their_defaults(capsys):
    text = _help("train", capsys)
    for phrase in ("validation fold (default: 0)", "(default: 3)", "roi_size=[96, 96, 96]", "sw_overlap=0.25"):
        assert phrase in text, phrase
    text = _help("infer", capsys)
    for phrase in ("sliding-window overlap, 0 to <1 (default: the run's)", "(default: 10.0)", "(default: auto)"):
        assert phrase in text, phrase
    text = _help("demo", capsys)
    assert "training budget in minutes (default: 7.5)" in text


def test_a_failed_case_is_printed_once(tmp_path, capsys):
    data = tmp_path / "RAW"
    for number, direction in ((1, LPS), (2, LAI)):
        write_lits_case(data, number, direction)
    ct, label = make_case()
    sitk.WriteImage(ct[:, :, 3], str(data / "volume-3.nii.gz"))
    sitk.WriteImage(label[:, :, 3], str(data / "segmentation-3.nii.gz"))
    assert cli.main(["prepare", "--data-dir", str(data), "--out-dir", str(tmp_path / "PREP"), "--folds", "2"]) == 1
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("expected a 3D image, got a 2D image") == 1


@pytest.mark.parametrize("cases", [1, 3])
def test_default_folds_fit_a_small_dataset(cases, tmp_path, capsys, caplog):
    data = tmp_path / "RAW"
    for number in range(1, cases + 1):
        write_lits_case(data, number, LPS)
    out = tmp_path / "PREP"
    assert cli.main(["prepare", "--data-dir", str(data), "--out-dir", str(out), "--quiet"]) == 0
    datalist = json.loads((out / "datalist.json").read_text())
    assert datalist["num_folds"] == cases
    assert sorted(entry["fold"] for entry in datalist["training"]) == list(range(cases))
    notice = " ".join(record.getMessage() for record in caplog.records)
    assert ("training validates on the case it trains on" if cases == 1 else "3 folds instead of 5") in notice


def test_one_labelled_case_trains_and_validates_on_itself(tmp_path):
    from monai_pipeline.training import fold_files

    write_lits_case(tmp_path / "RAW", 1, LPS)
    assert (
        cli.main(["prepare", "--data-dir", str(tmp_path / "RAW"), "--out-dir", str(tmp_path / "PREP"), "--quiet"]) == 0
    )
    assert fold_files(tmp_path / "PREP", 0, "train") == fold_files(tmp_path / "PREP", 0, "val")


def test_explicit_folds_above_the_cases_are_still_refused(tmp_path, capsys):
    write_lits_case(tmp_path / "RAW", 1, LPS)
    args = ["--data-dir", str(tmp_path / "RAW"), "--out-dir", str(tmp_path / "PREP"), "--folds", "5", "--quiet"]
    assert cli.main(["prepare", *args]) == 1
    assert "--folds 5 needs at least 5 labelled cases, found 1" in capsys.readouterr().err
