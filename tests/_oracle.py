"""An oracle "network" for inference tests, and synthetic CTs whose correct mask is known voxel by voxel.

The oracle turns each voxel's windowed intensity ``x`` back into HU (``x * 300 - 100`` for the default window) and
gives three logits whose argmax is tumour for HU in [0, 35], liver for HU in (35, 100] and background elsewhere. It
looks at nothing but the voxel itself, so when inference resamples onto the scan's own spacing (every step exact
at voxel centres) the mask must equal :func:`oracle_labels` of the scan's HU array exactly, in any orientation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from monai_pipeline.inference import LoadedModel
from monai_pipeline.preprocessing.config import DEFAULT_WINDOW, PreprocessingConfig

AIR_HU, BODY_HU, LIVER_HU, TUMOUR_HU = -1000, 150, 60, 20
"""Body tissue is brighter than the liver range so that it is background for the oracle."""

TUMOUR_RANGE = (0.0, 35.0)
LIVER_MAX = 100.0

INFERENCE_3D = {"spatial_dims": 3, "roi_size": [32, 32, 32], "context": 1, "sw_batch_size": 2, "overlap": 0.25}
INFERENCE_2D = {"spatial_dims": 2, "roi_size": [32, 32], "context": 3, "sw_batch_size": 2, "overlap": 0.25}


class HUOracle(torch.nn.Module):
    """Logits (B, 3, ...) from the HU of each voxel: background, liver (HU in (t1, liver_max]), tumour ([t0, t1]).

    The class boundaries sit half a HU outside the stated ranges, so integer HU are never on a boundary.

    Args:
        tumour: the tumour HU range (t0, t1); ``None`` for no tumour class (the liver then starts above t1 of the
            default range).
        liver_max: the top of the liver range.
        gain: steepness of the smooth steps per HU; large values make hard thresholds.
        scale: logits are ``scale`` times soft indicators; large values give near one-hot softmax.
        channel: the input channel to read (the centre of a 2.5D slice stack).
        window: the HU window of the preprocessing, to undo it.
        neighbour: ``(axis, step)`` to label each voxel from the HU of its neighbour ``step`` voxels along spatial
            ``axis`` of the network's input (0 is its first spatial axis) instead of its own; beyond the edge it
            reads 0 (air). Use a window covering the whole volume, as the neighbour of a window's edge is outside.
    """

    def __init__(
        self,
        tumour: tuple[float, float] | None = TUMOUR_RANGE,
        liver_max: float = LIVER_MAX,
        gain: float = 20.0,
        scale: float = 30.0,
        channel: int = 0,
        window: tuple[float, float] = DEFAULT_WINDOW,
        neighbour: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.with_tumour = tumour is not None
        low, high = tumour if tumour is not None else TUMOUR_RANGE
        self.edges = (low - 0.5, high + 0.5, liver_max + 0.5)
        self.gain, self.scale, self.channel = float(gain), float(scale), int(channel)
        self.window = (float(window[0]), float(window[1]))
        self.neighbour = neighbour
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        low, high = self.window
        x = x[:, self.channel : self.channel + 1].float()
        if self.neighbour is not None:
            axis, step = self.neighbour
            dim = 2 + axis
            shifted = torch.zeros_like(x)
            length = x.shape[dim] - abs(step)
            source = x.narrow(dim, max(step, 0), length)
            shifted.narrow(dim, max(-step, 0), length).copy_(source)
            x = shifted
        hu = x * (high - low) + low
        above = [torch.sigmoid(self.gain * (hu - edge)) for edge in self.edges]
        tumour = above[0] * (1 - above[1]) if self.with_tumour else torch.zeros_like(hu)
        liver = above[1] * (1 - above[2])
        return self.scale * torch.cat([1 - tumour - liver, liver, tumour], dim=1)


def oracle_labels(
    hu: np.ndarray, tumour: tuple[float, float] | None = TUMOUR_RANGE, liver_max: float = LIVER_MAX
) -> np.ndarray:
    """What :class:`HUOracle` with the same arguments says of each voxel of ``hu``, as uint8 labels."""
    hu = np.asarray(hu, dtype=np.float64)
    low, high = tumour if tumour is not None else TUMOUR_RANGE
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[(hu > high) & (hu <= liver_max)] = 1
    if tumour is not None:
        labels[(hu >= low) & (hu <= high)] = 2
    return labels


def oracle_model(
    spacing: Sequence[float],
    networks: Sequence[torch.nn.Module] | None = None,
    inference: dict | None = None,
    run: Path | None = None,
) -> LoadedModel:
    """A :class:`LoadedModel` of oracles that resamples to ``spacing`` (the scan's own, for exact results)."""
    return LoadedModel(
        networks=list(networks) if networks is not None else [HUOracle()],
        runs=[run or Path("oracle")],
        preprocessing=PreprocessingConfig(spacing=tuple(spacing)),
        inference=dict(inference or INFERENCE_3D),
        device=torch.device("cpu"),
        network_args={"out_channels": 3},
    )


def grid_points(size: Sequence[int], spacing: Sequence[float]) -> np.ndarray:
    """(z, y, x, 3) positions in mm, as (x, y, z) along the grid's own index axes, of every voxel centre relative
    to the centre of the field of view."""
    axes = [(np.arange(int(n)) - (int(n) - 1) / 2) * float(s) for n, s in zip(size, spacing)]
    return np.stack(np.meshgrid(*axes[::-1], indexing="ij")[::-1], axis=-1)


def ellipsoid(points: np.ndarray, centre: Sequence[float], semi: Sequence[float]) -> np.ndarray:
    """Which of ``points`` lie in the ellipsoid with ``centre`` and semi-axes ``semi`` (mm)."""
    return (((points - np.asarray(centre)) / np.asarray(semi)) ** 2).sum(-1) <= 1.0


def phantom_hu(
    size: Sequence[int],
    spacing: Sequence[float],
    *,
    body: tuple[Sequence[float], Sequence[float]] = ((8.0, 0.0, 4.0), (14.0, 20.0, 26.0)),
    liver: tuple[Sequence[float], Sequence[float]] = ((4.0, -3.0, 3.0), (9.0, 12.0, 14.0)),
    tumour: tuple[Sequence[float], float] = ((2.0, -6.0, 7.0), 4.5),
    noise: int = 5,
    seed: int = 0,
) -> np.ndarray:
    """A CT (z, y, x) int16 in HU: air, an ellipsoid body (150 HU) off the centre so that cropping to the body cuts
    away air, a liver ellipsoid (60 HU) and a tumour sphere (20 HU) in it, each with uniform noise of +-``noise`` HU.

    Shapes are placed in mm along the grid's own index axes, relative to the centre of the field of view; none is
    symmetric about it, so a flipped or transposed axis changes the mask.
    """
    points = grid_points(size, spacing)
    hu = np.full(points.shape[:3], AIR_HU, dtype=np.int16)
    hu[ellipsoid(points, *body)] = BODY_HU
    hu[ellipsoid(points, *liver)] = LIVER_HU
    hu[ellipsoid(points, tumour[0], (tumour[1],) * 3)] = TUMOUR_HU
    if noise:
        rng = np.random.default_rng(seed)
        soft = hu > AIR_HU
        hu[soft] += rng.integers(-noise, noise + 1, size=int(soft.sum())).astype(np.int16)
    return hu


def ct_image(hu: np.ndarray, spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]):
    """``hu`` (z, y, x) as a SimpleITK image with the given geometry."""
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction])
    return image


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean arrays (1 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def write_tiny_run(run: Path) -> Path:
    """Make ``run`` a real training-run folder: a tiny random DynUNet, its run.json and a 4 mm preprocessing."""
    from monai_pipeline.training.network import build_network
    from monai_pipeline.training.record import write_run_record

    network_args = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "filters": [4, 8, 16]}
    torch.manual_seed(0)
    torch.save(build_network(**network_args).state_dict(), run / "model.pt")
    write_run_record(run, network_args, INFERENCE_3D)
    PreprocessingConfig(spacing=(4.0, 4.0, 4.0)).save(run / "preprocessing.json")
    return run
