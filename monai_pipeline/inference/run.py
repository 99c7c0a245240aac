"""Inference over files and folders: the API behind ``monai-pipeline infer``.

For every scan it writes into the output folder::

    <case>_seg.nii.gz           uint8 mask (0 background, 1 liver, 2 tumour) with exactly the scan's geometry
    <case>_lesions.csv          one row per tumour: volume, longest axial diameter, centroid, probability, HU
    <case>_prob_liver.nii.gz    liver probability on the scan's grid (--save-probabilities)
    <case>_prob_tumour.nii.gz   tumour probability on the scan's grid (--save-probabilities)
    <case>_preview.png          axial, coronal and sagittal views with outlines and tumour heatmap (--preview)
    summary.json                every case's volumes, burden, lesions and quality flags, and the cases that failed

A scan is checked to hold CT values in HU first (:func:`~monai_pipeline.preprocessing.hu.ensure_hu`): a label map
or an MR fails, a CT stored as HU + 1024 is corrected with a warning. Each quality flag of a case is logged as a
warning line naming the case.
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.inference.lesions import write_lesion_csv
from monai_pipeline.inference.model import LoadedModel, load_model
from monai_pipeline.inference.postprocess import PostprocessConfig
from monai_pipeline.inference.quality import log_flags
from monai_pipeline.inference.segment import Segmentation, segment
from monai_pipeline.io.reader import case_name, is_image_file, read_image
from monai_pipeline.io.writer import atomic_path, write_image
from monai_pipeline.preprocessing.hu import ensure_hu

__all__ = ["InferenceCase", "InferSummary", "find_scans", "infer", "run_cases"]

logger = logging.getLogger(__name__)

_OUTPUT_ENDINGS = ("_seg.nii.gz", "_lesions.csv", "_prob_liver.nii.gz", "_prob_tumour.nii.gz", "_preview.png")


@dataclass(frozen=True)
class InferenceCase:
    """One scan to segment: a file or a DICOM series folder, and the name its outputs get."""

    name: str
    path: Path


@dataclass
class InferSummary:
    """What an inference run did."""

    output_dir: Path
    cases: dict[str, dict[str, Any]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no case failed."""
        return not self.failed


