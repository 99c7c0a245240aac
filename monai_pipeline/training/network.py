"""The segmentation network: MONAI's DynUNet (an nnU-Net-style U-Net), built from a few hyper-parameters."""

from __future__ import annotations

from collections.abc import Sequence

from monai.networks.nets import DynUNet

__all__ = ["build_network"]


def build_network(
    spatial_dims: int = 3,
    in_channels: int = 1,
    out_channels: int = 3,
    filters: Sequence[int] = (32, 64, 128, 256, 320),
    norm: str = "instance",
    res_block: bool = True,
    dropout: float | None = None,
) -> DynUNet:
    """A DynUNet with 3x3(x3) kernels and one stride-2 downsampling per level after the first.

    Args:
        spatial_dims: 3 for volumes, 2 for (2.5D) slices.
        in_channels: input channels (1 for CT; the number of stacked slices in 2.5D).
        out_channels: classes (3: background, liver, tumour).
        filters: feature maps per level; the depth is ``len(filters)`` and patches must be divisible by
            ``2 ** (len(filters) - 1)``.
        norm: ``"instance"`` or ``"batch"``.
        res_block: residual blocks (as nnU-Net's ResEnc variants).
        dropout: dropout probability, or ``None``.
    """
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
    if len(filters) < 3:
        raise ValueError(f"filters needs at least 3 levels (DynUNet's minimum), got {list(filters)}.")
    levels = len(filters)
    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        kernel_size=[[3] * spatial_dims] * levels,
        strides=[[1] * spatial_dims] + [[2] * spatial_dims] * (levels - 1),
        upsample_kernel_size=[[2] * spatial_dims] * (levels - 1),
        filters=list(filters),
        norm_name=norm,
        res_block=res_block,
        dropout=dropout,
    )
