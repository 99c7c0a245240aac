"""Checks on single DICOM files that GDCM does not make: is a file DICOM, which series does a damaged one belong to,
and does its pixel data hold every byte its header promises (GDCM fills a short slice with whatever follows)."""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path

__all__ = ["is_dicom_file", "mentions_uid", "pixel_data_problem"]

_PREAMBLE = 128
_MAGIC = b"DICM"
_PIXEL_DATA = b"\xe0\x7f\x10\x00"  # tag (7FE0,0010) in little endian
_SERIES_UID = b"\x20\x00\x0e\x00"  # tag (0020,000E)
_EXPLICIT_VRS = (b"OB", b"OW", b"OF", b"UN")
_UNDEFINED_LENGTH = 0xFFFFFFFF


def is_dicom_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file with the DICOM preamble (``DICM`` after 128 bytes) or a ``.dcm`` ending."""
    path = Path(path)
    if not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as stream:
            return stream.read(_PREAMBLE + len(_MAGIC))[_PREAMBLE:] == _MAGIC
    except OSError:
        return False


def mentions_uid(path: str | os.PathLike[str], uid: str) -> bool:
    """Whether a SeriesInstanceUID element (0020,000E) in the bytes of ``path`` holds ``uid``: how a file too
    damaged to parse is still recognised as part of a series. Always false for an empty UID.

    A damaged file that only refers to the series (a SEG's referenced series) counts as part of it too.
    """
    if not uid:
        return False
    try:
        value = re.escape(uid.encode("ascii"))
        data = Path(path).read_bytes()
    except (OSError, UnicodeEncodeError):
        return False
    explicit = _SERIES_UID + rb"UI[\s\S]{2}" + value + rb"[\0 ]?(?![0-9.])"
    implicit = _SERIES_UID + rb"[\s\S]{4}" + value + rb"[\0 ]?(?![0-9.])"
    return re.search(explicit, data) is not None or re.search(implicit, data) is not None


def pixel_data_problem(path: str | os.PathLike[str], expected: int) -> str | None:
    """What is wrong with the uncompressed pixel data of a file that should hold ``expected`` bytes of it, or
    ``None`` when it holds them, is compressed (its decoder checks it), or cannot be found (e.g. deflated files).

    Every occurrence of the PixelData tag is looked at, in explicit and implicit VR little endian; one of the right
    length with all its bytes present is enough, so a valid file is never refused.
    """
    data = Path(path).read_bytes()
    found: list[tuple[int, int]] = []
    start = data.find(_PIXEL_DATA)
    while start >= 0:
        explicit = data[start + 4 : start + 6] in _EXPLICIT_VRS and data[start + 6 : start + 8] == b"\0\0"
        length_at, value_at = (start + 8, start + 12) if explicit else (start + 4, start + 8)
        if value_at <= len(data):
            (length,) = struct.unpack_from("<I", data, length_at)
            if length == _UNDEFINED_LENGTH:
                return None
            available = len(data) - value_at
            if length in (expected, expected + 1) and available >= length:
                return None
            found.append((length, available))
        start = data.find(_PIXEL_DATA, start + 1)
    if not found:
        return None
    length, available = found[0]
    present = min(length, available)
    if available < length:
        return f"cut short: {present} of the {length} bytes of pixel data its header declares are present"
    return f"pixel data holds {present} bytes, not the {expected} that Rows x Columns x BitsAllocated need"
