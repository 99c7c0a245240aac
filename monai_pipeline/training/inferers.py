"""Inference of a 2D (or 2.5D) network over a 3D volume, axial slice by axial slice."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, sliding_window_inference

__all__ = ["SliceStackInferer"]


class SliceStackInferer(Inferer):
    """Run a 2D network on every axial slice of a volume (B, C, H, W, D), giving it the ``context`` neighbouring
    slices as channels (2.5D; ``context=1`` is plain 2D), with sliding windows of ``roi_size`` in-plane.

    Slices beyond the ends of the volume repeat the end slice. The output is (B, K, H, W, D).

    Args:
        roi_size: in-plane window (H, W) of the network.
        context: number of neighbouring slices stacked as channels; odd.
        sw_batch_size: windows per network call.
        overlap: sliding-window overlap in-plane.
        mode: ``"gaussian"`` or ``"constant"`` blending of windows.
        slices_per_chunk: slices processed together (bounds memory).
    """

    def __init__(
        self,
        roi_size: Sequence[int],
        context: int = 1,
        sw_batch_size: int = 4,
        overlap: float = 0.25,
        mode: str = "gaussian",
        slices_per_chunk: int = 32,
    ) -> None:
        super().__init__()
        if context < 1 or context % 2 == 0:
            raise ValueError(f"context must be a positive odd number of slices, got {context}.")
        if len(roi_size) != 2:
            raise ValueError(f"roi_size must be 2D (H, W), got {roi_size}.")
        self.roi_size, self.context = tuple(int(r) for r in roi_size), int(context)
        self.sw_batch_size, self.overlap, self.mode = sw_batch_size, overlap, mode
        self.slices_per_chunk = slices_per_chunk

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args, **kwargs) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"expected a volume (B, C, H, W, D), got shape {tuple(inputs.shape)}.")
        half = self.context // 2
        padded = F.pad(inputs, (half, half, 0, 0, 0, 0), mode="replicate") if half else inputs
        depth = inputs.shape[-1]
        outputs = []
        for batch in range(inputs.shape[0]):
            chunks = []
            for start in range(0, depth, self.slices_per_chunk):
                stop = min(depth, start + self.slices_per_chunk)
                # (C, H, W, slices, context) -> (slices, C * context, H, W), as SlicesToChannels orders them
                window = padded[batch, ..., start : stop + 2 * half].unfold(-1, self.context, 1)
                stacks = window.permute(3, 0, 4, 1, 2).reshape(stop - start, -1, *inputs.shape[2:4])
                chunks.append(
                    sliding_window_inference(
                        stacks, self.roi_size, self.sw_batch_size, network, self.overlap, self.mode, *args, **kwargs
                    )
                )
            outputs.append(torch.cat(chunks).permute(1, 2, 3, 0))
        return torch.stack(outputs)
