"""Faults seen through the commands: a full or read-only output, a symlink loop beside a scan, a killed
``prepare --workers 2``, two runs into one folder, a foreign checkpoint. Each must end in one clear line, with no
partial file under a final name and the good cases finished."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _faults import disk_full_after, mounted_tmpfs, read_only_folder
from _oracle import ct_image, phantom_hu, write_tiny_run
from _volumes import LAI, LPS, OBLIQUE, write_lits_case

from monai_pipeline import cli
from monai_pipeline.io.atomic import temporary_name
from monai_pipeline.io.lock import folder_lock

REPO = Path(__file__).resolve().parents[1]
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """Three small labelled LiTS cases."""
    root = tmp_path_factory.mktemp("faults") / "RAW"
    for number, direction in ((1, LPS), (2, LAI), (3, OBLIQUE)):
        write_lits_case(root, number, direction)
    return root


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A training-run folder with a tiny random network and a 4 mm preprocessing."""
    return write_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> Path:
    """A folder with two small CT scans."""
    folder = tmp_path_factory.mktemp("scans")
    hu = phantom_hu((48, 40, 24), (1.0, 1.2, 2.0))
    for name in ("a", "b"):
        sitk.WriteImage(ct_image(hu, (1.0, 1.2, 2.0), (0.0, 0.0, 0.0), RAS), str(folder / f"{name}.nii.gz"))
    return folder


def _cli(capsys, *args: object) -> tuple[int, str, str]:
    code = cli.main([*map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name)


def _whole_cases(out: Path) -> list[str]:
    """The cases of a prepared folder; each one's files are all there and readable, or none is."""
    names = {p.name.split(".")[0] for sub in ("images", "labels", "records") for p in (out / sub).glob("*")}
    for name in names:
        sitk.ReadImage(str(out / "images" / f"{name}.nii.gz"))
        sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz"))
        json.loads((out / "records" / f"{name}.json").read_text())
    return sorted(names)


# ------------------------------------------------------------------------------------------------- prepare


def test_prepare_on_a_full_disk_leaves_only_whole_cases(raw, tmp_path, capsys):
    with mounted_tmpfs(tmp_path / "disk", "size=160k") as disk:
        code, out, err = _cli(capsys, "prepare", "--data-dir", raw, "--out-dir", disk / "PREP", "--folds", "2")
        assert code == 1
        failed = [line for line in out.splitlines() + err.splitlines() if "no space left on device" in line]
        assert failed and all(f"no space left on device {disk} for {disk}" in line for line in failed)
        assert "NWAD" not in out + err and "Traceback" not in out + err
        assert len(_whole_cases(disk / "PREP")) < 3 and _temporaries(disk) == []


def test_a_failed_case_leaves_none_of_its_files(raw, tmp_path, capsys, monkeypatch):
    real = sitk.WriteImage

    def label_fails(image, path, *args, **kwargs):
        real(image, path, *args, **kwargs)
        if Path(path).parent.name == "labels" and ".liver_2." in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sitk, "WriteImage", label_fails)
    out = tmp_path / "PREP"
    code, printed, _ = _cli(capsys, "prepare", "--data-dir", raw, "--out-dir", out, "--folds", "2")
    assert code == 1
    assert f"failed liver_2: no space left on device {_mount(out)} for {out / 'labels' / 'liver_2.nii.gz'}" in printed
    assert _whole_cases(out) == ["liver_1", "liver_3"] and _temporaries(out) == []


def _mount(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def test_two_prepare_runs_into_one_folder_do_not_mix(raw, tmp_path, capsys):
    out = tmp_path / "PREP"
    out.mkdir()
    with folder_lock(out, "prepare"):
        code, _, err = _cli(
            capsys, "prepare", "--data-dir", raw, "--out-dir", out, "--folds", "2", "--spacing", "3", "3", "3"
        )
    assert code == 1 and "since" in err, err
    assert err.strip() == (
        f"error: {out}: in use by prepare (pid {os.getpid()} on {os.uname().nodename}, since "
        + err.split("since ")[1].split(")")[0]
        + "); wait for it to finish or choose another folder (two runs into one folder would mix their files)"
    )
    assert list(out.iterdir()) == []  # nothing written, and the lock went with its holder


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(n) for n in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc to find the pool's workers")
def test_killed_prepare_takes_its_workers_along_and_a_rerun_cleans_up(raw, tmp_path, capsys):
    out = tmp_path / "PREP"
    command = [sys.executable, "-m", "monai_pipeline", "prepare", "--data-dir", str(raw), "--out-dir", str(out)]
    command += ["--folds", "2", "--workers", "2", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    main = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline and main.poll() is None:
        workers = [pid for pid in _children(main.pid) if _alive(pid)]
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    main.send_signal(signal.SIGKILL)
    main.wait()
    deadline = time.monotonic() + 10
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, workers)), "pool workers outlived their killed parent"

    stale = temporary_name(out / "images" / "liver_2.nii.gz")  # what a kill in the middle of a write leaves
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x1f\x8b half a file")
    code, printed, _ = _cli(capsys, *command[3:])
    assert code == 0, printed
    assert _whole_cases(out) == ["liver_1", "liver_2", "liver_3"] and _temporaries(out) == []


