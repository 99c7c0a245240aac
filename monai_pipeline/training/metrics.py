"""Output transforms that pick one LiTS region (0 liver, 1 tumour) for a per-region metric."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from monai.handlers import from_engine

__all__ = ["region_output"]


def region_output(channel: int) -> Callable[[Sequence[dict[str, Any]]], tuple[list[Any], list[Any]]]:
    """An ignite ``output_transform`` giving (predictions, labels) of one region channel of the evaluator's
    decollated output (after :class:`~monai_pipeline.training.transforms.LiTSRegionsd`)."""
    pick = from_engine(["pred", "label"])

    def transform(output: Sequence[dict[str, Any]]) -> tuple[list[Any], list[Any]]:
        preds, labels = pick(output)
        return [p[channel : channel + 1] for p in preds], [lab[channel : channel + 1] for lab in labels]

    return transform
