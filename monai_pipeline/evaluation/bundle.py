"""The LiTS evaluation inside the bundle: a handler of the evaluator of ``configs/evaluate.json`` that saves every
validation case's predicted mask on its label's grid and evaluates them when the evaluator completes."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from monai_pipeline.errors import PipelineError
from monai_pipeline.evaluation.report import format_table
from monai_pipeline.evaluation.run import EvaluationResult, evaluate
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.io.reader import case_name, read_image
from monai_pipeline.io.writer import write_mask

__all__ = ["FoldEvaluation"]

logger = logging.getLogger(__name__)


class FoldEvaluation:
    """Save the evaluator's predictions and evaluate them against the fold's label files.

    For each validation case, the predicted mask (0 background, 1 liver, 2 tumour) is written as
    ``<output_dir>/predictions/<case>_seg.nii.gz`` with the exact geometry of the case's label file (the
    ``filename_or_obj`` of the label's metadata); when the evaluator completes,
    :func:`~monai_pipeline.evaluation.evaluate` compares them with the label files and writes its report into
    ``<output_dir>/lits`` (beside the CSV files of MONAI's ``MetricsSaver``).

    The evaluator's output may hold the prediction as a label map (1 channel), as the two LiTS regions of
    :class:`~monai_pipeline.training.LiTSRegionsd` (liver, tumour) or as class scores (3 channels, argmax). The
    validation data must keep the grid of the label files (no resampling or cropping); this is checked on the
    label of every case.

    Args:
        output_dir: the folder for ``predictions/`` and ``lits/``.
        pred_key: the prediction's key in the evaluator's output.
        label_key: the label's key in the evaluator's output.

    Attributes:
        result: the evaluation of the last completed run, None before.
    """

    def __init__(self, output_dir: str | os.PathLike[str], pred_key: str = "pred", label_key: str = "label") -> None:
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.label_key = label_key
        self.result: EvaluationResult | None = None
        self._predictions: list[Path] = []
        self._labels: list[Path] = []

    def attach(self, engine: Any) -> None:
        """Register with an ignite engine (the bundle's ``SupervisedEvaluator``)."""
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.save)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.finish)

    def reset(self, engine: Any = None) -> None:
        """Forget the cases of an earlier run."""
        self._predictions, self._labels = [], []

    def save(self, engine: Any) -> None:
        """Write the predicted mask of every case of the engine's current (decollated) output."""
        output = engine.state.output
        for item in output if isinstance(output, list | tuple) else [output]:
            label = item[self.label_key]
            source = getattr(label, "meta", {}).get("filename_or_obj")
            if not source:
                raise PipelineError(
                    f"the evaluator's '{self.label_key}' has no file name: keep the metadata of the validation data "
                    "(track_meta) for the LiTS evaluation"
                )
            label_path = Path(source)
            image = read_image(label_path)
            if not np.array_equal(_label_map(label).transpose(2, 1, 0), sitk.GetArrayViewFromImage(image)):
                raise PipelineError(
                    f"{label_path}: the evaluator's label differs from the label file; the LiTS evaluation needs the "
                    "validation data on the grid of its label files (no resampling or cropping in "
                    "validate#preprocessing)"
                )
            path = self.output_dir / "predictions" / f"{case_name(label_path)}_seg.nii.gz"
            write_mask(_label_map(item[self.pred_key]).transpose(2, 1, 0), Geometry.of(image), path)
            self._predictions.append(path)
            self._labels.append(label_path)

    def finish(self, engine: Any = None) -> EvaluationResult | None:
        """Evaluate the saved predictions against their label files into ``<output_dir>/lits``."""
        if not self._predictions:
            logger.warning("LiTS evaluation: the evaluator produced no prediction")
            return None
        self.result = evaluate(self._predictions, self._labels, self.output_dir / "lits", strict=True)
        table = format_table(self.result.cases, self.result.summary)
        logger.info("LiTS evaluation of %d case(s) -> %s\n%s", len(self.result.cases), self.output_dir / "lits", table)
        return self.result


def _label_map(tensor: Any) -> np.ndarray:
    """A label map (x, y, z in the array order of MONAI's readers; 0, 1, 2) from a channel-first prediction or
    label: one channel is the map itself, two are the LiTS regions (liver, tumour), more are class scores."""
    array = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)
    if array.ndim != 4:
        raise PipelineError(f"expected a channel-first 3D prediction or label, got shape {tuple(array.shape)}")
    if array.shape[0] == 1:
        return np.rint(array[0]).astype(np.uint8)
    if array.shape[0] == 2:
        liver, tumour = array[0] > 0.5, array[1] > 0.5
        return np.where(tumour, 2, np.where(liver, 1, 0)).astype(np.uint8)
    return np.argmax(array, axis=0).astype(np.uint8)
