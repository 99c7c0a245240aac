"""Checks SimpleITK's NIfTI reader skips: it zero-fills a truncated file, turns NaN voxels into 0, and takes 1 mm for
a spacing of 0 that no sform or qform gives."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from monai_pipeline.errors import InputError
from monai_pipeline.io.geometry import shear_problem

__all__ = ["check_nifti"]

_CHUNK = 1 << 22


def check_nifti(path: Path) -> bool:
    """Raise :class:`InputError` when a NIfTI file holds less data than its header promises, (for float data) NaN
    or infinite voxels, or axes that are not orthogonal; return whether its header gives the voxel spacing.

    The spacing is missing when the affine nibabel would use (sform, else qform) has an axis of length 0, or, with
    neither, when pixdim is 0: ITK then reads 1 mm, a guess.

    A complete .nii.gz is recognised from the length in its gzip trailer without decompressing it; only when that
    does not match is the stream decompressed to count its bytes.
    """
    try:
        loaded = nib.load(str(path))
        header, offset = loaded.header, int(loaded.dataobj.offset)
    except Exception as err:  # noqa: BLE001 - nibabel raises many types for a damaged header
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(path, f"cannot be read as an image (corrupt or truncated?): {first}") from err
    spacing_known = _spacing_known(header)
    if spacing_known and (header["sform_code"] > 0 or header["qform_code"] > 0):
        problem = shear_problem(header.get_best_affine()[:3, :3])
        if problem is not None:
            raise InputError(path, problem)
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


def _spacing_known(header: nib.Nifti1Header) -> bool:
    """Whether every spatial axis of the image has a non-zero, finite length in the header's affine or pixdim."""
    axes = min(3, len(header.get_data_shape()))
    if header["sform_code"] > 0 or header["qform_code"] > 0:
        lengths = np.linalg.norm(header.get_best_affine()[:3, :axes], axis=0)
    else:
        lengths = np.abs(np.asarray(header["pixdim"][1 : 1 + axes], dtype=float))
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
