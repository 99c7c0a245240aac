"""Read a CT scan from a folder of DICOM files (one slice per file) with its slice geometry checked.

SimpleITK/GDCM finds the series and decodes the pixels, applying RescaleSlope and RescaleIntercept so that CT
values come back in HU. The slices are sorted here along the normal of ImageOrientationPatient, and stacks whose
geometry ITK would silently get wrong (gantry tilt, missing or duplicate slices, mixed orientations) are refused, as
are series with a damaged slice (see :mod:`monai_pipeline.io.dicom_files`). Nothing from a DICOM header but the
series UIDs (to pick another series with) is logged or printed, and nothing is kept on the returned image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from monai_pipeline.errors import InputError
from monai_pipeline.io.dicom_files import is_dicom_file, mentions_uid, pixel_data_problem
from monai_pipeline.io.folders import folder_entries

__all__ = ["SeriesInfo", "is_dicom_file", "list_series", "read_dicom_series"]

logger = logging.getLogger(__name__)

SPACING_TOLERANCE = 0.1
"""Largest distance of a slice from the uniform grid through the first and last slice, as a fraction of the slice
spacing. A missing slice puts some slice about half a spacing off the grid; rounding of positions does not."""
TILT_TOLERANCE_DEG = 0.1
"""Largest angle between the stacking direction (first to last slice) and the slice normal."""
ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between the direction cosines of two slices of one series."""
DUPLICATE_TOLERANCE_MM = 1e-3
"""Slices closer than this along the normal are at the same position."""


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series in a folder, without any descriptive or identifying text.

    Attributes:
        uid: the SeriesInstanceUID as GDCM reports it (may be ``""`` in anonymised data).
        files: the readable files of the series, sorted by position along the slice normal when every file has one.
        modality: the Modality tag of the first file, e.g. ``"CT"``, ``"MR"``, ``"SEG"``.
    """

    uid: str
    files: tuple[str, ...]
    modality: str

    @property
    def num_slices(self) -> int:
        """The number of files (2D slices) in the series."""
        return len(self.files)


@dataclass(frozen=True, eq=False)
class _Slice:
    """The header fields of one file that this module uses."""

    path: str
    modality: str
    position: np.ndarray | None
    orientation: np.ndarray | None
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    rescale: tuple[float, float]
    pixel_bytes: int | None
    """What its uncompressed pixel data must hold: Rows x Columns x frames x samples x BitsAllocated / 8."""

    @property
    def normal(self) -> np.ndarray:
        """The unit normal of the slice plane: row direction x column direction."""
        normal = np.cross(self.orientation[:3], self.orientation[3:])
        return normal / np.linalg.norm(normal)

    @property
    def distance(self) -> float:
        """The position along the slice normal, in mm."""
        return float(self.position @ self.normal)


@dataclass(frozen=True)
class _Series:
    """A series as GDCM groups it: the slices whose headers could be read, and its files whose headers could not."""

    info: SeriesInfo
    slices: list[_Slice]
    unreadable: tuple[str, ...]


def list_series(folder: str | os.PathLike[str]) -> list[SeriesInfo]:
    """Every DICOM series in ``folder`` (not its sub-folders), in GDCM's order (by series UID).

    Files that cannot be read as DICOM are left out, with a logged warning that counts them.

    Args:
        folder: the folder to scan.

    Raises:
        InputError: ``folder`` is not a folder.
    """
    return [series.info for series in _scan(Path(folder))[0]]


def read_dicom_series(folder: str | os.PathLike[str], series_uid: str | None = None) -> sitk.Image:
    """Read one DICOM series of ``folder`` as a 3D image in HU, with the geometry given by its slice headers.

    The image's index axes are the rows, the columns and the slice normal (row x column direction), slices in
    increasing position along the normal; the origin is the ImagePositionPatient of the first of them. The image
    carries no metadata.

    Args:
        folder: a folder holding the DICOM files, one 2D slice each; other files beside them are ignored.
        series_uid: the SeriesInstanceUID to read, whatever its modality (default: the CT series with the most
            slices). Use :func:`list_series` to see what a folder holds.

    Raises:
        InputError: no series, no CT series, no series ``series_uid``, a single slice or multi-frame file,
            slices without position or orientation, of different sizes, with mixed orientations, duplicate
            positions, non-uniform spacing or gantry tilt, a file of the series that cannot be read or holds less
            pixel data than its header promises (named), or pixel data that cannot be decoded.
    """
    folder = Path(folder)
    found, unlisted = _scan(folder)
    if not found:
        raise InputError(folder, "no DICOM series found")
    chosen = _choose(folder, found, series_uid)
    _refuse_unreadable(folder, chosen, unlisted)
    _report_choice(folder, chosen, found, series_uid)
    slices = chosen.slices
    if len(slices) < 2:
        frames = slices[0].size[2] if len(slices[0].size) > 2 else 1
        if frames > 1:
            raise InputError(
                folder, f"one multi-frame DICOM file ({frames} frames) is not supported; export one file per slice"
            )
        raise InputError(folder, "single slice: a 3D series is needed")
    slices = _check_slices(folder, slices)
    for piece in slices:
        problem = None if piece.pixel_bytes is None else pixel_data_problem(piece.path, piece.pixel_bytes)
        if problem is not None:
            raise InputError(piece.path, f"damaged slice of the series: {problem}")
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames([s.path for s in slices])
    rescales = {s.rescale for s in slices}
    if len(rescales) > 1 or any(v != round(v) for pair in rescales for v in pair):
        reader.SetOutputPixelType(sitk.sitkFloat32)  # else ITK casts every slice to the first slice's integer type
    try:
        with _quiet_itk():
            image = reader.Execute()
    except RuntimeError as err:
        raise InputError(folder, "pixel data cannot be decoded (corrupt file or unsupported compression?)") from err
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    first, last = slices[0], slices[-1]
    row, normal = first.orientation[:3], first.normal
    image.SetOrigin(tuple(float(v) for v in first.position))
    image.SetSpacing((*first.spacing[:2], (last.distance - first.distance) / (len(slices) - 1)))
    image.SetDirection(tuple(np.column_stack([row, np.cross(normal, row), normal]).ravel().tolist()))
    return image


def _scan(folder: Path) -> tuple[list[_Series], list[Path]]:
    """The series GDCM finds in ``folder``, and the files it lists in none (junk, or DICOM files too damaged)."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder")
    found = []
    with _quiet_itk():
        for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)):
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
            headers = {name: _read_header(name) for name in names}
            slices = [s for s in headers.values() if s is not None]
            unreadable = tuple(name for name, header in headers.items() if header is None)
            if all(s.position is not None and s.orientation is not None for s in slices):
                slices.sort(key=lambda s: s.distance)
            if slices:
                found.append(
                    _Series(SeriesInfo(uid, tuple(s.path for s in slices), slices[0].modality), slices, unreadable)
                )
    listed = {path for series in found for path in (*series.info.files, *series.unreadable)}
    unlisted = sorted(path for path in folder_entries(folder) if path.is_file() and str(path) not in listed)
    if unlisted:
        dicom = [path.name for path in unlisted if is_dicom_file(path)]
        shown = f"; damaged DICOM files among them: {', '.join(dicom[:5])}" if dicom else ""
        shown += " ..." if len(dicom) > 5 else ""
        logger.warning(
            "%s: ignored %d file(s) that are not part of a readable DICOM series%s", folder, len(unlisted), shown
        )
    return found, unlisted