def test_symlink_loops_in_the_data_are_skipped_with_a_warning(raw, tmp_path, capsys, caplog):
    data = tmp_path / "RAW"
    data.mkdir()
    for path in raw.iterdir():
        (data / path.name).symlink_to(path)
    (data / "loop.nii.gz").symlink_to("loop.nii.gz")
    with caplog.at_level(logging.WARNING):
        code, _, _ = _cli(capsys, "prepare", "--data-dir", data, "--out-dir", tmp_path / "PREP", "--folds", "2")
    assert code == 0
    assert f"skipped {data / 'loop.nii.gz'}: a symbolic link loop" in caplog.messages


# ------------------------------------------------------------------------------------------------- infer


def test_infer_segments_the_scan_beside_a_symlink_loop(run_dir, scans, tmp_path, capsys, caplog):
    folder = tmp_path / "IN"
    folder.mkdir()
    (folder / "a.nii.gz").symlink_to(scans / "a.nii.gz")
    (folder / "loop").symlink_to("loop")
    with caplog.at_level(logging.WARNING):
        code, out, err = _cli(capsys, "infer", "--model", run_dir, "--input", folder, "--output", tmp_path / "OUT")
    assert code == 0, err
    assert (tmp_path / "OUT" / "a_seg.nii.gz").is_file()
    assert f"skipped {folder / 'loop'}: a symbolic link loop" in caplog.messages


def test_infer_case_that_fails_to_write_leaves_none_of_its_outputs(run_dir, scans, tmp_path, capsys, monkeypatch):
    out = tmp_path / "OUT"
    real = Path.open

    def full_for_b(self, mode="r", *args, **kwargs):
        if "w" in mode and ".b_lesions." in self.name:  # after b's mask is written
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_for_b)
    code, printed, _ = _cli(capsys, "infer", "--model", run_dir, "--input", scans, "--output", out)
    assert code == 1
    assert f"failed b: no space left on device {_mount(out)} for {out / 'b_lesions.csv'}" in printed
    assert sorted(p.name for p in out.iterdir()) == ["a_lesions.csv", "a_seg.nii.gz", "summary.json"]
    assert list(json.loads((out / "summary.json").read_text())["failed"]) == ["b"]


def test_infer_into_a_read_only_folder_fails_before_any_scan_is_read(run_dir, scans, tmp_path, capsys, monkeypatch):
    import monai_pipeline.inference.run as run

    monkeypatch.setattr(run, "load_model", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    monkeypatch.setattr(run, "read_image", lambda *a, **k: pytest.fail("a scan was read before the check"))
    with read_only_folder(tmp_path / "OUT") as reason:
        code, _, err = _cli(capsys, "infer", "--model", run_dir, "--input", scans, "--output", tmp_path / "OUT")
    assert code == 1 and err.strip() == f"error: cannot write to {tmp_path / 'OUT'} ({reason})"


def test_two_infer_runs_into_one_folder_do_not_interleave(run_dir, scans, tmp_path, capsys):
    out = tmp_path / "OUT"
    out.mkdir()
    with folder_lock(out, "infer"):
        code, _, err = _cli(capsys, "infer", "--model", run_dir, "--input", scans, "--output", out)
    assert code == 1 and f"error: {out}: in use by infer (pid {os.getpid()}" in err
    assert list(out.iterdir()) == []  # nothing written, and the lock went with its holder


@pytest.mark.parametrize("content", ["text", "foreign pickle"])
def test_a_foreign_checkpoint_is_refused_in_one_line(content, run_dir, scans, tmp_path, capsys):
    run = tmp_path / "RUN"
    run.mkdir()
    for path in run_dir.iterdir():
        (run / path.name).write_bytes(path.read_bytes())
    if content == "text":
        (run / "model.pt").write_text("not weights\n")
    else:
        torch.save({"model": {}, "net": torch.nn.Linear(2, 2)}, run / "model.pt")
    code, _, err = _cli(capsys, "infer", "--model", run, "--input", scans / "a.nii.gz", "--output", tmp_path / "OUT")
    assert code == 1 and "weights_only" not in err
    assert err.strip() == (
        f"error: {run / 'model.pt'}: not a checkpoint of plain weights (a PyTorch state dict), "
        "so it cannot be loaded safely"
    )


# ------------------------------------------------------------------------------------------------- evaluate


def test_evaluate_on_a_full_disk_writes_no_report_file(scans, tmp_path, capsys, monkeypatch):
    labels = tmp_path / "LABELS"
    labels.mkdir()
    mask = np.zeros((24, 40, 48), dtype=np.uint8)
    mask[5:15, 10:30, 10:30] = 1
    for name in ("a", "b"):
        image = sitk.GetImageFromArray(mask)
        image.CopyInformation(sitk.ReadImage(str(scans / f"{name}.nii.gz")))
        sitk.WriteImage(image, str(labels / f"{name}_seg.nii.gz"))
    whole = tmp_path / "WHOLE"
    assert _cli(capsys, "evaluate", "--pred", labels, "--ref", labels, "--out", whole)[0] == 0
    room = sum((whole / name).stat().st_size for name in ("metrics.csv", "lesions.csv")) + 100  # summary.json fails
    disk_full_after(monkeypatch, room)
    code, _, err = _cli(capsys, "evaluate", "--pred", labels, "--ref", labels, "--out", tmp_path / "REPORT")
    assert code == 1 and err.strip().startswith("error: no space left on device ")
    assert err.strip().endswith(f"for {tmp_path / 'REPORT' / 'summary.json'}")
    assert sorted(p.name for p in (tmp_path / "REPORT").iterdir()) == []
