"""Write images atomically: a file appears whole under its final name or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from monai_pipeline.io.atomic import atomic_path, check_output, native_stderr
from monai_pipeline.io.geometry import Geometry

__all__ = ["atomic_path", "write_image", "write_mask"]


def write_image(image: sitk.Image, path: str | os.PathLike[str], *, compression_level: int = 1) -> Path:
    """Write a SimpleITK image (format chosen by the ending of ``path``) without any of its metadata.

    Args:
        image: the image; its metadata dictionary is not written, only pixels and geometry.
        path: where to write it; parent folders are made.
        compression_level: zlib level for compressed formats (.nii.gz); 1 is fast and near the best size for CT.
    """
    clean = image
    if image.GetMetaDataKeys():
        clean = sitk.Image(image)
        clean.MakeUnique()
        for key in clean.GetMetaDataKeys():
            clean.EraseMetaData(key)
    with atomic_path(path) as tmp:
        with native_stderr() as printed:  # niftilib reports a short write (a full disk) only here
            sitk.WriteImage(clean, str(tmp), useCompression=True, compressionLevel=compression_level)
        check_output(printed)
    return Path(path)


def write_mask(mask: np.ndarray, geometry: Geometry, path: str | os.PathLike[str]) -> Path:
    """Write a label array (z, y, x) as uint8 with exactly ``geometry``.

    Raises:
        ValueError: when the array's shape does not match the geometry.
    """
    if tuple(mask.shape) != geometry.shape:
        raise ValueError(f"mask shape {mask.shape} does not match the geometry's (z, y, x) shape {geometry.shape}.")
    image = sitk.GetImageFromArray(np.asarray(mask, dtype=np.uint8))
    return write_image(geometry.apply(image), path)