def _refuse_unreadable(folder: Path, chosen: _Series, unlisted: Sequence[Path]) -> None:
    """Refuse the series when one of its files cannot be read: GDCM's list of it, or a damaged file beside it that
    holds its UID. Reading the rest would give a scan with a slice missing (at an end, unnoticed by the spacing
    check)."""
    damaged = [*chosen.unreadable, *(str(p) for p in unlisted if is_dicom_file(p) and mentions_uid(p, chosen.info.uid))]
    if damaged:
        more = f" (and {len(damaged) - 1} more file(s) of it)" if len(damaged) > 1 else ""
        raise InputError(
            damaged[0], f"belongs to the series in {folder} but cannot be read (damaged or cut short){more}"
        )


def _report_choice(folder: Path, chosen: _Series, found: Sequence[_Series], series_uid: str | None) -> None:
    """Say which series of a folder holding several is read and which are not."""
    if len(found) < 2:
        return
    ignored = "; ".join(_describe(series.info) for series in found if series is not chosen)
    if series_uid is None:
        logger.warning(
            "%s: read %s, the CT series with the most slices; ignored %s (pick another with --series-uid)",
            folder,
            _describe(chosen.info),
            ignored,
        )
    else:
        logger.info("%s: read %s as asked; ignored %s", folder, _describe(chosen.info), ignored)


def _describe(info: SeriesInfo) -> str:
    return f"series '{info.uid}' ({info.modality or 'unknown modality'}, {info.num_slices} file(s))"


