"""Read CT scans and masks (NIfTI, NRRD, MHA, a DICOM series folder) with their full geometry."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from monai_pipeline.errors import InputError, reason
from monai_pipeline.io.dicom import is_dicom_file, read_dicom_series
from monai_pipeline.io.geometry import Geometry, shear_problem
from monai_pipeline.io.nifti import check_nifti

__all__ = ["IMAGE_SUFFIXES", "is_image_file", "read_image", "load_image", "check_label_values", "case_name"]

IMAGE_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
"""File endings read as one image each; a folder is read as a DICOM series."""

logger = logging.getLogger(__name__)

NO_SPACING = "spacing 0 in the header"
"""How a scan whose header gives no voxel size is refused."""


def is_image_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a file format this package reads (by its ending)."""
    return str(path).lower().endswith(IMAGE_SUFFIXES)


def case_name(path: str | os.PathLike[str]) -> str:
    """The name of a scan without folder and image ending (``/a/volume-3.nii.gz`` -> ``volume-3``)."""
    name = Path(path).name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_image(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    assume_spacing: Sequence[float] | None = None,
) -> sitk.Image:
    """Read a 3D image from a file or a DICOM series folder, checked for use as CT or mask.

    DICOM pixel data comes back in HU (rescale slope and intercept applied). Metadata is dropped so that
    no patient identifier travels further than this function.

    Args:
        path: a NIfTI (.nii, .nii.gz), NRRD, MHA/MHD file, or a folder holding a DICOM series.
        series_uid: for a DICOM folder with several series, the SeriesInstanceUID to read
            (default: the CT series with the most slices).
        assume_spacing: the voxel size in mm along (x, y, z) to use when the header gives none (a NIfTI file with
            pixdim 0 and no sform or qform); such a scan is refused without it.

    Raises:
        InputError: the path is missing, unreadable, a single DICOM file, not 3D, without spacing, with axes that
            are not orthogonal, or holds NaN/infinite values.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    spacing_known = True
    if path.is_dir():
        image = read_dicom_series(path, series_uid=series_uid)
    else:
        if not is_image_file(path):
            if is_dicom_file(path):
                raise InputError(path, f"a single DICOM file: pass its series folder ({path.parent})")
            raise InputError(path, f"not an image file this pipeline reads (expected {', '.join(IMAGE_SUFFIXES)})")
        if path.name.lower().endswith((".nii", ".nii.gz")):
            spacing_known = check_nifti(path)
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as err:
            raise InputError(path, _read_failure(err)) from err
    image = _as_3d(image, path)
    if not spacing_known:
        image = _assume_spacing(image, path, assume_spacing)
    problem = shear_problem(image.GetDirection())
    if problem is not None:
        raise InputError(path, problem)
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    _check_finite(image, path)
    return image


def load_image(
    path: str | os.PathLike[str], *, series_uid: str | None = None, assume_spacing: Sequence[float] | None = None
) -> tuple[np.ndarray, Geometry]:
    """Read an image as a numpy array in (z, y, x) order together with its geometry.

    See :func:`read_image` for the formats, checks and arguments.
    """
    image = read_image(path, series_uid=series_uid, assume_spacing=assume_spacing)
    return sitk.GetArrayFromImage(image), Geometry.of(image)


def check_label_values(label: sitk.Image, path: str | os.PathLike[str], allowed: tuple[int, ...] = (0, 1, 2)) -> None:
    """Raise :class:`InputError` unless every voxel of ``label`` is a whole number in ``allowed`` (a range such as
    0, 1, 2)."""
    values = sitk.GetArrayViewFromImage(label)
    if np.issubdtype(values.dtype, np.floating):
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise InputError(path, "label holds non-integer values; expected 0 background, 1 liver, 2 tumour")
    low, high = min(allowed), max(allowed)
    if values.min() >= low and values.max() <= high:
        return
    extra = np.unique(values[(values < low) | (values > high)]).tolist()
    shown = ", ".join(f"{v:g}" for v in extra[:5]) + (" ..." if len(extra) > 5 else "")
    raise InputError(
        path, f"label values {shown} outside {{{', '.join(map(str, allowed))}}} (0 background, 1 liver, 2 tumour)"
    )


def _as_3d(image: sitk.Image, path: Path) -> sitk.Image:
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a single-channel image, got {image.GetNumberOfComponentsPerPixel()} channels")
    size = image.GetSize()
    if image.GetDimension() == 4 and size[3] == 1:
        image = image[:, :, :, 0]
        size = image.GetSize()
    if image.GetDimension() != 3:
        shown = "x".join(map(str, size))
        raise InputError(path, f"expected a 3D image, got a {image.GetDimension()}D image ({shown})")
    if min(size) < 2:
        raise InputError(path, f"expected a 3D volume, got a single slice ({'x'.join(map(str, size))})")
    return image


def _check_finite(image: sitk.Image, path: Path) -> None:
    values = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all():
        count = int(np.count_nonzero(~np.isfinite(values)))
        raise InputError(path, f"image holds {count} NaN or infinite voxel(s)")


def _read_failure(err: RuntimeError) -> str:
    """The problem to report when ITK cannot read a file."""
    why = reason(err)
    if "Zero-valued spacing" in why:
        return f"{NO_SPACING}; write the voxel size into it"
    if "orthonormal" in why:
        return shear_problem()
    return f"cannot be read as an image (corrupt or truncated?): {why}"


def _assume_spacing(image: sitk.Image, path: Path, spacing: Sequence[float] | None) -> sitk.Image:
    """``image`` with the spacing the user vouches for, or an :class:`InputError` when none was given."""
    if spacing is None:
        raise InputError(
            path, f"{NO_SPACING} (no sform or qform either); infer takes --assume-spacing X Y Z (mm) if you know it"
        )
    values = tuple(float(v) for v in spacing)
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise InputError(path, f"--assume-spacing must be three positive sizes in mm, got {spacing}")
    logger.warning("%s: %s; assumed %s mm as asked", path, NO_SPACING, " x ".join(f"{v:g}" for v in values))
    image.SetSpacing(values)
    return image
