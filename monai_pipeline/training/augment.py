"""Random rotation and scaling of training patches in one ``affine_grid`` + ``grid_sample`` pass.

MONAI's ``RandAffined`` builds its sampling grid in float64 through several tensor copies and tracks metadata on the
way; on a 96^3 patch that costs several times the resampling itself. This transform does the same augmentation (a
random rotation within ``rotate_range`` radians about each axis and a scale within ``1 +- scale_range`` per axis,
about the patch centre, in voxel units) with the grid built by ``torch.nn.functional.affine_grid``: the image is
sampled with trilinear interpolation, labels with nearest neighbour, on the same grid. It is for training patches
only: a MetaTensor keeps its metadata with the affine moved along, but the step is not recorded for inversion.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.utils import to_affine_nd
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import ensure_tuple_rep

__all__ = ["RandGridAffined", "mirror_transforms", "rotation_scale_matrix"]

PADDING_MODES = ("zeros", "border", "reflection")


def mirror_transforms(
    axes: Sequence[int], spatial_dims: int = 3, keys: KeysCollection = ("image", "label"), prob: float = 0.5
) -> list[MapTransform]:
    """Random mirroring of training patches: one ``RandFlipd`` per axis in ``axes`` (spatial axes of the network's
    input, 0 = x), each drawn on its own with probability ``prob``.

    The bundle mirrors no axis by default: scans are reoriented to RAS before the network sees them, so the liver is
    always on the same side, and a model that never sees a mirrored abdomen can tell the liver from the spleen by
    where it lies (nnU-Net mirrors every axis; on phantom-trained models that costs real-CT Dice). The axes are
    recorded in ``run.json``, and test-time augmentation mirrors those axes only.

    Raises:
        ValueError: an axis outside ``0 .. spatial_dims - 1`` or listed twice.
    """
    from monai.transforms import RandFlipd

    axes = [int(axis) for axis in axes]
    if any(not 0 <= axis < spatial_dims for axis in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"mirror_axes must be distinct axes in 0..{spatial_dims - 1}, got {axes}.")
    return [RandFlipd(keys=keys, prob=prob, spatial_axis=axis) for axis in axes]


def rotation_scale_matrix(angles: Sequence[float], scales: Sequence[float]) -> np.ndarray:
    """The ``d x d`` matrix (d = 2 or 3) that rotates by ``angles`` (radians; one angle in 2D, one per axis in 3D,
    applied about the first, second, then third axis) after scaling each axis by ``scales``."""
    dims = len(scales)
    if dims == 2:
        (angle,) = angles
        cos, sin = math.cos(angle), math.sin(angle)
        rotation = np.array([[cos, -sin], [sin, cos]])
    elif dims == 3:
        rotation = np.eye(3)
        for axis, angle in enumerate(angles):
            cos, sin = math.cos(angle), math.sin(angle)
            first, second = [a for a in range(3) if a != axis]
            turn = np.eye(3)
            turn[first, first], turn[first, second], turn[second, first], turn[second, second] = cos, -sin, sin, cos
            rotation = turn @ rotation
    else:
        raise ValueError(f"rotation needs 2 or 3 spatial dimensions, got {dims}.")
    return rotation @ np.diag(scales)


def sampling_grid(matrix: np.ndarray, shape: Sequence[int]) -> torch.Tensor:
    """The ``grid_sample`` grid (1, *shape, d) that maps each output voxel ``x`` to the input point
    ``centre + matrix @ (x - centre)``, in voxel units, through ``affine_grid``'s normalised coordinates
    (align_corners=True: -1 and 1 are the centres of the first and last voxels; the last grid axis lists the
    spatial axes in reverse order)."""
    half = np.array([max(size - 1, 1) / 2 for size in shape])
    normalised = matrix * half[None, :] / half[:, None]  # diag(1/half) @ matrix @ diag(half)
    reverse = normalised[::-1, ::-1]
    theta = torch.zeros(1, len(shape), len(shape) + 1, dtype=torch.float32)
    theta[0, :, :-1] = torch.from_numpy(reverse.copy())
    return F.affine_grid(theta, [1, 1, *shape], align_corners=True)


class RandGridAffined(RandomizableTransform, MapTransform):
    """Dictionary transform: with probability ``prob``, rotate and scale all ``keys`` of a sample by one random affine
    about the patch centre, the output keeping the input's shape.

    Args:
        keys: the tensors (C, *spatial) to transform, all of one spatial shape.
        prob: probability of transforming a sample.
        rotate_range: largest rotation in radians, one value for all axes or one per axis (2D: one angle); angles
            are drawn from ``[-r, r]`` (symmetric, unlike ``RandAffined``'s optional ``(min, max)`` pairs).
        scale_range: largest relative scale change, one value or one per spatial axis: each axis is scaled by a
            factor drawn from ``[1 - s, 1 + s]``.
        mode: ``"bilinear"`` (trilinear in 3D) or ``"nearest"``, one for all keys or one per key; integer tensors
            (labels) are always sampled with ``"nearest"`` and keep their dtype.
        padding_mode: how points outside the patch are filled: ``"zeros"``, ``"border"`` or ``"reflection"``.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        rotate_range: float | Sequence[float] = 0.0,
        scale_range: float | Sequence[float] = 0.0,
        mode: str | Sequence[str] = "bilinear",
        padding_mode: str = "border",
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.rotate_range = rotate_range
        self.scale_range = scale_range
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        for mode_name in self.mode:
            if mode_name not in ("bilinear", "nearest"):
                raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode_name!r}.")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}.")
        self.padding_mode = padding_mode
        self.matrix: np.ndarray | None = None

    def randomize(self, dims: int) -> None:  # type: ignore[override]
        """Draw whether to transform and, if so, the matrix for ``dims`` spatial dimensions."""
        super().randomize(None)
        if not self._do_transform:
            self.matrix = None
            return
        n_angles = 1 if dims == 2 else 3
        rotate = np.asarray(ensure_tuple_rep(self.rotate_range, n_angles), dtype=float)
        scale = np.asarray(ensure_tuple_rep(self.scale_range, dims), dtype=float)
        angles = self.R.uniform(-rotate, rotate)
        scales = 1.0 + self.R.uniform(-scale, scale)
        self.matrix = rotation_scale_matrix(angles, scales)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        keys = list(self.key_iterator(d))
        if not keys:
            return d
        shape = tuple(d[keys[0]].shape[1:])
        self.randomize(len(shape))
        if self.matrix is None:
            return d
        grid = sampling_grid(self.matrix, shape)
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.resample(d[key], grid, mode)
        return d

    def voxel_map(self, shape: Sequence[int]) -> np.ndarray:
        """The homogeneous matrix that maps an output voxel index to the input voxel index it was sampled from."""
        assert self.matrix is not None
        centre = (np.asarray(shape, dtype=float) - 1) / 2
        mapping = np.eye(len(shape) + 1)
        mapping[:-1, :-1], mapping[:-1, -1] = self.matrix, centre - self.matrix @ centre
        return mapping

    def resample(self, img: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
        """Sample ``img`` (C, *spatial) at ``grid``."""
        tensor = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        if tuple(tensor.shape[1:]) != tuple(grid.shape[1:-1]):
            raise ValueError(f"all keys need one spatial shape, got {tuple(tensor.shape[1:])} and {grid.shape[1:-1]}.")
        integer = not tensor.is_floating_point()
        source = tensor.float()  # no copy when it already is float32
        sampled = F.grid_sample(
            source[None],
            grid.to(source.device),
            mode="nearest" if integer else mode,
            padding_mode=self.padding_mode,
            align_corners=True,
        )[0]
        sampled = sampled.to(tensor.dtype)
        if not isinstance(img, MetaTensor):
            return sampled
        # keep the metadata (so a batch collates with untransformed samples) and move the affine with the voxels
        out = MetaTensor(sampled, meta=dict(img.meta), applied_operations=list(img.applied_operations))
        affine = torch.as_tensor(img.affine, dtype=torch.float64)
        # a 2D sample made from a plain tensor carries MONAI's default 3D affine: embed the 2D map in it
        mapping = torch.as_tensor(to_affine_nd(affine.shape[0] - 1, self.voxel_map(tensor.shape[1:])))
        out.affine = affine @ mapping
        return out
