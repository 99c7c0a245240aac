"""The CT check before preparation and inference: a label map or an MR is refused with one line naming the file, a
CT stored as HU + 1024 is corrected with a warning, and real CTs pass unchanged."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from monai_pipeline.errors import InputError
from monai_pipeline.io import read_image
from monai_pipeline.preprocessing.hu import STORED_OFFSET, ensure_hu
from monai_pipeline.synth import make_phantom


@pytest.fixture(scope="module")
def phantom() -> tuple[sitk.Image, sitk.Image]:
    return make_phantom(4, size=(64, 64, 16), spacing=(5.5, 5.5, 15.0))


def _like(values: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(values)
    image.CopyInformation(reference)
    return image


def _mr_like(phantom) -> sitk.Image:
    """An MR-like volume: 0 outside the body, tissue at 300-4000 by label, no negative value anywhere."""
    ct, label = phantom
    hu = sitk.GetArrayFromImage(ct).astype(np.float32)
    rng = np.random.default_rng(0)
    values = np.where(hu > -500, 1500 + 2 * hu, 0) + np.where(sitk.GetArrayFromImage(label) > 0, 1200, 0)
    values = np.clip(values + rng.normal(0, 40, values.shape) * (values > 0), 0, 4000)
    return _like(values.astype(np.uint16), ct)


def test_ct_in_hu_is_the_same_image(phantom):
    ct, _ = phantom
    assert ensure_hu(ct, "ct.nii.gz") is ct


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
def test_ct_stored_with_offset_is_corrected_with_a_warning(phantom, dtype, caplog):
    ct, _ = phantom
    hu = sitk.GetArrayFromImage(ct)
    stored = _like((hu.astype(np.int32) + STORED_OFFSET).astype(dtype), ct)
    with caplog.at_level(logging.WARNING):
        corrected = ensure_hu(stored, "offset.nii.gz")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(corrected), hu)
    assert corrected.GetPixelID() == sitk.sitkInt16
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("offset.nii.gz: stored as HU + 1024") and "1024 subtracted" in line


def test_mr_like_volume_is_refused(phantom):
    with pytest.raises(InputError, match=r"^mr\.nii\.gz: does not look like CT in HU: no air \(below -200 HU\)"):
        ensure_hu(_mr_like(phantom), "mr.nii.gz")


def _many_labels(label: np.ndarray) -> np.ndarray:
    """40 structures over a seventh of the voxels, as a multi-organ map: most voxels still 0."""
    index = np.arange(label.size).reshape(label.shape)
    return np.where(index % 7 == 0, index % 40, 0)


@pytest.mark.parametrize(
    "relabel", [lambda a: a, lambda a: 255 * (a > 0), _many_labels], ids=["0-2", "0-255", "40 labels"]
)
def test_label_map_is_refused(phantom, relabel):
    _, label = phantom
    values = relabel(sitk.GetArrayFromImage(label)).astype(np.uint8)
    with pytest.raises(InputError, match=r"^seg\.nrrd: looks like a label map, not a CT scan"):
        ensure_hu(_like(values, label), "seg.nrrd")


REAL_CTS = [
    "totalseg/example_ct.nii.gz",
    "totalseg/example_ct_dicom",
    "ircad17/ircad17_ct.nii.gz",
    "lits117/volume-117.nii.gz",
    "dcmqi/ct-3slice",
]


@pytest.mark.realdata
@pytest.mark.parametrize("name", REAL_CTS)
def test_real_ct_passes_unchanged(name, real_data, caplog):
    image = read_image(real_data / name)
    with caplog.at_level(logging.WARNING):
        assert ensure_hu(image, name) is image
    assert caplog.records == []


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["lits117/segmentation-117.nii.gz", "totalseg/example_seg.nii.gz"])
def test_real_label_maps_are_refused(name, real_data):
    with pytest.raises(InputError, match="looks like a label map"):
        ensure_hu(read_image(real_data / name), name)
