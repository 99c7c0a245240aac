"""Export a trained network to TorchScript or ONNX, checked against PyTorch, with a JSON sidecar that tells how to
feed it, so that the exported file can be deployed without this package."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_pipeline import __version__
from monai_pipeline.errors import PipelineError
from monai_pipeline.inference.model import LoadedModel, load_model
from monai_pipeline.io.writer import atomic_path

__all__ = ["export_model", "FORMATS"]

logger = logging.getLogger(__name__)

FORMATS = {"torchscript": "ts", "onnx": "onnx"}
"""Export formats and the ending of their default file name (``RUN/model.ts``, ``RUN/model.onnx``)."""

INSTALL_HINT = "pip install 'monai-pipeline[export]'"


def export_model(
    model_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    format: str = "torchscript",
    folds: Sequence[int | str] | None = None,
    *,
    tolerance: float = 1e-4,
) -> Path:
    """Export the network of a training run and write ``<out_path>.json`` beside it.

    The exported network maps a batch of preprocessed patches of the run's patch size (dynamic batch axis) to the
    logits of background, liver and tumour. It is run on a random patch and compared with the PyTorch network.

    Args:
        model_dir: a run folder (or bundle, or folder of folds; see :func:`monai_pipeline.inference.find_runs`).
        out_path: the file to write (default: ``model.ts`` or ``model.onnx`` in the run folder).
        format: ``"torchscript"`` or ``"onnx"``.
        folds: the fold to export; when ``model_dir`` holds several runs, the first one is exported.
        tolerance: largest allowed difference of the logits, relative to their largest magnitude (at least 1).

    Raises:
        PipelineError: an unknown format, a missing ONNX package, or an export that differs from PyTorch.
        InputError: the run is missing or incomplete.
    """
    if format not in FORMATS:
        raise PipelineError(f"unknown export format '{format}' (choose from {', '.join(FORMATS)})")
    model = load_model(model_dir, folds, device="cpu")
    if len(model.runs) > 1:
        logger.warning("%s holds %d runs; exporting the first, %s", model_dir, len(model.runs), model.runs[0])
    out = Path(out_path) if out_path is not None else model.runs[0] / f"model.{FORMATS[format]}"
    if out.is_dir():
        raise PipelineError(f"{out}: is a folder; give the file to write with --output")
    network = model.networks[0]
    shape = _input_shape(model)
    example = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    patch = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))  # batch of 2: the batch axis is dynamic
    with torch.inference_mode():
        expected = network(patch).numpy()
    with atomic_path(out) as tmp:
        if format == "torchscript":
            _to_torchscript(network, tmp)
            with torch.inference_mode():
                actual, checked_with = torch.jit.load(str(tmp), map_location="cpu")(patch).numpy(), "torch.jit.load"
        else:
            _to_onnx(network, example, tmp)
            actual, checked_with = _run_onnx(tmp, patch.numpy())
        difference = None if actual is None else float(np.abs(actual - expected).max())
        scale = max(1.0, float(np.abs(expected).max()))
        if difference is not None and not difference <= tolerance * scale:
            raise PipelineError(
                f"the {format} export of {model.runs[0]} differs from the PyTorch network: largest logit difference "
                f"{difference:.3g} > {tolerance * scale:.3g}; nothing written"
            )
    check = {"checked_with": checked_with, "max_abs_difference": difference, "allowed": tolerance * scale}
    _write_sidecar(out, format, model, shape, check)
    return out


def _input_shape(model: LoadedModel) -> tuple[int, ...]:
    """(channels, *patch) of one network input: one CT channel in 3D, ``context`` stacked slices in 2.5D."""
    settings = model.inference
    default = int(settings.get("context", 1)) if int(settings["spatial_dims"]) == 2 else 1
    return (int(model.network_args.get("in_channels", default)), *(int(n) for n in settings["roi_size"]))


def _to_torchscript(network: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*TorchScript type system.*", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=DeprecationWarning)
        scripted = torch.jit.script(network)
    torch.jit.save(scripted, str(path))


def _to_onnx(network: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """The torch.export-based exporter (needs ``onnx`` and ``onnxscript``), weights inside the file."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise PipelineError(f"ONNX export needs the packages onnx and onnxscript: {INSTALL_HINT}") from err
    exporter_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it lists every torchvision operator it skips
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)  # torch's internals
            torch.onnx.export(
                network,
                (example,),
                str(path),
                input_names=["image"],
                output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False,
                dynamo=True,
                verbose=False,
            )
    finally:
        exporter_log.setLevel(level)


def _run_onnx(path: Path, patch: np.ndarray) -> tuple[np.ndarray | None, str]:
    """The ONNX model's logits with onnxruntime; without it, only ``onnx.checker`` (and no logits)."""
    try:
        import onnxruntime
    except ImportError:
        import onnx

        try:
            onnx.checker.check_model(str(path), full_check=True)
        except onnx.checker.ValidationError as err:
            raise PipelineError(f"the ONNX export is not a valid model: {str(err).splitlines()[0]}") from err
        logger.warning("onnxruntime is not installed: the ONNX file was only checked, not run (%s)", INSTALL_HINT)
        return None, "onnx.checker"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], {"image": patch})[0], "onnxruntime"


def _write_sidecar(out: Path, format: str, model: LoadedModel, shape: tuple[int, ...], check: dict[str, Any]) -> Path:
    spatial_dims = int(model.inference["spatial_dims"])
    axes = "(batch, channel, x, y, z)" if spatial_dims == 3 else "(batch, channel, x, y)"
    channels = (
        "1: the CT preprocessed as 'preprocessing' says (reoriented, resampled, normalised)"
        if spatial_dims == 3
        else f"{shape[0]}: neighbouring slices of the preprocessed CT along its third axis, in increasing index "
        f"(towards {model.preprocessing.orientation[2]}), the slice to segment in the middle; beyond the ends of the "
        "volume the end slice repeats"
    )
    labels = model.preprocessing.labels
    record = {
        "file": out.name,
        "format": format,
        "monai_pipeline_version": __version__,
        "run": str(model.runs[0]),
        "input": {
            "name": "image",
            "shape": ["batch", *shape],
            "dtype": "float32",
            "axes": f"{axes}: the preprocessed image's SimpleITK array reversed, as MONAI loads NIfTI",
            "channels": channels,
        },
        "output": {
            "name": "logits",
            "shape": ["batch", int(model.network_args.get("out_channels", len(labels))), *shape[1:]],
            "dtype": "float32",
            "channels": [labels[key] for key in sorted(labels, key=int)],
            "meaning": "logits: softmax over the channel axis gives the class probabilities",
        },
        "inference": model.inference,
        "network": model.network_args,
        "preprocessing": model.preprocessing.to_dict(),
        "verification": check,
    }
    path = out.with_name(out.name + ".json")
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path