def find_scans(path: str | os.PathLike[str], exclude: str | os.PathLike[str] | None = None) -> list[InferenceCase]:
    """The scans at ``path``: one image file, one DICOM series folder, or a folder of image files and DICOM series
    sub-folders (leaving out ``exclude``, e.g. an output folder inside the input folder). A sub-folder holding only
    image files and outputs (an earlier run's results) is skipped with a warning: it is not a DICOM series.

    Raises:
        InputError: nothing to segment there, or two scans that would get the same output name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if path.is_file():
        return [InferenceCase(case_name(path), path)]
    skip = Path(exclude).resolve() if exclude is not None else None
    entries = sorted(p for p in path.iterdir() if not p.name.startswith(".") and p.resolve() != skip)
    images = [p for p in entries if p.is_file() and is_image_file(p)]
    folders = []
    for folder in (p for p in entries if p.is_dir()):
        files = [q for q in folder.iterdir() if q.is_file() and not q.name.startswith(".")]
        if any(not is_image_file(q) and not _is_output(q) for q in files):
            folders.append(folder)
        elif files:
            logger.warning("skipped %s: it holds image files or outputs, not a DICOM series", folder)
    if not images and not folders:
        if any(p.is_file() for p in entries):
            return [InferenceCase(path.name, path)]  # a DICOM series folder
        raise InputError(path, "holds no scan (NIfTI, NRRD, MHA files or DICOM series folders)")
    cases = [InferenceCase(case_name(p), p) for p in images] + [InferenceCase(p.name, p) for p in folders]
    named: dict[str, Path] = {}
    for case in cases:
        if case.name in named:
            raise InputError(case.path, f"has the same name as {named[case.name].name}; their outputs would collide")
        named[case.name] = case.path
    return cases


def _is_output(path: Path) -> bool:
    """True for a file ``infer`` writes (a case's outputs or the run's ``summary.json``)."""
    return path.name == "summary.json" or path.name.endswith(_OUTPUT_ENDINGS)


def infer(
    model_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    folds: list[int | str] | None = None,
    device: str = "auto",
    tta: bool = False,
    save_probabilities: bool = False,
    preview: bool = False,
    postprocessing: PostprocessConfig | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    series_uid: str | None = None,
    progress: bool = True,
) -> InferSummary:
    """Segment every scan at ``input_path`` with the model of ``model_dir`` and write the results to ``output_dir``.

    A scan that cannot be read or segmented is reported in the summary; the others go on. Every file is written
    under a temporary name and renamed when complete.

    Raises:
        InputError: the model, the input or the output folder is unusable.
    """
    out = Path(output_dir)
    cases = find_scans(input_path, exclude=out)
    model = load_model(model_dir, folds, device)
    return run_cases(
        cases,
        model,
        out,
        tta=tta,
        save_probabilities=save_probabilities,
        preview=preview,
        postprocessing=postprocessing,
        overlap=overlap,
        sw_batch_size=sw_batch_size,
        series_uid=series_uid,
        progress=progress,
    )


def run_cases(
    cases: list[InferenceCase],
    model: LoadedModel,
    output_dir: str | os.PathLike[str],
    *,
    tta: bool = False,
    save_probabilities: bool = False,
    preview: bool = False,
    postprocessing: PostprocessConfig | None = None,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    series_uid: str | None = None,
    progress: bool = True,
) -> InferSummary:
    """Segment ``cases`` with a loaded model into ``output_dir`` (see :func:`infer`).

    Raises:
        InputError: ``output_dir`` is a file, or an output would overwrite one of the scans.
    """
    out = Path(output_dir)
    _check_output(cases, out)
    out.mkdir(parents=True, exist_ok=True)
    summary = InferSummary(output_dir=out)
    bar = tqdm(cases, desc="infer", unit="scan", disable=not progress)
    for case in bar:
        bar.set_postfix_str(case.name)
        start = time.perf_counter()
        try:
            image = ensure_hu(read_image(case.path, series_uid=series_uid), case.path)
            result = segment(
                image,
                model,
                tta=tta,
                overlap=overlap,
                sw_batch_size=sw_batch_size,
                postprocessing=postprocessing,
                probabilities=save_probabilities,
            )
            files = _write_case(case, result, image, out, preview)
            log_flags(case.name, result.flags)
            summary.cases[case.name] = {
                **result.summary,
                "seconds": round(time.perf_counter() - start, 2),
                "files": files,
                "lesion_list": [asdict(lesion) for lesion in result.lesions],
            }
        except Exception as err:  # noqa: BLE001 - one bad scan is reported, the others go on
            message = str(err) if isinstance(err, PipelineError) else f"{case.path}: {type(err).__name__}: {err}"
            summary.failed[case.name] = message.splitlines()[0]
            summary.details[case.name] = traceback.format_exc()
    bar.close()
    _write_summary(summary, model)
    return summary


def _check_output(cases: list[InferenceCase], out: Path) -> None:
    """Refuse an output folder that is a file, or one where an output would replace a scan."""
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder; choose an output folder")
    inputs = {case.path.resolve() for case in cases}
    for case in cases:
        written = [out / f"{case.name}{ending}" for ending in _OUTPUT_ENDINGS]
        clash = next((path for path in written if path.resolve() in inputs), None)
        if clash is not None or (case.path.is_dir() and out.resolve() == case.path.resolve()):
            raise InputError(clash or case.path, "an output would overwrite an input; choose another output folder")


def _write_case(case: InferenceCase, result: Segmentation, image, out: Path, preview: bool) -> dict[str, str]:
    files = {"mask": write_image(result.mask, out / f"{case.name}_seg.nii.gz")}
    files["lesions"] = write_lesion_csv(result.lesions, out / f"{case.name}_lesions.csv")
    for name, probability in result.probabilities.items():
        files[f"probability_{name}"] = write_image(probability, out / f"{case.name}_prob_{name}.nii.gz")
    if preview:
        from monai_pipeline.inference.preview import write_preview

        files["preview"] = write_preview(image, result, out / f"{case.name}_preview.png")
    return {key: path.name for key, path in files.items()}


def _write_summary(summary: InferSummary, model: LoadedModel) -> None:
    record = {
        "model": [str(run) for run in model.runs],
        "device": str(model.device),
        "coordinates": "centroids in mm, LPS (DICOM) and RAS (NIfTI viewers); volumes in mL",
        "cases": summary.cases,
        "failed": summary.failed,
    }
    with atomic_path(summary.output_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
