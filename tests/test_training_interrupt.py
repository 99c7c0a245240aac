"""Ctrl-C during ``monai-pipeline train``: one line that says what was kept, no traceback, exit 130, and a re-run
that resumes from what the line names. Driven by a real SIGINT sent to a training subprocess at a chosen point."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _bundle_data import REPO, prepare_small_dataset, read_log

SMALL = ["--set", "filters=[8,16,32]", "--set", "roi_size=[32,32,32]", "--set", "val_interval=1"]
SMALL += ["--set", "num_workers=0"]


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> Path:
    return prepare_small_dataset(tmp_path_factory.mktemp("interrupt"))[1]


def _train(prep: Path, run: Path, epochs: int, interrupt_at: str | None = None) -> tuple[int, str, str]:
    """Run ``train``; when ``interrupt_at`` shows in its output, send it SIGINT. Returns (exit code, out, err)."""
    args = [sys.executable, "-m", "monai_pipeline", "train", "--dataset-dir", str(prep), "--output-dir", str(run)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}  # lines arrive as printed
    process = subprocess.Popen(
        [*args, "--epochs", str(epochs), *SMALL],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    if interrupt_at is not None:
        deadline = time.monotonic() + 300
        while not any(interrupt_at in line for line in lines) and process.poll() is None:
            assert time.monotonic() < deadline, "".join(lines[-20:])
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
    err = process.stderr.read()
    process.wait(timeout=300)
    reader.join(timeout=10)
    return process.returncode, "".join(lines), err


def _error_lines(err: str) -> list[str]:
    """stderr without the progress bars of dataset loading."""
    return [line for line in re.split(r"[\r\n]", err) if line.strip() and "Loading dataset" not in line]


@pytest.mark.slow
def test_ctrl_c_in_the_first_epoch_says_nothing_was_kept(prep, tmp_path):
    run = tmp_path / "RUN"
    code, out, err = _train(prep, run, 50, interrupt_at="Epoch: 1/50, Iter: 1/")
    assert code == 130, out[-2000:] + err
    assert _error_lines(err) == [
        f"error: interrupted: no epoch had finished, so {run} holds no checkpoint yet; "
        "a re-run starts from the beginning"
    ]
    assert "Traceback" not in out + err and "ERROR" not in out
    assert not (run / "checkpoint_last.pt").exists()


@pytest.mark.slow
def test_ctrl_c_after_an_epoch_names_the_checkpoint_and_a_rerun_resumes_from_it(prep, tmp_path):
    run = tmp_path / "RUN"
    code, out, err = _train(prep, run, 50, interrupt_at="SupervisedTrainer - INFO - Epoch[1] Complete")
    assert code == 130, out[-2000:] + err
    (line,) = _error_lines(err)
    found = re.fullmatch(
        r"error: interrupted: kept checkpoint_last\.pt \(epoch (\d+)\) and model\.pt \(best validation, epoch \d+, "
        rf"mean Dice [0-9.]+\) in {re.escape(str(run))}; the same command resumes from epoch (\d+)",
        line,
    )
    assert found, line
    kept = int(found.group(1))
    assert int(found.group(2)) == kept + 1
    assert "Traceback" not in out + err and "ERROR" not in out
    code, out, err = _train(prep, run, kept + 1)
    assert code == 0, out[-2000:] + err
    assert f"at epoch {kept}" in out
    assert [row["epoch"] for row in read_log(run)[1]] == list(range(1, kept + 2))
