"""A trained model ready for inference: the networks of one or more runs, their settings and preprocessing."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.training.checkpoint import BEST_NAME, load_weights
from monai_pipeline.training.network import build_network
from monai_pipeline.training.record import RUN_RECORD

__all__ = ["LoadedModel", "load_model", "find_runs", "resolve_device"]

TRAIN_HINT = "made by `monai-pipeline train`"


@dataclass
class LoadedModel:
    """Networks (one per fold) sharing one preprocessing and one inference setting.

    Attributes:
        networks: the networks in eval mode on ``device``; their softmax outputs are averaged.
        runs: the run folders they came from.
        preprocessing: the preprocessing every run was trained with.
        inference: patch size, dimensions (2 or 3), slice context, window batch and overlap.
        device: where the networks run.
    """

    networks: list[torch.nn.Module]
    runs: list[Path]
    preprocessing: PreprocessingConfig
    inference: dict[str, Any]
    device: torch.device
    network_args: dict[str, Any] = field(default_factory=dict)
    inferer: Any = None
    """An inferer to use instead of the one built from ``inference`` (the bundle's ``inferer``)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU when there is one, else the CPU; ``"cuda"`` without a GPU is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise PipelineError(f"--device {device} asked for, but no CUDA GPU is available (use --device cpu)")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise PipelineError(f"unknown --device '{device}' (auto, cpu, cuda, cuda:N)") from err


def find_runs(model_dir: str | os.PathLike[str], folds: Sequence[int | str] | None = None) -> list[Path]:
    """The run folders of ``model_dir``: the folder itself when it is a run (``model.pt`` + ``run.json``), its
    ``models/`` when it is a bundle, or its ``fold*`` sub-folders (all, or those named by ``folds``).

    Raises:
        InputError: no run is found, or a requested fold is missing.
    """
    root = Path(model_dir)
    if root.is_file():
        if (root.parent / RUN_RECORD).is_file() or root.suffix in (".pt", ".pth", ".ckpt"):
            raise InputError(root, f"is a file: pass the run folder ({root.parent}), not the weights file")
        raise InputError(root, f"is a file, not a model folder (a training run folder is {TRAIN_HINT})")
    if not root.is_dir():
        raise InputError(root, f"no such model folder (a training run folder is {TRAIN_HINT})")
    if (root / "models" / RUN_RECORD).is_file():
        root = root / "models"
    if (root / RUN_RECORD).is_file() and not folds:
        return [root]
    candidates = sorted(p for p in root.iterdir() if p.is_dir() and (p / RUN_RECORD).is_file())
    if folds:
        chosen = []
        for fold in folds:
            matches = [p for p in candidates if p.name in (str(fold), f"fold{fold}", f"fold_{fold}")]
            if not matches:
                raise InputError(root, f"has no run folder for fold {fold} (found: {[p.name for p in candidates]})")
            chosen += matches
        return chosen
    if not candidates:
        raise InputError(root, f"holds no trained run (run.json + model.pt, {TRAIN_HINT})")
    return candidates


def load_model(
    model_dir: str | os.PathLike[str], folds: Sequence[int | str] | None = None, device: str | torch.device = "auto"
) -> LoadedModel:
    """Load the networks of ``model_dir`` (see :func:`find_runs`) with ``torch.load(..., weights_only=True)``.

    Raises:
        InputError: a run lacks ``model.pt``, ``run.json`` or ``preprocessing.json``, or its weights do not fit.
        PipelineError: the runs disagree on preprocessing or network input.
    """
    runs = find_runs(model_dir, folds)
    target = resolve_device(device)
    networks, configs, settings, args = [], [], [], []
    for run in runs:
        for name in (RUN_RECORD, BEST_NAME, "preprocessing.json"):
            if not (run / name).is_file():
                raise InputError(run / name, f"missing: not a complete training run ({TRAIN_HINT})")
        record = json.loads((run / RUN_RECORD).read_text())
        configs.append(PreprocessingConfig.load(run / "preprocessing.json"))
        settings.append(record["inference"])
        args.append(record["network"])
        network = build_network(**record["network"])
        state = load_weights(run / BEST_NAME)
        try:
            network.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except (RuntimeError, AttributeError) as err:
            raise InputError(run / BEST_NAME, "weights do not fit the network described in run.json") from err
        networks.append(network.to(target).eval())
    if any(c != configs[0] for c in configs) or any(
        (s["spatial_dims"], s["context"]) != (settings[0]["spatial_dims"], settings[0]["context"]) for s in settings
    ):
        raise PipelineError(f"the runs under {model_dir} differ in preprocessing or network input; ensemble like runs")
    return LoadedModel(networks, runs, configs[0], settings[0], target, args[0])
