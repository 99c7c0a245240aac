"""Tests of whole-or-nothing writes, folder locks, link loops and the safe checkpoint loader, under injected faults:
a full or read-only file system, a process size limit that cuts a file short, a held lock, foreign checkpoints."""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _faults import disk_full_after, mounted_tmpfs, read_only_folder

from monai_pipeline.errors import InputError, OutputError, PipelineError
from monai_pipeline.io.atomic import atomic_group, atomic_path, check_writable, temporary_name
from monai_pipeline.io.folders import folder_entries
from monai_pipeline.io.lock import LOCK_NAME, folder_lock
from monai_pipeline.io.writer import write_image
from monai_pipeline.training.checkpoint import load_weights

REPO = Path(__file__).resolve().parents[1]


def _noise(size: int = 64) -> sitk.Image:
    """An image that compresses badly, so that it does not fit a small disk."""
    return sitk.GetImageFromArray(np.random.default_rng(0).random((size, size, size), dtype=np.float32))


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.nii", "ct.mha"])
def test_image_on_a_full_disk_leaves_nothing_and_says_so_in_one_line(name, tmp_path, capfd):
    with mounted_tmpfs(tmp_path / "disk", "size=256k") as disk:
        with pytest.raises(OutputError) as err:
            write_image(_noise(), disk / name)
        assert str(err.value) == f"no space left on device {disk} for {disk / name}"
        assert list(disk.iterdir()) == []
    printed = capfd.readouterr()
    assert "NWAD" not in printed.err + printed.out and "ITK ERROR" not in str(err.value)


def test_a_write_cut_short_without_an_error_is_never_renamed(tmp_path):
    """ITK's NIfTI writer reports a short write only on stderr; a process file-size limit makes one anywhere."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np, SimpleITK as sitk
        sys.path.insert(0, {str(REPO)!r})
        from monai_pipeline.errors import OutputError
        from monai_pipeline.io.writer import write_image
        image = sitk.GetImageFromArray(np.random.default_rng(0).random((48, 48, 48), dtype=np.float32))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))
        try:
            write_image(image, sys.argv[1])
        except OutputError as err:
            print(err)
            sys.exit(3)
        """
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "ct.nii.gz")], capture_output=True, text=True)
    assert result.returncode == 3, result.stderr
    assert str(tmp_path / "ct.nii.gz") in result.stdout and len(result.stdout.splitlines()) == 1
    assert "NWAD" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_python_writer_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old\n")
    disk_full_after(monkeypatch, room=10)
    with pytest.raises(OutputError, match=r"^no space left on device /\S* for .*summary\.json$"):
        with atomic_path(target) as tmp:
            tmp.write_text("x" * 100)
    monkeypatch.undo()
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_group_of_files_appears_together_or_not_at_all(tmp_path):
    with pytest.raises(OSError, match="disk on fire"):
        with atomic_group():
            with atomic_path(tmp_path / "a.csv") as tmp:
                tmp.write_text("a\n")
            assert not (tmp_path / "a.csv").exists()  # written, but not yet under its name
            with atomic_path(tmp_path / "b.csv") as tmp:
                raise OSError("disk on fire")
    assert list(tmp_path.iterdir()) == []
    with atomic_group():
        for name in ("a.csv", "b.csv"):
            with atomic_path(tmp_path / name) as tmp:
                tmp.write_text(name)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


def test_read_only_output_is_found_before_any_work(tmp_path):
    with read_only_folder(tmp_path / "OUT") as reason:
        with pytest.raises(OutputError) as err:
            check_writable(tmp_path / "OUT" / "new", create=True)
        assert str(err.value) == f"cannot write to {tmp_path / 'OUT' / 'new'} ({reason})"
        with pytest.raises(OutputError, match=rf"\({reason}\)$"):
            check_writable(tmp_path / "OUT")


def test_a_second_run_into_a_locked_folder_is_refused_and_stale_temporaries_go(tmp_path):
    stale = temporary_name(tmp_path / "images" / "liver_2.nii.gz")
    stale.parent.mkdir()
    stale.write_bytes(b"half")
    other = tmp_path / "images" / "liver_2.nii.gz.bak"
    other.write_bytes(b"kept")
    with folder_lock(tmp_path, "prepare", clean=("", "images")):
        assert not stale.exists() and other.exists()
        with pytest.raises(PipelineError, match=r"in use by prepare \(pid \d+ on .*, since .*\); wait"):
            with folder_lock(tmp_path, "infer"):
                pass
    assert not (tmp_path / LOCK_NAME).exists()
    with folder_lock(tmp_path, "infer"):  # free again
        pass


def test_symlink_loops_are_skipped_with_a_warning(tmp_path, caplog):
    (tmp_path / "scan.nii.gz").write_bytes(b"")
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    with caplog.at_level(logging.WARNING):
        assert folder_entries(tmp_path) == [tmp_path / "scan.nii.gz"]
    assert sorted(r.getMessage() for r in caplog.records) == [
        f"skipped {tmp_path / name}: a symbolic link loop" for name in ("a", "b", "loop")
    ]


class _Foreign:
    """An object a checkpoint of plain weights cannot hold."""


@pytest.mark.parametrize("content", ["text", "foreign pickle", "empty"])
def test_a_file_that_is_not_plain_weights_is_refused_without_suggesting_the_unsafe_loader(content, tmp_path):
    path = tmp_path / "model.pt"
    if content == "text":
        path.write_text("these are not weights\n")
    elif content == "foreign pickle":
        torch.save({"model": {"w": torch.zeros(2)}, "extra": _Foreign()}, path)
    else:
        path.write_bytes(pickle.dumps(_Foreign())[:0])
    with pytest.raises(InputError) as err:
        load_weights(path)
    message = str(err.value)
    assert message == f"{path}: not a checkpoint of plain weights (a PyTorch state dict), so it cannot be loaded safely"
    assert err.value.__cause__ is None and err.value.__suppress_context__  # PyTorch's advice is not shown