def _read_header(path: str) -> _Slice | None:
    reader = sitk.ImageFileReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return None

    def numbers(tag: str, count: int) -> np.ndarray | None:
        if not reader.HasMetaDataKey(tag):
            return None
        try:
            values = np.array([float(v) for v in reader.GetMetaData(tag).split("\\")])
        except ValueError:
            return None
        return values if values.size == count and np.all(np.isfinite(values)) else None

    orientation = numbers("0020|0037", 6)
    if orientation is not None:
        row, col = orientation[:3], orientation[3:]
        norm_row, norm_col = np.linalg.norm(row), np.linalg.norm(col)
        valid = norm_row > 0 and norm_col > 0 and abs(float(row @ col)) / (norm_row * norm_col) < 1e-2
        orientation = np.concatenate([row / norm_row, col / norm_col]) if valid else None
    slope, intercept = numbers("0028|1053", 1), numbers("0028|1052", 1)
    size = tuple(reader.GetSize())
    samples, bits = numbers("0028|0002", 1), numbers("0028|0100", 1)
    pixel_bytes = None
    if bits is not None and int(bits[0]) % 8 == 0:
        pixel_bytes = int(np.prod(size)) * (1 if samples is None else int(samples[0])) * int(bits[0]) // 8
    return _Slice(
        path=path,
        modality=reader.GetMetaData("0008|0060").strip() if reader.HasMetaDataKey("0008|0060") else "",
        position=numbers("0020|0032", 3),
        orientation=orientation,
        size=size,
        spacing=tuple(reader.GetSpacing()),
        rescale=(1.0 if slope is None else float(slope[0]), 0.0 if intercept is None else float(intercept[0])),
        pixel_bytes=pixel_bytes,
    )


def _choose(folder: Path, found: Sequence[_Series], series_uid: str | None) -> _Series:
    if series_uid is not None:
        for series in found:
            if series.info.uid == series_uid.strip():
                return series
        shown = ", ".join(f"'{series.info.uid}' ({series.info.num_slices} slices)" for series in found)
        raise InputError(folder, f"no series with UID '{series_uid}'; available: {shown}")
    ct = [series for series in found if series.info.modality.upper() == "CT"]
    if not ct:
        modalities = sorted({series.info.modality or "unknown" for series in found})
        raise InputError(folder, f"no CT series (found {', '.join(modalities)})")
    return max(ct, key=lambda series: series.info.num_slices)


def _check_slices(folder: Path, slices: list[_Slice]) -> list[_Slice]:
    """The slices sorted along the normal, after checking they stack into a regular, untilted grid."""
    if any(s.position is None or s.orientation is None for s in slices):
        raise InputError(folder, "a slice lacks a valid ImagePositionPatient or ImageOrientationPatient")
    if len({(s.size, tuple(round(v, 4) for v in s.spacing[:2])) for s in slices}) > 1:
        raise InputError(folder, "slices differ in size or pixel spacing")
    if any(len(s.size) > 2 and s.size[2] > 1 for s in slices):
        raise InputError(folder, "the series mixes multi-frame files with slices; export one file per slice")
    first = slices[0].orientation
    if max(float(np.max(np.abs(s.orientation - first))) for s in slices) > ORIENTATION_TOLERANCE:
        raise InputError(folder, "slices have different ImageOrientationPatient (mixed orientations)")
    slices = sorted(slices, key=lambda s: s.distance)
    distances = np.array([s.distance for s in slices])
    steps = np.diff(distances)
    if np.any(steps < DUPLICATE_TOLERANCE_MM):
        count = int(np.count_nonzero(steps < DUPLICATE_TOLERANCE_MM))
        raise InputError(folder, f"duplicate slice positions ({count} slice(s) share a position along the normal)")
    stack = slices[-1].position - slices[0].position
    cosine = abs(float(stack @ slices[0].normal)) / float(np.linalg.norm(stack))
    angle = float(np.degrees(np.arccos(min(1.0, cosine))))
    if angle > TILT_TOLERANCE_DEG:
        raise InputError(folder, f"gantry tilt of {angle:.2f} degrees (slices not stacked along their normal)")
    step = (distances[-1] - distances[0]) / (len(slices) - 1)
    off_grid = np.abs(distances - (distances[0] + step * np.arange(len(slices))))
    if np.max(off_grid) > SPACING_TOLERANCE * step:
        raise InputError(
            folder,
            f"non-uniform slice spacing from {steps.min():.4g} to {steps.max():.4g} mm (missing slices?)",
        )
    return slices


@contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's warnings (printed to stderr, e.g. "No Series were found") for the duration of the block."""
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)
