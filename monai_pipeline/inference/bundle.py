"""The pieces the bundle's ``inference.json`` wires together; they run the same code as ``monai-pipeline infer``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from monai_pipeline.errors import InputError
from monai_pipeline.inference.model import LoadedModel
from monai_pipeline.inference.postprocess import PostprocessConfig
from monai_pipeline.inference.run import InferenceCase, InferSummary, find_scans, run_cases
from monai_pipeline.preprocessing.config import PreprocessingConfig
from monai_pipeline.training.checkpoint import BEST_NAME, load_weights
from monai_pipeline.training.inferers import SliceStackInferer
from monai_pipeline.training.record import read_run_record

__all__ = ["BundleInference", "scan_list", "make_inferer"]


def scan_list(dataset_dir: str | os.PathLike[str]) -> list[dict[str, str]]:
    """The scans at ``dataset_dir`` as MONAI data dicts ``{"image": path, "case": name}``."""
    return [{"image": str(case.path), "case": case.name} for case in find_scans(dataset_dir)]


def make_inferer(settings: Mapping[str, Any]):
    """The sliding-window inferer a run's ``run.json`` describes: 3D windows, or 2D windows over slice stacks."""
    from monai.inferers import SlidingWindowInferer

    overlap, batch = float(settings.get("overlap", 0.25)), int(settings.get("sw_batch_size", 4))
    if int(settings["spatial_dims"]) == 2:
        return SliceStackInferer(settings["roi_size"], settings["context"], batch, overlap)
    return SlidingWindowInferer(roi_size=settings["roi_size"], sw_batch_size=batch, overlap=overlap, mode="gaussian")


class BundleInference:
    """The ``evaluator`` of ``inference.json``: loads the run's weights into ``network`` and segments every scan of
    ``dataset`` with :func:`monai_pipeline.inference.run.run_cases`, writing what ``monai-pipeline infer`` writes.

    Args:
        dataset: data dicts with ``image`` (a scan file or DICOM folder) and ``case`` (the output name).
        network: the network built from the run's ``run.json``.
        inferer: the sliding-window inferer.
        model_dir: the training run folder (``model.pt``, ``run.json``, ``preprocessing.json``).
        output_dir: where the masks and reports go.
        device: where the network runs.
        tta: average over mirrored inputs.
        save_probabilities: write liver and tumour probability maps.
        preview: write PNG previews.
        postprocess: apply the post-processing.
    """

    def __init__(
        self,
        dataset: Iterable[Mapping[str, Any]],
        network: torch.nn.Module,
        inferer: Any,
        model_dir: str | os.PathLike[str],
        output_dir: str | os.PathLike[str],
        device: torch.device | str = "cpu",
        tta: bool = False,
        save_probabilities: bool = False,
        preview: bool = False,
        postprocess: bool = True,
    ) -> None:
        run = Path(model_dir)
        weights = run / BEST_NAME
        if not weights.is_file():
            raise InputError(weights, "missing: not a trained run (made by `monai-pipeline train`)")
        device = torch.device(device)
        network.load_state_dict(load_weights(weights))
        record = read_run_record(run)
        self.model = LoadedModel(
            networks=[network.to(device).eval()],
            runs=[run],
            preprocessing=PreprocessingConfig.load(run / "preprocessing.json"),
            inference=record["inference"],
            device=device,
            network_args=record["network"],
            inferer=inferer,
        )
        self.cases = [InferenceCase(str(item["case"]), Path(item["image"])) for item in dataset]
        self.output_dir = Path(output_dir)
        self.options = {
            "tta": tta,
            "save_probabilities": save_probabilities,
            "preview": preview,
            "postprocessing": PostprocessConfig() if postprocess else PostprocessConfig.off(),
        }

    def run(self) -> InferSummary:
        """Segment every scan."""
        return run_cases(self.cases, self.model, self.output_dir, **self.options)
