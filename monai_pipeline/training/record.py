"""The run record: what a trained run folder needs, beside its weights, to be used for inference on its own."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from monai_pipeline import __version__
from monai_pipeline.io.writer import atomic_path
from monai_pipeline.training.distributed import is_rank_zero

__all__ = ["RUN_RECORD", "write_run_record", "read_run_record"]

RUN_RECORD = "run.json"


def write_run_record(
    output_dir: str | os.PathLike[str], network: dict[str, Any], inference: dict[str, Any], **details: Any
) -> Path:
    """Write ``run.json`` into the run folder: the network's hyper-parameters (for
    :func:`monai_pipeline.training.network.build_network`), the inference settings (patch size, dimensions, slice
    context) and any ``details`` (fold, dataset, epochs). Only rank 0 writes."""
    path = Path(output_dir) / RUN_RECORD
    if is_rank_zero():
        record = {
            "monai_pipeline_version": __version__,
            "network": dict(network),
            "inference": dict(inference),
            **details,
        }
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path


def read_run_record(output_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``run.json`` of a run folder."""
    return json.loads((Path(output_dir) / RUN_RECORD).read_text())
