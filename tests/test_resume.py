"""kill -9 at any point of a folder ``infer`` or a ``prepare``, then the same command again: the output folder ends
byte for byte as an uninterrupted run leaves it (``summary.json`` apart from the seconds each case took), with no
partial file left. The runs are subprocesses killed by SIGKILL when they are about to rename their N-th finished
temporary file into place (the file complete under its temporary name, nothing renamed yet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _oracle import INFERENCE_3D
from _volumes import LAI, LPS, write_lits_case

from monai_pipeline.io import write_image
from monai_pipeline.io.atomic import remove_stale_temporaries
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.training.network import build_network
from monai_pipeline.training.record import write_run_record

REPO = Path(__file__).resolve().parent.parent

DRIVER = """
import os, signal, sys
kill_at, calls, real = int(sys.argv[1]), [0], os.replace
def replace(src, dst):
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
from monai_pipeline.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run(arguments: list[str], kill_at: int = 0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-c", DRIVER, str(kill_at), *arguments, "--quiet"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _contents(folder: Path) -> dict[str, object]:
    """Every file below ``folder``: its bytes, or for a summary.json its content without timings."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        if path.name == "summary.json":
            summary = json.loads(path.read_text())
            for case in summary["cases"].values():
                case.pop("seconds")
            found[name] = summary
        else:
            found[name] = path.read_bytes()
    return found


@pytest.fixture(scope="module")
def infer_inputs(tmp_path_factory) -> tuple[Path, Path]:
    """A run folder with a tiny random network and a folder of three small scans."""
    run = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    arguments = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "filters": [4, 8, 16]}
    torch.save(build_network(**arguments).state_dict(), run / "model.pt")
    write_run_record(run, arguments, INFERENCE_3D)
    PreprocessingConfig(spacing=(4.0, 4.0, 4.0)).save(run / "preprocessing.json")
    scans = tmp_path_factory.mktemp("scans")
    rng = np.random.default_rng(0)
    for number in range(3):
        hu = rng.normal(40, 60, size=(20, 40, 44)).astype(np.int16)
        hu[:, :3] = -1000
        image = sitk.GetImageFromArray(hu)
        image.SetSpacing((2.0, 2.0, 3.0))
        write_image(image, scans / f"scan{number}.nii.gz")
    return run, scans


@pytest.fixture(scope="module")
def uninterrupted_infer(infer_inputs, tmp_path_factory) -> dict[str, object]:
    run, scans = infer_inputs
    out = tmp_path_factory.mktemp("whole")
    done = _run(["infer", "--model", str(run), "--input", str(scans), "--output", str(out), "--device", "cpu"])
    assert done.returncode == 0, done.stderr[-3000:]
    return _contents(out)


# writes: per case its mask, its lesion table and summary.json; the 10th is the final summary.json
@pytest.mark.parametrize("kill_at", [1, 5, 10])
def test_infer_killed_then_run_again_ends_as_an_uninterrupted_run(kill_at, infer_inputs, uninterrupted_infer, tmp_path):
    run, scans = infer_inputs
    arguments = ["infer", "--model", str(run), "--input", str(scans), "--output", str(tmp_path), "--device", "cpu"]
    killed = _run(arguments, kill_at)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert any(path.name.startswith(".") for path in tmp_path.iterdir())  # the kill left a partial file
    done = _run(arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _contents(tmp_path) == uninterrupted_infer


def test_infer_keeps_the_cases_an_earlier_run_finished(infer_inputs, tmp_path):
    run, scans = infer_inputs
    arguments = ["infer", "--model", str(run), "--input", str(scans), "--output", str(tmp_path), "--device", "cpu"]
    assert _run(arguments, 7).returncode == -9  # two cases finished, killed at the third mask
    first = json.loads((tmp_path / "summary.json").read_text())["cases"]
    assert sorted(first) == ["scan0", "scan1"]
    assert _run(arguments).returncode == 0
    again = json.loads((tmp_path / "summary.json").read_text())["cases"]
    assert [again[name]["seconds"] for name in first] == [first[name]["seconds"] for name in first]  # not redone
    assert sorted(again) == ["scan0", "scan1", "scan2"]


def test_infer_redoes_the_cases_when_an_option_changes(infer_inputs, tmp_path):
    run, scans = infer_inputs
    arguments = ["infer", "--model", str(run), "--input", str(scans), "--output", str(tmp_path), "--device", "cpu"]
    assert _run(arguments).returncode == 0
    assert _run([*arguments, "--no-postprocess"]).returncode == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["settings"]["postprocessing"]["keep_largest_liver"] is False


@pytest.fixture(scope="module")
def raw_lits(tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    for number, direction in ((0, LPS), (1, LAI), (2, LPS)):
        write_lits_case(raw, number, direction)
    return raw


PREPARE_OPTIONS = ["--spacing", "3", "3", "3", "--folds", "2"]


@pytest.fixture(scope="module")
def uninterrupted_prepare(raw_lits, tmp_path_factory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("prepared")
    done = _run(["prepare", "--data-dir", str(raw_lits), "--out-dir", str(out), *PREPARE_OPTIONS])
    assert done.returncode == 0, done.stderr[-3000:]
    return _contents(out)


# writes: preprocessing.json, then per case image, label and record, then fingerprint.json and datalist.json
@pytest.mark.parametrize("kill_at", [1, 6, 12])
def test_prepare_killed_then_run_again_ends_as_an_uninterrupted_run(kill_at, raw_lits, uninterrupted_prepare, tmp_path):
    arguments = ["prepare", "--data-dir", str(raw_lits), "--out-dir", str(tmp_path), *PREPARE_OPTIONS]
    killed = _run(arguments, kill_at)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert any(path.name.startswith(".") for path in tmp_path.rglob("*"))
    done = _run(arguments)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _contents(tmp_path) == uninterrupted_prepare


def test_removing_stale_temporaries_leaves_other_hidden_files(tmp_path):
    (tmp_path / ".scan_seg.tmp-0123abcd.nii.gz").write_bytes(b"partial")
    (tmp_path / ".summary.tmp-89abcdef.json").write_text("{")
    (tmp_path / ".hidden").write_text("mine")
    (tmp_path / "scan_seg.nii.gz").write_bytes(b"whole")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "scan_seg.nii.gz"]
