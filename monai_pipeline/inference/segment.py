"""Segment one scan: the Python API that takes a CT image and returns its mask in the scan's own geometry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from monai_pipeline.inference.components import value_box
from monai_pipeline.inference.lesions import Lesion, measure_lesions, scan_summary
from monai_pipeline.inference.model import LoadedModel
from monai_pipeline.inference.postprocess import PostprocessConfig, liver_region, postprocess
from monai_pipeline.inference.predict import predict_probabilities, probabilities_to_labels, probability_image
from monai_pipeline.inference.quality import (
    QualityFlag,
    confidence_flags,
    liver_flags,
    mean_entropy,
    not_a_liver,
)
from monai_pipeline.io.geometry import Geometry
from monai_pipeline.preprocessing.crop import crop_geometry
from monai_pipeline.preprocessing.resample import resample_onto

__all__ = ["Segmentation", "segment"]


@dataclass
class Segmentation:
    """The result for one scan, everything on the scan's own grid.

    Attributes:
        mask: uint8 labels 0 background, 1 liver, 2 tumour, with exactly the scan's geometry.
        lesions: the tumours, largest first.
        summary: liver and tumour volume, tumour burden, lesion count, the quality measures (``liver_entropy``,
            ``tta_liver_dice``) and the flags as dicts.
        flags: what looks wrong with the result (see :mod:`monai_pipeline.inference.quality`); empty when nothing.
        probabilities: ``{"liver": image, "tumour": image}`` float32 maps on the scan's grid when asked for.
        tumour_map: the tumour probability on the preprocessed grid (no resampling cost), for previews.
    """

    mask: sitk.Image
    lesions: list[Lesion]
    summary: dict[str, Any]
    flags: list[QualityFlag] = field(default_factory=list)
    probabilities: dict[str, sitk.Image] = field(default_factory=dict)
    tumour_map: sitk.Image | None = None


def segment(
    image: sitk.Image,
    model: LoadedModel,
    *,
    tta: bool = False,
    overlap: float | None = None,
    sw_batch_size: int | None = None,
    postprocessing: PostprocessConfig | None = None,
    probabilities: bool = False,
) -> Segmentation:
    """Segment the liver and liver tumours of a CT, and flag a result that is probably wrong.

    Args:
        image: the CT in HU (as :func:`monai_pipeline.io.read_image` returns it; check a scan of unknown origin
            with :func:`monai_pipeline.preprocessing.ensure_hu` first, as ``infer`` does).
        model: networks from :func:`monai_pipeline.inference.load_model`.
        tta: average over mirrored inputs.
        overlap: sliding-window overlap (default: the run's).
        sw_batch_size: windows per network call (default: the run's).
        postprocessing: the steps to apply (default: all on; ``PostprocessConfig.off()`` for none).
        probabilities: also return the liver and tumour probability maps on the scan's grid.
    """
    original = Geometry.of(image)
    probs, prepared, tta_dice = predict_probabilities(
        image, model, tta=tta, overlap=overlap, sw_batch_size=sw_batch_size
    )
    grid = Geometry.of(prepared.image)
    postprocessing = postprocessing or PostprocessConfig()
    # the largest liver is chosen (and a too small one dropped) on the network's grid first: the way back then skips
    # the regions it drops
    region, kept, found_ml = liver_region(probs, float(np.prod(grid.spacing)) / 1000.0, postprocessing)
    entropy = mean_entropy(probs, kept)
    del kept
    labels = probabilities_to_labels(probs, grid, original, region)
    labels = postprocess(labels, original, postprocessing, copy=False)
    whole_ml = None
    if postprocessing.min_liver_ml > 0:
        liver_ml = float(np.count_nonzero(labels)) * float(np.prod(original.spacing)) / 1000.0
        if not_a_liver(labels, original, liver_ml):  # a whole "liver" too small to be one
            labels[:] = 0
            whole_ml = liver_ml
    maps = {}
    if probabilities:
        for channel, name in ((1, "liver"), (2, "tumour")):
            maps[name] = resample_onto(probability_image(probs, channel, grid), original, "linear")
    lesions = _lesions(labels, original, probs, grid, image)
    summary = scan_summary(labels, original, lesions)
    # the network's liver is named only when post-processing left none of it
    found = None if summary["liver_volume_ml"] else found_ml
    flags = liver_flags(labels, original, summary["liver_volume_ml"], found, whole_ml)
    flags += confidence_flags(entropy, tta_dice) if summary["liver_volume_ml"] else []
    summary["liver_entropy"] = None if entropy is None else round(entropy, 4)
    summary["tta_liver_dice"] = None if tta_dice is None else round(tta_dice, 4)
    summary["flags"] = [asdict(flag) for flag in flags]
    mask = original.apply(sitk.GetImageFromArray(labels))
    return Segmentation(
        mask=mask,
        lesions=lesions,
        summary=summary,
        flags=flags,
        probabilities=maps,
        tumour_map=probability_image(probs, 2, grid),
    )


def _lesions(labels: np.ndarray, original: Geometry, probs: np.ndarray, grid: Geometry, image: sitk.Image):
    """Measure the lesions inside the tumours' bounding box only; the tumour probability is interpolated and the HU
    read slab by slab, as :func:`measure_lesions` asks for them."""
    box = value_box(labels, lambda slab: slab == 2)
    if box is None:
        return []
    part = crop_geometry(original, _index_box(box))
    tumour_image = probability_image(probs, 2, grid)
    hu = sitk.GetArrayViewFromImage(image)[box]

    def tumour(cut: tuple[slice, ...]) -> np.ndarray:
        inner = tuple(slice(*c.indices(n)[:2]) for c, n in zip(cut, part.shape))
        return sitk.GetArrayFromImage(resample_onto(tumour_image, crop_geometry(part, _index_box(inner)), "linear"))

    return measure_lesions(labels[box], part, tumour, lambda cut: hu[cut].astype(np.float32))


def _index_box(box: tuple[slice, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(start, size) along (x, y, z) of a (z, y, x) box of slices."""
    return tuple(s.start for s in box[::-1]), tuple(s.stop - s.start for s in box[::-1])
