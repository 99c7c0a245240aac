"""A PNG preview of one segmented scan: axial, coronal and sagittal slices through the largest lesion (or the liver)
with the liver and tumours outlined and the tumour probability as a heatmap, shown as radiologists read them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from matplotlib.figure import Figure

from monai_pipeline.inference.segment import Segmentation
from monai_pipeline.io.writer import atomic_path

__all__ = ["write_preview", "WINDOW_HU", "PROBABILITY_FLOOR", "MIN_PANEL_HEIGHT"]

WINDOW_HU = (-160.0, 240.0)
"""Liver window (level 40, width 400) the CT is shown in."""

PROBABILITY_FLOOR = 0.1
"""The tumour probability is drawn only above this."""

MIN_PANEL_HEIGHT = 1 / 3
"""A panel is at least this fraction of its width high: the coronal and sagittal panels of a thin scan (a few tens of
slices) are stretched along the head-foot axis, and say by how much, rather than drawn as slivers."""

# panel name, the LPS array axis it slices (z, y, x), and the letters at its left, right, top and bottom edges
_VIEWS = (("axial", 0, "RLAP"), ("coronal", 1, "RLSI"), ("sagittal", 2, "APSI"))


def write_preview(
    image: sitk.Image,
    result: Segmentation,
    path: str | os.PathLike[str],
    tumour_probability: sitk.Image | None = None,
) -> Path:
    """Write ``path`` (PNG, atomically): three panels through the centroid of the largest lesion, else the liver's
    centre, else the volume's centre, with no patient identifier.

    Args:
        image: the CT in HU, in any orientation.
        result: its segmentation (mask on the scan's grid, lesions largest first, summary).
        path: the PNG to write.
        tumour_probability: the tumour probability on any grid covering the scan (only the three planes shown are
            interpolated from it); ``None`` uses ``result.probabilities["tumour"]`` or ``result.tumour_map``, else
            only the outlines are drawn.
    """
    if tumour_probability is None:
        tumour_probability = result.probabilities.get("tumour", result.tumour_map)
    if result.mask.GetSize() != image.GetSize():
        raise ValueError(f"mask size {result.mask.GetSize()} does not match the scan's size {image.GetSize()}.")
    # in LPS, array index 0 is the patient's right (x), anterior (y) and feet (z); an oblique scan is resampled onto
    # an axis-aligned grid so that the panels are true axial, coronal and sagittal planes
    ct, mask = sitk.DICOMOrient(image, "LPS"), sitk.DICOMOrient(result.mask, "LPS")
    grid = _axis_aligned(ct)
    if grid is not None:
        ct = sitk.Resample(ct, grid, sitk.Transform(), sitk.sitkLinear, -1024.0)
        mask = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu, labels = sitk.GetArrayViewFromImage(ct), sitk.GetArrayViewFromImage(mask)
    probability = None if tumour_probability is None else sitk.Cast(tumour_probability, sitk.sitkFloat32)
    centre = _centre(ct, result, labels)
    spacing_zyx = ct.GetSpacing()[::-1]
    extent_zyx = np.asarray(ct.GetSize()[::-1]) * spacing_zyx
    # panels side by side at one scale: each as wide as the patient is along its horizontal axis
    widths = [float(extent_zyx[2 if axis < 2 else 1]) for _, axis, _ in _VIEWS]

    figure = Figure(figsize=(12, 4.5), dpi=100, layout="constrained")
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": widths})
    heatmap = None
    for ax, (name, axis, letters), width in zip(axes, _VIEWS, widths):
        cut = [slice(None)] * 3
        cut[axis] = centre[axis]
        rows, columns = [s for a, s in enumerate(spacing_zyx) if a != axis]
        height = float(extent_zyx[1 if axis == 0 else 0])
        stretch = max(1.0, MIN_PANEL_HEIGHT * width / height)
        rows *= stretch
        flip = slice(None, None, -1) if axis else slice(None)  # coronal and sagittal: head (high z) at the top
        ax.imshow(hu[tuple(cut)][flip], cmap="gray", vmin=WINDOW_HU[0], vmax=WINDOW_HU[1], aspect=rows / columns)
        if probability is not None:
            values = _plane(probability, ct, axis, centre[axis])[flip]
            heatmap = ax.imshow(
                np.ma.masked_less_equal(values, PROBABILITY_FLOOR),
                cmap="plasma",
                vmin=0.0,
                vmax=1.0,
                alpha=0.5,
                aspect=rows / columns,
                interpolation="nearest",
            )
        drawn = labels[tuple(cut)][flip]
        for inside, colour in ((drawn >= 1, "lime"), (drawn == 2, "red")):
            if inside.any() and not inside.all():
                ax.contour(inside.astype(np.uint8), levels=[0.5], colors=colour, linewidths=1.5)
        _letters(ax, letters)
        title = name if stretch < 1.05 else f"{name} (slices stretched {stretch:.1f}x)"
        if probability is None:
            title += " (outlines only: no tumour probability)"
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    if heatmap is not None:
        figure.colorbar(heatmap, ax=list(axes), shrink=0.8, label="tumour probability")
    summary = result.summary
    figure.suptitle(
        f"liver {summary.get('liver_volume_ml', 0.0):.1f} mL   tumour {summary.get('tumour_volume_ml', 0.0):.1f} mL   "
        f"{summary.get('lesions', len(result.lesions))} lesion(s)"
        + (f" (largest shown, {result.lesions[0].volume_ml:.1f} mL)" if result.lesions else ""),
        fontsize=11,
    )
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100, facecolor="white")
    return Path(path)


def _axis_aligned(image: sitk.Image) -> sitk.Image | None:
    """An LPS-aligned grid of the image's spacing covering its field of view, or ``None`` when it is aligned."""
    if np.allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        return None
    last = np.asarray(image.GetSize()) - 1
    corners = np.array([image.TransformIndexToPhysicalPoint([int(v) for v in c * last]) for c in np.ndindex(2, 2, 2)])
    spacing = np.asarray(image.GetSpacing())
    grid = sitk.Image([int(n) for n in np.ceil(np.ptp(corners, axis=0) / spacing) + 1], sitk.sitkUInt8)
    grid.SetSpacing(spacing.tolist())
    grid.SetOrigin(corners.min(axis=0).tolist())
    return grid


def _plane(values: sitk.Image, reference: sitk.Image, axis: int, index: int) -> np.ndarray:
    """``values`` (on any grid) interpolated onto the plane ``index`` of array axis ``axis`` of ``reference``."""
    cut = [slice(None)] * 3
    cut[2 - axis] = slice(index, index + 1)  # SimpleITK indexes (x, y, z)
    plane = sitk.Resample(values, reference[tuple(cut)], sitk.Transform(), sitk.sitkLinear, 0.0)
    return sitk.GetArrayFromImage(plane).squeeze(axis)


def _centre(ct: sitk.Image, result: Segmentation, labels: np.ndarray) -> tuple[int, int, int]:
    """The (z, y, x) index of the LPS-oriented scan the panels cut through."""
    if result.lesions:
        lesion = result.lesions[0]
        point = (lesion.centroid_lps_x_mm, lesion.centroid_lps_y_mm, lesion.centroid_lps_z_mm)
        zyx = np.asarray(ct.TransformPhysicalPointToIndex(point)[::-1])
    elif np.any(labels >= 1):
        zyx = np.rint(np.argwhere(labels >= 1).mean(axis=0))
    else:
        zyx = np.asarray(labels.shape) // 2
    return tuple(int(v) for v in np.clip(zyx, 0, np.asarray(labels.shape) - 1))


def _letters(ax, letters: str) -> None:
    """The patient directions at the left, right, top and bottom edges of a panel."""
    for letter, (x, y) in zip(letters, ((0.02, 0.5), (0.98, 0.5), (0.5, 0.97), (0.5, 0.03))):
        ax.text(x, y, letter, transform=ax.transAxes, color="white", fontsize=9, ha="center", va="center")
