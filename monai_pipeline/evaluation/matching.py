"""Pair predicted and reference masks by case name.

Every mask file gets a case key:

- LiTS and MSD names, ``segmentation-<N>``, ``volume-<N>`` and ``liver_<N>``, are case ``liver_<N>`` (the name
  ``monai-pipeline prepare`` gives them; leading zeros dropped);
- any other file is its name without folder, image ending and a trailing ``_seg``.

The ``_seg`` that ``monai-pipeline infer`` appends is dropped first, so ``volume-3_seg.nii.gz``,
``liver_3_seg.nii.gz``, ``liver_3.nii.gz`` and ``segmentation-3.nii`` are all case ``liver_3``, and ``abc_seg.nii.gz``
matches ``abc.nii.gz``.

In a folder, mask files are the image files (NIfTI, NRRD, MHA) except the probability maps of ``infer``
(``*_prob_liver``, ``*_prob_tumour``); when some of them are named as masks (``*_seg`` or ``segmentation-*``), only
those are, so an ``infer`` output folder or a LiTS folder with its ``volume-*`` scans can be given as it is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.io.folders import folder_entries
from monai_pipeline.io.reader import IMAGE_SUFFIXES, case_name, is_image_file

__all__ = ["CasePair", "Matching", "case_key", "find_masks", "match_cases"]

logger = logging.getLogger(__name__)

_LITS = re.compile(r"^(?:segmentation|volume|liver)[-_](\d+)$", re.IGNORECASE)
_MASK_NAME = re.compile(r"(?:_seg$|^segmentation-)", re.IGNORECASE)
_NOT_MASKS = ("_prob_liver", "_prob_tumour")

Source = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
"""A folder of masks, one mask file, or a list of mask files."""


@dataclass(frozen=True)
class CasePair:
    """A predicted mask and its reference."""

    case: str
    pred: Path
    ref: Path


@dataclass
class Matching:
    """The pairs found, and the files of either side without a partner."""

    pairs: list[CasePair] = field(default_factory=list)
    unmatched_predictions: list[Path] = field(default_factory=list)
    unmatched_references: list[Path] = field(default_factory=list)

    def problem(self) -> str | None:
        """One line naming the unmatched files, or None when every file has its partner."""
        parts = []
        if self.unmatched_references:
            parts.append(f"reference(s) without a prediction: {_names(self.unmatched_references)}")
        if self.unmatched_predictions:
            parts.append(f"prediction(s) without a reference: {_names(self.unmatched_predictions)}")
        return "; ".join(parts) or None


def case_key(path: str | os.PathLike[str]) -> str:
    """The case a mask file belongs to (see the module's documentation)."""
    stem = case_name(path)
    if stem.lower().endswith("_seg"):
        stem = stem[: -len("_seg")]
    match = _LITS.match(stem)
    return f"liver_{int(match.group(1))}" if match else stem


def find_masks(source: Source, role: str = "masks") -> list[Path]:
    """The mask files of a folder, a file or a list of files.

    Args:
        source: a folder, a mask file, or a sequence of mask files.
        role: what the files are (``"predictions"``, ``"references"``), for error messages.

    Raises:
        InputError: a path does not exist, is not an image file, or a folder holds no mask.
    """
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if not path.exists():
            raise InputError(path, f"no such file or folder ({role})")
        if path.is_dir():
            return _folder_masks(path, role)
        paths = [path]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise PipelineError(f"no {role} given")
    for path in paths:
        if not path.is_file():
            raise InputError(path, f"no such file ({role})")
        if not is_image_file(path):
            raise InputError(path, f"not a mask file (expected {', '.join(IMAGE_SUFFIXES)})")
    return paths


def match_cases(pred: Source, ref: Source) -> Matching:
    """Pair the predicted masks of ``pred`` with the reference masks of ``ref`` by case key.

    Two single files are paired whatever their names. Pairs come in the order of the references.

    Raises:
        InputError: a missing path, a folder without masks, or two files of one side with the same case key.
        PipelineError: no prediction matches any reference.
    """
    pred_files, ref_files = find_masks(pred, "predictions"), find_masks(ref, "references")
    if _single_file(pred) and _single_file(ref):
        return Matching([CasePair(case_key(ref_files[0]), pred_files[0], ref_files[0])])
    predictions, references = _by_key(pred_files), _by_key(ref_files)
    matching = Matching(
        pairs=[CasePair(key, predictions[key], path) for key, path in references.items() if key in predictions],
        unmatched_predictions=[path for key, path in predictions.items() if key not in references],
        unmatched_references=[path for key, path in references.items() if key not in predictions],
    )
    if not matching.pairs:
        raise PipelineError(
            f"no prediction matches a reference by case name (predictions: {_names(pred_files)}; references: "
            f"{_names(ref_files)}); names are matched as <case>_seg.nii.gz to <case>.nii.gz or segmentation-<N>.nii"
        )
    return matching


def _single_file(source: Source) -> bool:
    return isinstance(source, str | os.PathLike) and Path(source).is_file()


def _folder_masks(folder: Path, role: str) -> list[Path]:
    """The mask files of a folder; the files left out are named in one log line per reason."""
    entries = sorted((p for p in folder_entries(folder) if p.is_file()), key=lambda p: _natural(p.name))
    ignored: dict[str, list[Path]] = {}
    files = []
    for path in entries:
        if path.name.startswith("."):
            ignored.setdefault("hidden", []).append(path)
        elif not is_image_file(path):
            ignored.setdefault(f"not an image file ({', '.join(IMAGE_SUFFIXES)})", []).append(path)
        elif case_name(path).lower().endswith(_NOT_MASKS):
            ignored.setdefault("probability maps, not masks", []).append(path)
        else:
            files.append(path)
    named = [path for path in files if _MASK_NAME.search(case_name(path))]
    if named and len(named) < len(files):
        unnamed = [path for path in files if path not in named]
        ignored["not named as masks (*_seg, segmentation-*) while other files of the folder are"] = unnamed
    files = named or files
    for reason, paths in ignored.items():
        logger.info("%s: ignored %d file(s) of the %s: %s (%s)", folder, len(paths), role, _names(paths), reason)
    if not files:
        raise InputError(folder, f"holds no mask files ({role}; expected {', '.join(IMAGE_SUFFIXES)})")
    return files


def _by_key(paths: list[Path]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in paths:
        key = case_key(path)
        if key in found:
            raise InputError(path, f"case {key} appears twice (also {found[key]})")
        found[key] = path
    return found


def _names(paths: Sequence[Path], limit: int = 8) -> str:
    names = [path.name for path in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(names) + more


def _natural(name: str) -> list[object]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
