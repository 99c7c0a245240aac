"""The MONAI datalist of a prepared dataset, with cross-validation folds."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_pipeline import LABELS
from monai_pipeline.errors import PipelineError
from monai_pipeline.prepare.discover import RawCase

__all__ = ["DEFAULT_FOLDS", "assign_folds", "build_datalist", "default_folds"]

DEFAULT_FOLDS = 5
"""Cross-validation folds of a preparation that does not ask for a number."""

logger = logging.getLogger(__name__)


def default_folds(labelled: int) -> int:
    """:data:`DEFAULT_FOLDS`, or one fold per labelled case when there are fewer, said in a notice; a single case
    makes one fold, and training then validates on the case it trains on."""
    if labelled >= DEFAULT_FOLDS or labelled < 1:
        return DEFAULT_FOLDS
    if labelled == 1:
        logger.warning(
            "one labelled case: it is fold 0, and training validates on the case it trains on (no held-out score)"
        )
    else:
        logger.warning(
            "%d labelled cases: %d folds instead of %d (one case per fold)", labelled, labelled, DEFAULT_FOLDS
        )
    return labelled


def assign_folds(names: Sequence[str], folds: int, seed: int = 0) -> dict[str, int]:
    """Assign each training case a fold in ``0..folds-1``: a seeded shuffle dealt round-robin, so folds differ in
    size by at most one. The assignment depends only on the names, ``folds`` and ``seed``. With one fold every case
    is in fold 0, and training validates on its own cases (fine-tuning on a handful of scans).

    Raises:
        PipelineError: fewer cases than folds, or fewer than 1 fold.
    """
    if folds < 1:
        raise PipelineError(f"--folds must be at least 1, got {folds}")
    if len(names) < folds:
        raise PipelineError(f"--folds {folds} needs at least {folds} labelled cases, found {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    ordered = sorted(names)
    return {ordered[index]: position % folds for position, index in enumerate(order)}


def build_datalist(
    cases: Sequence[RawCase],
    fold_of: dict[str, int],
    folds: int,
    seed: int,
    paths_of: Callable[[str], dict[str, Path]],
) -> dict[str, Any]:
    """A decathlon-style datalist (``training`` with ``fold``, ``test``) with paths relative to the datalist's
    folder, loadable by ``monai.data.load_decathlon_datalist``."""

    def relative(path: Path) -> str:
        return f"{path.parent.name}/{path.name}"

    training, test = [], []
    for case in cases:
        paths = paths_of(case.name)
        if case.label is not None:
            training.append(
                {
                    "image": relative(paths["image"]),
                    "label": relative(paths["label"]),
                    "fold": fold_of[case.name],
                    "case": case.name,
                }
            )
        else:
            test.append({"image": relative(paths["image"]), "case": case.name})
    return {
        "name": "liver_tumour_ct",
        "description": "Liver and liver tumour CT, prepared by monai_pipeline (see preprocessing.json)",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in LABELS.items()},
        "numTraining": len(training),
        "numTest": len(test),
        "num_folds": folds,
        "fold_seed": seed,
        "training": training,
        "test": test,
    }
