"""Transforms the training recipe needs beyond MONAI's: LiTS scoring regions and 2.5D slice stacks."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["LiTSRegions", "LiTSRegionsd", "SlicesToChannels", "SlicesToChannelsd"]


class LiTSRegions(Transform):
    """Turn a label map (1, ...) with 0 background, 1 liver, 2 tumour into the two regions LiTS scores, as binary
    channels (2, ...): channel 0 the liver including its tumours (label >= 1), channel 1 the tumour (label 2)."""

    def __call__(self, label: torch.Tensor) -> torch.Tensor:
        if label.shape[0] != 1:
            raise ValueError(f"expected a one-channel label map, got {label.shape[0]} channels.")
        return torch.cat([label >= 1, label == 2]).to(torch.float32)


class LiTSRegionsd(MapTransform):
    """Dictionary wrapper of :class:`LiTSRegions`."""

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.regions = LiTSRegions()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.regions(d[key])
        return d


class SlicesToChannels(Transform):
    """Turn a stack of axial slices into a 2D sample for 2.5D training.

    An image (C, H, W, S) becomes (C*S, H, W): the S neighbouring slices are channels. A label (1, H, W, S) keeps
    only its centre slice, (1, H, W).
    """

    def __init__(self, centre_only: bool = False) -> None:
        self.centre_only = centre_only

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if img.ndim != 4:
            raise ValueError(f"expected (C, H, W, S), got shape {tuple(img.shape)}.")
        img = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)  # the 3D affine no longer fits
        if self.centre_only:
            return img[..., img.shape[-1] // 2]
        channels, height, width, slices = img.shape
        return img.permute(0, 3, 1, 2).reshape(channels * slices, height, width)


class SlicesToChannelsd(MapTransform):
    """Dictionary wrapper of :class:`SlicesToChannels`: image keys become channel stacks, ``label_keys`` keep the
    centre slice."""

    def __init__(
        self, keys: KeysCollection, label_keys: Sequence[str] = ("label",), allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.label_keys = set(label_keys)
        self.stack, self.centre = SlicesToChannels(), SlicesToChannels(centre_only=True)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = (self.centre if key in self.label_keys else self.stack)(d[key])
        return d
