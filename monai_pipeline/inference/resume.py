"""Resuming a folder ``infer`` that was stopped (Ctrl-C, kill -9, a power cut): the cases it finished are kept.

``summary.json`` is rewritten (atomically) after every case, with the settings of the run. A re-run with the same
model, options and input files takes over the entries of the cases whose files are all there, and segments the
others again; the partial files a killed write left behind are removed first. Segmenting is deterministic, so the
folder ends as an uninterrupted run leaves it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from monai_pipeline.inference.model import LoadedModel
from monai_pipeline.inference.postprocess import PostprocessConfig
from monai_pipeline.io.atomic import remove_stale_temporaries
from monai_pipeline.training.checkpoint import BEST_NAME

__all__ = ["run_settings", "input_identity", "finished_cases", "can_keep"]

logger = logging.getLogger(__name__)


def run_settings(model: LoadedModel, postprocessing: PostprocessConfig | None, **options: Any) -> dict[str, Any]:
    """What decides a run's outputs: the model's runs and weight files, the post-processing and the options."""
    weights = []
    for run in model.runs:
        path = Path(run) / BEST_NAME
        stat = path.stat() if path.is_file() else None
        weights.append({"run": str(run), "weights": [stat.st_size, stat.st_mtime_ns] if stat else None})
    return {
        "model": weights,
        "device": model.device.type,
        "postprocessing": asdict(postprocessing or PostprocessConfig()),
        **options,
    }


def input_identity(path: Path) -> str:
    """The scan as a re-run recognises it: a digest of its resolved path, size and modification time (a DICOM
    folder: of its files), so that no path, which may name the patient, is written."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    key = [str(path.resolve()), sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def finished_cases(output_dir: Path, settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The entries of ``summary.json`` that a run with ``settings`` can keep (their files checked by the caller),
    after removing the partial files of a killed run; nothing when there is no summary or it was made otherwise."""
    remove_stale_temporaries(output_dir)
    summary_path = output_dir / "summary.json"
    if not summary_path.is_file():
        return {}
    try:
        earlier = json.loads(summary_path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("settings") != json.loads(json.dumps(settings)):
        return {}
    cases = earlier.get("cases")
    return cases if isinstance(cases, dict) else {}


def can_keep(entry: dict[str, Any] | None, identity: str, output_dir: Path) -> bool:
    """True when an earlier entry is of the same input and every file it names is there."""
    if not entry or entry.get("input") != identity:
        return False
    files = entry.get("files") or {}
    return bool(files) and all((output_dir / os.fspath(name)).is_file() for name in files.values())
