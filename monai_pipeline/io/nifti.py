"""Checks SimpleITK's NIfTI reader skips: it zero-fills a truncated file, turns NaN voxels into 0, and takes 1 mm for
a spacing of 0 that no sform or qform gives."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.imageglobals import LoggingOutputSuppressor
from nibabel.openers import ImageOpener

from monai_pipeline.errors import InputError
from monai_pipeline.io.geometry import shear_problem

__all__ = ["check_nifti"]

_CHUNK = 1 << 22


def check_nifti(path: Path) -> bool:
    """Raise :class:`InputError` when a NIfTI file holds less data than its header promises, (for float data) NaN
    or infinite voxels, or axes that are not orthogonal; return whether its header gives the voxel spacing.

    The spacing is missing when, with no sform or qform, pixdim is 0: ITK then reads 1 mm, a guess. An sform or
    qform with an axis of length 0 is refused.

    A complete .nii.gz is recognised from the length in its gzip trailer without decompressing it; only when that
    does not match is the stream decompressed to count its bytes.
    """
    try:
        with LoggingOutputSuppressor():  # nibabel says it sets a pixdim of 0 to 1: that guess is not taken here
            loaded = nib.load(str(path))
        header, offset = loaded.header, int(loaded.dataobj.offset)
        with ImageOpener(str(path)) as stream:
            raw = type(header).from_fileobj(stream, check=False)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a damaged header
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(path, f"cannot be read as an image (corrupt or truncated?): {first}") from err
    axes = min(3, len(raw.get_data_shape()))
    spacing_known = True
    if raw["sform_code"] > 0 or raw["qform_code"] > 0:
        matrix = raw.get_best_affine()[:3, :3]
        if not _positive(np.linalg.norm(matrix[:, :axes], axis=0)):
            raise InputError(path, "spacing 0 in the header (an axis of its sform or qform has length 0)")
        problem = shear_problem(matrix)
        if problem is not None:
            raise InputError(path, problem)
    else:
        spacing_known = _positive(np.abs(np.asarray(raw["pixdim"][1 : 1 + axes], dtype=float)))
    expected = offset + int(np.prod(header.get_data_shape())) * header.get_data_dtype().itemsize
    available = _gzip_length(path, expected) if path.name.lower().endswith(".gz") else path.stat().st_size
    if available < expected:
        raise InputError(path, f"truncated: {available} of {expected} bytes of image data present")
    if np.issubdtype(header.get_data_dtype(), np.floating):
        values = np.asanyarray(nib.load(str(path)).dataobj)
        if not np.isfinite(values).all():
            count = int(np.count_nonzero(~np.isfinite(values)))
            raise InputError(path, f"image holds {count} NaN or infinite voxel(s)")
    return spacing_known


def _positive(lengths: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(lengths) & (lengths > 0)))


def _gzip_length(path: Path, expected: int) -> int:
    """The decompressed length of a gzip file: from its trailer when that equals ``expected``, else counted."""
    with path.open("rb") as stream:
        stream.seek(-4, 2)
        (trailer,) = struct.unpack("<I", stream.read(4))
    if trailer == expected % (1 << 32):
        return expected
    length = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with path.open("rb") as stream:
        try:
            while chunk := stream.read(_CHUNK):
                length += len(inflater.decompress(chunk))
                if inflater.eof:
                    break
        except zlib.error:
            pass
    return length
