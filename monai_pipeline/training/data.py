"""The training and validation lists of a prepared dataset, checked before a run starts."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from monai_pipeline.errors import InputError, PipelineError

__all__ = ["load_datalist", "fold_files", "copy_preprocessing"]

logger = logging.getLogger(__name__)

PREPARE_HINT = "made by `monai-pipeline prepare --data-dir RAW --out-dir PREP`"


def load_datalist(dataset_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``datalist.json`` of a prepared dataset, with every listed file checked to exist.

    Raises:
        InputError: the folder, its datalist or a file it lists is missing, or the datalist is not valid JSON.
    """
    root = Path(dataset_dir)
    if not root.is_dir():
        raise InputError(root, f"no such dataset folder (a prepared dataset is {PREPARE_HINT})")
    path = root / "datalist.json"
    if not path.is_file():
        raise InputError(path, f"missing: this is not a prepared dataset ({PREPARE_HINT})")
    try:
        datalist = json.loads(path.read_text())
    except ValueError as err:
        raise InputError(path, f"not valid JSON: {err}") from err
    training = datalist.get("training")
    if not isinstance(training, list) or not training:
        raise InputError(path, f"lists no training cases ({PREPARE_HINT})")
    for index, entry in enumerate(training):
        for key in ("image", "label"):
            if not isinstance(entry, dict) or not isinstance(entry.get(key), str):
                raise InputError(path, f"training entry {index} has no '{key}' path; prepare the dataset again")
            file = root / entry[key]
            if not file.is_file():
                raise InputError(file, f"listed in {path.name} but missing; prepare the dataset again")
    return datalist


def fold_files(dataset_dir: str | os.PathLike[str], fold: int, split: str) -> list[dict[str, Any]]:
    """The cases of one split: ``"train"`` (every fold but ``fold``), ``"val"`` (``fold``) or ``"all"``, as MONAI
    data dicts with absolute ``image`` and ``label`` paths. A dataset of one fold (``prepare --folds 1``) trains on
    all its cases and validates on the same ones, with a warning saying so.

    Raises:
        PipelineError: ``fold`` is not a fold of the datalist, or leaves no training case.
    """
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}.")
    root = Path(dataset_dir).resolve()
    training = load_datalist(root)["training"]
    folds = sorted({int(entry.get("fold", 0)) for entry in training})
    if split != "all" and int(fold) not in folds:
        raise PipelineError(f"fold {fold} does not exist in {root / 'datalist.json'} (folds: {folds})")
    if split == "train" and folds == [int(fold)]:
        logger.warning("%s has one fold: training validates on its own cases (no held-out validation)", root.name)
        split = "all"
    chosen = [
        entry for entry in training if split == "all" or (int(entry.get("fold", 0)) == int(fold)) == (split == "val")
    ]
    if not chosen:
        raise PipelineError(f"fold {fold} leaves no {split} case in {root / 'datalist.json'}")
    return [{**entry, "image": str(root / entry["image"]), "label": str(root / entry["label"])} for entry in chosen]


def copy_preprocessing(dataset_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> Path:
    """Copy the dataset's ``preprocessing.json`` into the run folder, so that the run alone is enough to infer.

    Raises:
        InputError: the dataset has no ``preprocessing.json``.
    """
    source = Path(dataset_dir) / "preprocessing.json"
    if not source.is_file():
        raise InputError(source, f"missing ({PREPARE_HINT})")
    target = Path(output_dir) / "preprocessing.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    return target
