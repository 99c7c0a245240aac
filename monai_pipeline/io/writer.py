"""Write images atomically: a file appears whole under its final name or not at all."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from monai_pipeline.io.geometry import Geometry

__all__ = ["atomic_path", "remove_partial_files", "write_image", "write_mask"]


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` (same endings) and rename it to ``path`` when the block succeeds.

    On any error the temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name
    stem, dot, endings = name.partition(".")
    tmp = path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{dot}{endings}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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
        sitk.WriteImage(clean, str(tmp), useCompression=True, compressionLevel=compression_level)
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


_TEMPORARY = re.compile(r"^\..+\.tmp-[0-9a-f]{8}(\..*)?$")


def remove_partial_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files :func:`atomic_path` left in ``folder`` when a process was killed mid-write (a
    kill -9 skips the clean-up); a re-run calls this before writing again. Returns the files removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [path for path in folder.iterdir() if _TEMPORARY.match(path.name) and path.is_file()]
    for path in removed:
        path.unlink(missing_ok=True)
    return removed
