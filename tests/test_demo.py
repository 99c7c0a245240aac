"""The demo end to end at its smallest, and the README's Quick start commands."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_pipeline import cli
from monai_pipeline.commands.demo import MARKER

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo") / "demo_output"
    command = [sys.executable, "-m", "monai_pipeline", "demo", "--out", str(out), "--quiet"]
    command += ["--cases", "3", "--held-out", "1", "--epochs", "1", "--minutes", "1", "--workers", "1"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return out, done.stdout


@pytest.mark.slow
def test_demo_writes_every_promised_output(demo):
    out, stdout = demo
    assert (out / MARKER).is_file()
    prepared = out / "prepared"
    for name in ("datalist.json", "preprocessing.json", "fingerprint.json"):
        assert json.loads((prepared / name).read_text())
    run = out / "run"
    for name in ("model.pt", "checkpoint_last.pt", "run.json", "preprocessing.json", "training_log.csv"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "training_log.csv").open()))
    assert [row["epoch"] for row in rows] == ["1"]

    predictions = out / "predictions"
    scan = out / "held_out" / "images" / "volume-0.nii.gz"
    mask = predictions / "volume-0_seg.nii.gz"
    written, original = nib.load(mask), nib.load(scan)
    assert written.get_data_dtype() == np.uint8 and written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-4)
    assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1, 2}
    with (predictions / "volume-0_lesions.csv").open() as stream:
        assert next(csv.reader(stream))[:3] == ["lesion_id", "voxels", "volume_ml"]
    assert (predictions / "volume-0_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "volume-0" in json.loads((predictions / "summary.json").read_text())["cases"]

    evaluation = out / "evaluation"
    for name in ("metrics.csv", "lesions.csv", "summary.png"):
        assert (evaluation / name).is_file(), name
    summary = json.loads((evaluation / "summary.json").read_text())
    assert 0.0 <= summary["liver"]["dice_per_case"]["mean"] <= 1.0

    for row in ("liver Dice (mean per case)", "tumour Dice (global)", "lesion recall (IoU > 0.5)"):
        assert re.search(rf"\| {re.escape(row)} \| [01]\.\d{{3}} \|", stdout), stdout
    assert "| epochs trained | 1 of 1 (1-minute budget) |" in stdout
    for stage in ("synthesise", "prepare", "train", "infer", "evaluate", "real CT", "total"):
        assert re.search(rf"\| {stage} \| \d+\.\d \|", stdout), stage
    for path in (predictions, evaluation, run, prepared):
        assert str(path) in stdout


@pytest.mark.slow
def test_demo_ends_on_the_shipped_real_ct(demo):
    from monai_pipeline.samples import totalseg_example_ct

    out, stdout = demo
    sample = totalseg_example_ct()
    prediction = out / "real_sample" / "prediction"
    mask, scan = nib.load(prediction / "example_ct_seg.nii.gz"), nib.load(sample.scan)
    assert mask.shape == scan.shape
    np.testing.assert_allclose(mask.affine, scan.affine, atol=1e-4)
    assert (prediction / "example_ct_preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    evaluation = json.loads((out / "real_sample" / "evaluation" / "summary.json").read_text())
    dice = evaluation["liver"]["dice_per_case"]["mean"]
    printed = re.search(r"\| liver Dice against TotalSegmentator's liver \| ([01]\.\d{3}) \|", stdout)
    assert printed and float(printed.group(1)) == pytest.approx(dice, abs=5e-4), stdout
    assert re.search(r"\| quality flags \| .+ \|", stdout)
    assert str(prediction) in stdout


def test_shipped_sample_is_whole_with_its_licence():
    from monai_pipeline.samples import totalseg_example_ct

    sample = totalseg_example_ct()
    scan, liver = nib.load(sample.scan), nib.load(sample.liver)
    assert scan.shape == liver.shape == (122, 101, 112)
    np.testing.assert_allclose(scan.affine, liver.affine, atol=1e-4)
    assert set(np.unique(np.asarray(liver.dataobj)).tolist()) == {0, 1}
    assert "Apache License" in (sample.scan.parent / "LICENSE").read_text()
    assert "TotalSegmentator" in (sample.scan.parent / "README.md").read_text()


@pytest.mark.slow
def test_demo_rerun_resumes_and_keeps_stages(demo):
    out, _ = demo
    scan = out / "held_out" / "images" / "volume-0.nii.gz"
    before = scan.stat().st_mtime_ns
    done = subprocess.run(
        [sys.executable, "-m", "monai_pipeline", "demo", "--out", str(out), "--quiet", "--cases", "3"]
        + ["--held-out", "1", "--epochs", "1", "--minutes", "1", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert scan.stat().st_mtime_ns == before  # the phantoms were kept, not written again


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["demo", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not a previous demo folder" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def _quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines() if line.strip()]


def test_quick_start_has_exactly_two_make_commands_that_exist():
    commands = _quick_start_commands()
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for command in commands:
        assert re.search(rf"^{command.split()[1]}:", makefile, re.MULTILINE), command
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "monai-pipeline demo" in makefile


@pytest.mark.parametrize("command", ["demo", "prepare", "train", "infer", "evaluate", "export", "synth", "inspect"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"monai-pipeline {command}" in capsys.readouterr().out
