"""HU normalisation: a clipped window scaled to [0, 1], or nnU-Net's CT z-score."""

from __future__ import annotations

import SimpleITK as sitk

from monai_pipeline.preprocessing.config import PreprocessingConfig

__all__ = ["window", "zscore", "normalize"]


def window(image: sitk.Image, low: float, high: float) -> sitk.Image:
    """Clip HU to [low, high] and scale linearly to [0, 1] (float32)."""
    if low >= high:
        raise ValueError(f"window must have low < high, got ({low}, {high}).")
    image = sitk.Cast(image, sitk.sitkFloat32) if image.GetPixelID() != sitk.sitkFloat32 else image
    return sitk.IntensityWindowing(image, float(low), float(high), 0.0, 1.0)


def zscore(image: sitk.Image, low: float, high: float, mean: float, std: float) -> sitk.Image:
    """Clip HU to [low, high] (dataset percentiles), then subtract ``mean`` and divide by ``std`` (float32)."""
    if std <= 0:
        raise ValueError(f"std must be > 0, got {std}.")
    image = sitk.Cast(image, sitk.sitkFloat32) if image.GetPixelID() != sitk.sitkFloat32 else image
    clipped = sitk.Clamp(image, sitk.sitkFloat32, float(low), float(high))
    return sitk.ShiftScale(clipped, -float(mean), 1.0 / float(std))


def normalize(image: sitk.Image, config: PreprocessingConfig) -> sitk.Image:
    """Apply the normalisation ``config`` names to an image in HU."""
    if config.normalization == "window":
        return window(image, *config.window)
    stats = config.intensity_stats
    if stats is None:
        raise ValueError("zscore normalisation needs intensity statistics from the dataset fingerprint.")
    return zscore(image, stats.percentile_00_5, stats.percentile_99_5, stats.mean, stats.std)
