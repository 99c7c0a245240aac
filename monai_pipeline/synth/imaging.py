"""How a scanner images the phantom: partial volume across the slice thickness and correlated noise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["NoiseTexture", "slice_weights"]


def slice_weights(thickness: float, spacing: float) -> np.ndarray:
    """Weights over neighbouring slices that average a slab ``thickness`` mm thick from slices ``spacing`` apart.

    The slab is averaged over the linear interpolation between slices, so a slab no thicker than the spacing
    still mixes in a little of its neighbours (1/8 each when they are equal) and a thin one hardly any.

    Raises:
        ValueError: for a thickness or spacing that is not a positive number.
    """
    if not (np.isfinite(thickness) and thickness > 0 and np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"thickness and spacing must be positive (mm), got {thickness!r} and {spacing!r}.")
    width = thickness / spacing
    reach = int(np.ceil(width / 2))
    x = np.linspace(-width / 2, width / 2, 401)
    weights = np.array([np.maximum(0, 1 - np.abs(x - k)).mean() for k in range(-reach, reach + 1)])
    weights = weights[weights > 1e-3]
    return weights / weights.sum()


class NoiseTexture:
    """Noise of a given standard deviation whose power spectrum rises with frequency to a peak, then falls.

    Filtered back-projection shapes CT noise so: a ramp at low frequencies, rolled off by the reconstruction
    kernel, which gives its fine, grainy texture rather than white pixel noise.

    Args:
        shape: (rows, columns) of a slice.
        spacing: (row, column) pixel size in mm.
        sigma: standard deviation in HU.
        peak: spatial frequency (cycles/mm) at which the noise power peaks.
    """

    def __init__(self, shape: Sequence[int], spacing: Sequence[float], sigma: float, peak: float) -> None:
        rows, columns = shape
        fy = np.fft.fftfreq(rows, spacing[0])[:, None]
        full = np.hypot(fy, np.fft.fftfreq(columns, spacing[1])[None, :])
        half = np.hypot(fy, np.fft.rfftfreq(columns, spacing[1])[None, :])

        def filter_of(f: np.ndarray) -> np.ndarray:
            return np.sqrt((f + 0.05 * peak) * np.exp(-(f**2) / (2 * peak**2)))

        self.shape = (rows, columns)
        self.filter = (filter_of(half) * (sigma / np.sqrt(np.mean(filter_of(full) ** 2)))).astype(np.complex64)

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One slice of noise (float32)."""
        white = rng.standard_normal(self.shape, dtype=np.float32)
        return np.fft.irfft2(np.fft.rfft2(white) * self.filter, s=self.shape).astype(np.float32)
