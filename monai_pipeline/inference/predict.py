"""Predict class probabilities for a scan: the shared preprocessing, sliding windows, mirroring TTA, fold averaging,
and the way back onto the scan's own grid."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from typing import NamedTuple

import numpy as np
import SimpleITK as sitk
import torch
from monai.inferers import SlidingWindowInferer

from monai_pipeline.inference.model import LoadedModel
from monai_pipeline.inference.postprocess import most_probable_foreground
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.crop import array_box, crop_geometry
from monai_pipeline.preprocessing.pipeline import PreprocessedCase, preprocess
from monai_pipeline.preprocessing.resample import resample_onto
from monai_pipeline.training.inferers import SliceStackInferer

logger = logging.getLogger(__name__)

__all__ = ["Prediction", "predict_probabilities", "probabilities_to_labels", "probability_image", "SLAB_VOXELS"]

SLAB_VOXELS = 16_000_000
"""Voxels of the scan's grid restored at a time, which bounds the memory of going back to the scan's grid."""


class Prediction(NamedTuple):
    """What :func:`predict_probabilities` gives.

    Attributes:
        probabilities: softmax (C, z, y, x) float32 on the preprocessed grid.
        prepared: the preprocessed case (its image's grid is the probabilities' grid).
        tta_dice: with ``tta``, the lowest liver (liver + tumour) Dice between a mirrored input's prediction and the
            unmirrored one of the same network; ``None`` without.
    """

    probabilities: np.ndarray
    prepared: PreprocessedCase
    tta_dice: float | None


def predict_probabilities(
    image: sitk.Image,
    model: LoadedModel,
    *,
    tta: bool = False,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
) -> Prediction:
    """Softmax probabilities (C, z, y, x) float32 on the preprocessed grid, averaged over folds and mirrorings.

    Args:
        image: the CT in HU on its own grid.
        model: the loaded networks.
        tta: also predict on every mirroring of the axes the model was trained to see mirrored (``mirror_axes`` in
            its ``run.json``; every in-plane (2D) or all three (3D) axes for runs that do not record them) and
            average. A model trained without mirroring has nothing to average: a warning says so.
        overlap: sliding-window overlap (default: the run's).
        sw_batch_size: windows per network call (default: the run's).

    Returns:
        The probabilities, the preprocessed case and, with ``tta``, how well the mirrored predictions agree.
    """
    prepared = preprocess(image, model.preprocessing)
    # the network was trained on tensors as MONAI loads NIfTI: index order (x, y, z), i.e. SimpleITK's array reversed
    volume = torch.from_numpy(np.ascontiguousarray(sitk.GetArrayViewFromImage(prepared.image).transpose(2, 1, 0)))
    volume = volume[None, None].to(model.device)
    inferer = _inferer(model, volume, overlap, sw_batch_size)
    spatial_dims = int(model.inference["spatial_dims"])
    total: torch.Tensor | None = None
    count = 0
    agreement: list[float] = []
    autocast = torch.autocast("cuda") if model.device.type == "cuda" else nullcontext()
    with torch.inference_mode(), autocast:
        for network in model.networks:
            unmirrored = None
            for dims in _mirrorings(spatial_dims, tta, model.inference.get("mirror_axes")):
                flipped = torch.flip(volume, dims) if dims else volume
                probabilities = torch.softmax(inferer(flipped, network).float(), dim=1)
                probabilities = torch.flip(probabilities, dims) if dims else probabilities
                if tta:
                    liver = _liver(probabilities)
                    if unmirrored is None:
                        unmirrored = liver
                    else:
                        agreement.append(_dice(liver, unmirrored))
                total = probabilities if total is None else total + probabilities
                count += 1
    result = (total / count)[0].cpu().numpy()
    tta_dice = min(agreement) if agreement else None
    return Prediction(np.ascontiguousarray(result.transpose(0, 3, 2, 1)), prepared, tta_dice)


def _liver(probabilities: torch.Tensor) -> torch.Tensor:
    """Where liver or tumour beats background (as :func:`~monai_pipeline.inference.postprocess.most_probable_foreground`
    decides) in (B, C, ...) probabilities: a boolean mask on the network's grid."""
    return (probabilities[:, 1] > probabilities[:, 0]) | (probabilities[:, 2] > probabilities[:, 0])


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    """Dice of two boolean masks (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _mirrorings(spatial_dims: int, tta: bool, trained: Sequence[int] | None = None) -> Iterator[tuple[int, ...]]:
    """The tensor dims to flip for each prediction: none, then (with ``tta``) every combination of the mirrored axes.

    Args:
        spatial_dims: 2 or 3.
        tta: mirror at all.
        trained: the spatial axes training mirrored (``None``: a run that does not record them, all axes).
    """
    axes = tuple(a + 2 for a in trained) if trained is not None else ((2, 3) if spatial_dims == 2 else (2, 3, 4))
    if not tta or not axes:
        if tta:
            logger.warning("--tta: the model was trained without mirroring, so there is nothing to average")
        yield ()
        return
    for count in range(len(axes) + 1):
        yield from itertools.combinations(axes, count)


def _inferer(model: LoadedModel, volume: torch.Tensor, overlap: float | None, sw_batch_size: int | None):
    if model.inferer is not None and overlap is None and sw_batch_size is None:
        return model.inferer
    settings = model.inference
    overlap = float(settings.get("overlap", 0.25) if overlap is None else overlap)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be >= 0 and < 1, got {overlap}.")
    batch = int(settings.get("sw_batch_size", 4) if sw_batch_size is None else sw_batch_size)
    if int(settings["spatial_dims"]) == 2:
        return SliceStackInferer(settings["roi_size"], settings["context"], batch, overlap)
    return SlidingWindowInferer(
        roi_size=settings["roi_size"],
        sw_batch_size=batch,
        overlap=overlap,
        mode="gaussian",
        sw_device=model.device,
        device=_stitching_device(model.device, volume, int(model.network_args.get("out_channels", 3))),
    )


def _stitching_device(device: torch.device, volume: torch.Tensor, channels: int) -> torch.device:
    """Stitch windows on the GPU when the output fits comfortably in its free memory, else on the CPU."""
    if device.type != "cuda":
        return device
    free, _ = torch.cuda.mem_get_info(device)
    needed = volume.numel() * channels * 4 * 2  # output and the blending weights
    return device if needed < 0.5 * free else torch.device("cpu")


def probability_image(probabilities: np.ndarray, channel: int, grid: Geometry) -> sitk.Image:
    """One channel of (C, z, y, x) probabilities as a SimpleITK image on ``grid``."""
    return grid.apply(sitk.GetImageFromArray(probabilities[channel]))


def probabilities_to_labels(
    probabilities: np.ndarray, grid: Geometry, original: Geometry, region: np.ndarray | None = None
) -> np.ndarray:
    """Labels (z, y, x) uint8 on the scan's grid: the liver and tumour probabilities are interpolated linearly
    onto it (through physical space, so any orientation, crop or spacing is undone) and the most probable class is
    taken, background being 1 - liver - tumour. Done in slabs of the scan's grid to bound memory, and only inside
    the box of the scan's grid that can hold liver or tumour (see :func:`_foreground_extent`).

    Args:
        probabilities: (C, z, y, x) softmax probabilities on ``grid``.
        grid: the preprocessed grid.
        original: the scan's grid.
        region: optional (z, y, x) boolean mask on ``grid``: outside it liver and tumour count as 0 (background),
            e.g. :func:`~monai_pipeline.inference.postprocess.largest_foreground` of the probabilities.
    """
    labels = np.zeros(original.shape, dtype=np.uint8)
    liver, tumour = probabilities[1], probabilities[2]
    if region is not None:
        liver, tumour = np.where(region, liver, np.float32(0)), np.where(region, tumour, np.float32(0))
    extent = _foreground_extent(liver, tumour, grid, original)
    if extent is None:
        return labels
    (x0, y0, z0), (width, height, depth) = extent
    liver_image, tumour_image = grid.apply(sitk.GetImageFromArray(liver)), grid.apply(sitk.GetImageFromArray(tumour))
    del liver, tumour
    slab = max(1, SLAB_VOXELS // (width * height))
    for start in range(z0, z0 + depth, slab):
        size = min(slab, z0 + depth - start)
        part = crop_geometry(original, ((x0, y0, start), (width, height, size)))
        liver_part = resample_onto(liver_image, part, "linear")
        tumour_part = resample_onto(tumour_image, part, "linear")
        p_liver, p_tumour = sitk.GetArrayViewFromImage(liver_part), sitk.GetArrayViewFromImage(tumour_part)
        background = 1.0 - p_liver - p_tumour
        # argmax over (background, liver, tumour), the first on a tie, without stacking three more slab-size arrays
        slab_labels = labels[start : start + size, y0 : y0 + height, x0 : x0 + width]
        slab_labels[p_liver > background] = 1
        slab_labels[(p_tumour > p_liver) & (p_tumour > background)] = 2
    return labels


def _foreground_extent(liver: np.ndarray, tumour: np.ndarray, grid: Geometry, original: Geometry):
    """The index box (start, size) of the scan's grid outside of which every voxel is background, or ``None``.

    A linearly interpolated point is a weighted mean of the grid voxels around it (within one voxel; beyond the
    grid it is the border voxel or 0), so where background is the most probable class at every one of them it is
    also at the point. Only points within one voxel of a grid voxel where liver or tumour wins can be foreground:
    the box of those voxels, widened by one voxel, is mapped into the scan's grid (with a voxel to spare).
    """
    box = array_box(most_probable_foreground(liver, tumour))
    if box is None:
        return None
    low = np.asarray(box[0], dtype=float) - 1
    high = np.asarray(box[0], dtype=float) + np.asarray(box[1])  # one past the last voxel: its one-voxel margin
    corners = np.array(list(itertools.product(*zip(low, high))))
    index = original.to_index(grid.to_physical(corners))
    start = np.maximum(np.floor(index.min(axis=0)).astype(int) - 1, 0)
    stop = np.minimum(np.ceil(index.max(axis=0)).astype(int) + 2, np.asarray(original.size))
    if np.any(stop <= start):
        return None
    return tuple(int(v) for v in start), tuple(int(v) for v in stop - start)
