"""Prepare a LiTS or MSD Task03_Liver dataset for training: the API behind ``data_prep`` and ``monai-pipeline prepare``.

Writes into ``out_dir``::

    images/<case>.nii.gz      float32 network input (reoriented, cropped, resampled, normalised)
    labels/<case>.nii.gz      uint8 labels on the same grid: 0 background, 1 liver, 2 tumour
    records/<case>.json       per-case record (fingerprint, crop, grids); marks the case as finished
    datalist.json             MONAI decathlon-style list with a ``fold`` per training case
    preprocessing.json        every parameter inference repeats
    fingerprint.json          per-case and dataset-wide properties of the raw scans
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from tqdm import tqdm

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.io.atomic import atomic_path, check_writable
from monai_pipeline.io.lock import folder_lock
from monai_pipeline.prepare.case import FOLDERS as _FOLDERS
from monai_pipeline.prepare.case import CaseResult, case_paths, fingerprint_case, prepare_case
from monai_pipeline.prepare.datalist import assign_folds, build_datalist, default_folds
from monai_pipeline.prepare.discover import RawCase, find_cases
from monai_pipeline.prepare.fingerprint import dataset_fingerprint, intensity_stats
from monai_pipeline.prepare.workers import die_with_parent
from monai_pipeline.preprocessing.config import PreprocessingConfig

__all__ = ["PrepareSummary", "prepare_dataset"]

logger = logging.getLogger(__name__)


@dataclass
class PrepareSummary:
    """What a preparation run did."""

    out_dir: Path
    prepared: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no case failed."""
        return not self.failed


def prepare_dataset(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    config: PreprocessingConfig | None = None,
    *,
    folds: int | None = None,
    seed: int = 0,
    workers: int = 1,
    resample_labels: bool = False,
    progress: bool = True,
) -> PrepareSummary:
    """Prepare every case under ``data_dir`` into ``out_dir``.

    Cases already prepared with the same parameters are skipped, so an interrupted run resumes (even one killed
    mid-write: its partial files are removed) and ends as an uninterrupted run would have. A bad case is
    reported in the summary and left out of the datalist; the others are prepared.

    Args:
        data_dir: the LiTS download (``volume-<N>`` / ``segmentation-<N>`` anywhere below) or an MSD Task03 folder.
        out_dir: where to write; must not be ``data_dir`` itself.
        config: preprocessing parameters (default :class:`PreprocessingConfig`). With ``normalization="zscore"``
            the intensity statistics are computed from the dataset in a first pass.
        folds: number of cross-validation folds assigned to the training cases; ``None`` gives
            :data:`DEFAULT_FOLDS`, or one fold per labelled case when there are fewer (a notice says so).
        seed: seed of the fold assignment.
        workers: parallel processes.
        resample_labels: resample a label on other voxels than its CT onto the CT's grid (nearest neighbour)
            rather than refuse the case; a label on the same voxels in another orientation is always reoriented.
        progress: show a progress bar.

    Raises:
        InputError: the data folder is missing or holds no case, or the arguments do not fit it.
    """
    config = config or PreprocessingConfig()
    raw = Path(data_dir).resolve()
    out = Path(out_dir).resolve()
    if out == raw:
        raise InputError(out, "the output folder must not be the raw data folder (inputs are never modified)")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    cases = find_cases(raw)
    training = [case.name for case in cases if case.label is not None]
    folds = default_folds(len(training)) if folds is None else folds
    fold_of = assign_folds(training, folds, seed)
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    check_writable(out, create=True)
    with folder_lock(out, "prepare", clean=("", *_FOLDERS)):
        summary = PrepareSummary(out_dir=out)
        if config.normalization == "zscore" and config.intensity_stats is None:
            fingerprint = functools.partial(fingerprint_case, resample_labels=resample_labels)
            fingerprints = _run(fingerprint, cases, workers, progress, "fingerprint", summary)
            config = config.with_stats(intensity_stats(r.record["fingerprint"] for r in fingerprints))
        config.save(out / "preprocessing.json")

        todo = [case for case in cases if case.name not in summary.failed]
        task = functools.partial(prepare_case, out_dir=out, config=config, raw_dir=raw, resample_labels=resample_labels)
        results = _run(task, todo, workers, progress, "prepare", summary)
        records = {result.name: result.record for result in results}
        for result in results:
            (summary.skipped if result.skipped else summary.prepared).append(result.name)

        _write_json(out / "fingerprint.json", dataset_fingerprint({n: r["fingerprint"] for n, r in records.items()}))
        done = [case for case in cases if case.name in records]
        _write_json(
            out / "datalist.json", build_datalist(done, fold_of, folds, seed, lambda name: case_paths(out, name))
        )
        if summary.failed:
            logger.warning("%d case(s) failed: %s", len(summary.failed), ", ".join(sorted(summary.failed)))
        if not records:
            first = next(iter(summary.failed.values()), "")
            raise PipelineError(f"{raw}: no case could be prepared ({len(summary.failed)} failed; first: {first})")
        return summary


def _run(
    task: Callable[[RawCase], CaseResult],
    cases: list[RawCase],
    workers: int,
    progress: bool,
    label: str,
    summary: PrepareSummary,
) -> list[CaseResult]:
    """Run ``task`` over ``cases`` (in ``workers`` processes) and collect the results; failures go to ``summary``."""
    results: list[CaseResult] = []
    bar = tqdm(total=len(cases), desc=label, unit="case", disable=not progress)
    for result in _map(task, cases, workers):
        bar.update(1)
        if result.error is not None:
            summary.failed[result.name] = result.error
            summary.details[result.name] = result.details or ""
        else:
            results.append(result)
    bar.close()
    return results


def _map(task: Callable[[RawCase], CaseResult], cases: list[RawCase], workers: int) -> Iterable[CaseResult]:
    if workers == 1 or len(cases) <= 1:
        yield from map(task, cases)
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
        futures = [pool.submit(task, case) for case in cases]
        for future in as_completed(futures):
            yield future.result()


def _init_worker(threads: int, parent: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    die_with_parent(parent)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n")
