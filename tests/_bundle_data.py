"""Helpers of ``test_bundle.py``: a small prepared dataset, runs of the bundle through MONAI's runner (and
``torchrun``), and reading what a run folder holds (training log, TensorBoard scalars, weights)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "liver_tumor_ct"
CONFIGS = BUNDLE / "configs"
TRAIN, TWO_D, MULTI_GPU, EVALUATE = (
    f"bundles/liver_tumor_ct/configs/{name}.json" for name in ("train", "2d", "multi_gpu_train", "evaluate")
)
"""Config files relative to the repository root, the working directory of every run."""

SHRINK_SETTINGS: dict[str, Any] = {"filters": [8, 16, 32], "num_workers": 0, "warmup_epochs": 1, "val_interval": 1}
"""Overrides that make a run take seconds: a validation every epoch, a 3-level network, no worker processes."""


def shrink_args(epochs: int = 2, **changes: Any) -> list[str]:
    """``SHRINK_SETTINGS`` (with ``changes``) and ``max_epochs`` as options of MONAI's runner."""
    settings = {"max_epochs": epochs, **SHRINK_SETTINGS, **changes}
    return [text for key, value in settings.items() for text in (f"--{key}", json.dumps(value).replace(" ", ""))]


LOG_COLUMNS = ["epoch", "train_loss", "learning_rate", "val_mean_dice", "val_liver_dice", "val_tumour_dice"]
DICE_COLUMNS = LOG_COLUMNS[3:]


def prepare_small_dataset(root: Path) -> tuple[Path, Path]:
    """Six synthetic LiTS cases in ``root/RAW``, prepared at 4 mm into ``root/PREP`` with 3 folds (~80x65x55)."""
    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.synth import write_synthetic_dataset

    raw, prep = root / "RAW", root / "PREP"
    write_synthetic_dataset(raw, 6, seed=0, progress=False)
    summary = prepare_dataset(raw, prep, PreprocessingConfig(spacing=(4.0, 4.0, 4.0)), folds=3, progress=False)
    assert summary.ok and len(summary.prepared) == 6, summary
    return raw, prep


def config_arg(*files: str) -> str:
    """``--config_file`` for MONAI's runner: one file, or a Python list of files merged in order."""
    return files[0] if len(files) == 1 else repr(list(files))


def free_port() -> int:
    """A TCP port nobody listens on now (for ``torchrun --master_port``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def monai_bundle(
    command: str, args: Sequence[str], nproc: int = 1, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python -m monai.bundle COMMAND ARGS`` from the repository root, under ``torchrun`` when ``nproc`` > 1."""
    if nproc > 1:
        torchrun = Path(sys.executable).parent / "torchrun"
        launcher = [str(torchrun), "--nproc_per_node", str(nproc), "--master_port", str(free_port())]
    else:
        launcher = [sys.executable]
    cmd = [*launcher, "-m", "monai.bundle", command, *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def check_ok(result: subprocess.CompletedProcess) -> None:
    """Fail with the end of the output when a run did not exit 0."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


@dataclass
class Captured:
    """What an in-process call printed, and the messages of the loggers it watched."""

    out: str = ""
    err: str = ""
    logs: list[str] = field(default_factory=list)


class _Collect(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.INFO)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.levelname}: {record.getMessage()}")


@contextmanager
def restored_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level afterwards: the bundle's ``logging.conf``, which MONAI's
    ``ConfigWorkflow`` applies, replaces them (INFO, to the stdout of that moment)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@contextmanager
def in_process(*loggers: str) -> Iterator[Captured]:
    """Capture stdout, stderr and the messages of ``loggers`` of an in-process run, then restore the root logger."""
    captured = Captured()
    collect = _Collect(captured.logs)
    watched = [(logging.getLogger(name), logging.getLogger(name).level) for name in loggers]
    for logger, _ in watched:
        logger.addHandler(collect)
        logger.setLevel(logging.INFO)
    out, err = io.StringIO(), io.StringIO()
    try:
        with restored_logging(), redirect_stdout(out), redirect_stderr(err):
            yield captured
    finally:
        for logger, level in watched:
            logger.removeHandler(collect)
            logger.setLevel(level)
        captured.out, captured.err = out.getvalue(), err.getvalue()


def read_log(run: Path) -> tuple[list[str], list[dict[str, float]]]:
    """The header and rows (as numbers; NaN where empty) of a run's ``training_log.csv``."""
    with (run / "training_log.csv").open(newline="") as stream:
        reader = csv.DictReader(stream)
        rows = [{key: float(value) if value else math.nan for key, value in row.items()} for row in reader]
        return list(reader.fieldnames or []), rows


def event_files(run: Path) -> list[Path]:
    """The TensorBoard event files of a run folder."""
    return sorted(run.glob("events.out.tfevents.*"))


def event_pid(path: Path) -> int:
    """The writer's process id in ``events.out.tfevents.<time>.<host>.<pid>.<n>`` (the host may hold dots)."""
    return int(path.name.split(".")[-2])


def scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar tag of a run's TensorBoard files, as (step, value) pairs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for path in event_files(run):
        events = EventAccumulator(str(path))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend((event.step, event.value) for event in events.Scalars(tag))
    return found


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint loaded safely (``weights_only``); the network of a ``checkpoint_last.pt``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state["model"] if "model" in state and isinstance(state["model"], dict) else state


def run_record(run: Path) -> dict[str, Any]:
    """A run's ``run.json``."""
    return json.loads((run / "run.json").read_text())
