"""Tests for monai_pipeline.io.dicom on small synthetic series written with pydicom, and on real samples."""

from __future__ import annotations

import logging
import random
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from monai_pipeline.errors import InputError
from monai_pipeline.io import read_image
from monai_pipeline.io.dicom import SeriesInfo, list_series, read_dicom_series
from monai_pipeline.io.dicom_files import pixel_data_problem

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real CT samples not found at {REAL}")

ROWS, COLS = 12, 16
ROW_SPACING, COL_SPACING = 0.9, 0.7  # PixelSpacing order: between rows (y), between columns (x)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SERIES_A = "1.2.826.0.1.3680043.8.498.1"
SERIES_B = "1.2.826.0.1.3680043.8.498.22"
PATIENT_NAME, PATIENT_ID = "Doe^Jane", "SECRET-4711"


def _stored(k: int, dtype: type = np.uint16) -> np.ndarray:
    """Stored values of slice ``k``: 1000 + 10 k everywhere, 5 more at row 1, column 3."""
    pixels = np.full((ROWS, COLS), 1000 + 10 * k, dtype=dtype)
    pixels[1, 3] += 5
    return pixels


def _write_slice(
    path: Path,
    pixels: np.ndarray,
    position: Sequence[float],
    *,
    orientation: Sequence[float] | None = AXIAL,
    series_uid: str = SERIES_A,
    modality: str = "CT",
    slope: float = 1.0,
    intercept: float = -1024.0,
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.7"
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.PatientName, ds.PatientID, ds.StudyDate = PATIENT_NAME, PATIENT_ID, "20240229"
    ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [ROW_SPACING, COL_SPACING]
    ds.SliceThickness = 2.0
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = int(pixels.dtype == np.int16)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "HU"
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _write_series(folder: Path, positions: Sequence[Sequence[float]], *, prefix: str = "slice", **kwargs) -> list[Path]:
    """Write slice k (values :func:`_stored`) at ``positions[k]``; return the paths in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, position in enumerate(positions):
        path = folder / f"{prefix}{k:03d}.dcm"
        _write_slice(path, _stored(k), position, **kwargs)
        paths.append(path)
    return paths


def _axial(n: int, step: float = 2.5, z0: float = -40.0) -> list[tuple[float, float, float]]:
    return [(-5.0, 12.0, z0 + step * k) for k in range(n)]


def test_values_come_back_in_hu(tmp_path):
    _write_series(tmp_path, _axial(5))
    values = sitk.GetArrayFromImage(read_dicom_series(tmp_path))
    expected = np.stack([_stored(k).astype(np.int32) - 1024 for k in range(5)])
    np.testing.assert_array_equal(values, expected)


def test_non_integer_slope_comes_back_in_hu(tmp_path):
    for k, position in enumerate(_axial(5)):
        _write_slice(tmp_path / f"{k}.dcm", _stored(k, np.int16) - 1500, position, slope=0.5, intercept=-1024.0)
    values = sitk.GetArrayFromImage(read_dicom_series(tmp_path))
    expected = np.stack([(_stored(k, np.int16) - 1500) * 0.5 - 1024 for k in range(5)])
    np.testing.assert_array_equal(values, expected)
    assert values[0, 0, 0] == -1274.0 and values[0, 1, 3] == -1271.5


def test_rescale_that_changes_between_slices_is_applied_per_slice(tmp_path):
    # ITK would cast every slice to the integer type chosen for the first one and drop the .5 of the others.
    for k, position in enumerate(_axial(4)):
        _write_slice(tmp_path / f"{k}.dcm", _stored(k), position, slope=1.0 if k == 0 else 0.5, intercept=-1000.0)
    values = sitk.GetArrayFromImage(read_dicom_series(tmp_path))
    expected = [_stored(k) * (1.0 if k == 0 else 0.5) - 1000.0 for k in range(4)]
    np.testing.assert_array_equal(values, np.stack(expected))


def test_axial_geometry_comes_from_the_headers(tmp_path):
    _write_series(tmp_path, _axial(6, step=2.5, z0=-40.0))
    image = read_dicom_series(tmp_path)
    assert image.GetSize() == (COLS, ROWS, 6)
    np.testing.assert_allclose(image.GetSpacing(), (COL_SPACING, ROW_SPACING, 2.5))
    np.testing.assert_allclose(image.GetOrigin(), (-5.0, 12.0, -40.0))
    np.testing.assert_allclose(image.GetDirection(), np.eye(3).ravel(), atol=1e-12)
    values = sitk.GetArrayFromImage(image)
    np.testing.assert_array_equal(values[:, 1, 3] - values[:, 0, 0], 5)  # row 1, column 3 stays at y=1, x=3
    np.testing.assert_array_equal(values[:, 0, 0], [1000 + 10 * k - 1024 for k in range(6)])


def test_slices_are_sorted_by_position_not_by_name_or_write_order(tmp_path):
    positions = _axial(7, step=3.0, z0=10.0)
    order = list(range(7))
    random.Random(3).shuffle(order)
    names = [f"IM{random.Random(k).randrange(10**6):06d}" for k in range(7)]  # no .dcm ending, random names
    for k in order:
        _write_slice(tmp_path / names[k], _stored(k), positions[k])
    image = read_dicom_series(tmp_path)
    np.testing.assert_allclose(image.GetOrigin(), positions[0])
    np.testing.assert_allclose(image.GetSpacing()[2], 3.0)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[:, 0, 0], [10 * k - 24 for k in range(7)])
    (info,) = list_series(tmp_path)
    assert info.files == tuple(str(tmp_path / name) for name in names)


def test_flipped_orientation_sorts_along_the_normal(tmp_path):
    # Rows run towards -x (patient's right), columns towards +y: the normal row x column is -z.
    _write_series(tmp_path, _axial(5, step=2.0, z0=0.0), orientation=(-1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
    image = read_dicom_series(tmp_path)
    np.testing.assert_allclose(image.GetOrigin(), (-5.0, 12.0, 8.0))  # the highest slice is first along -z
    np.testing.assert_allclose(image.GetSpacing(), (COL_SPACING, ROW_SPACING, 2.0))
    np.testing.assert_allclose(image.GetDirection(), (-1, 0, 0, 0, 1, 0, 0, 0, -1), atol=1e-12)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image)[:, 0, 0], [10 * k - 24 for k in (4, 3, 2, 1, 0)])


def test_oblique_untilted_geometry(tmp_path):
    angle = np.radians(30.0)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(angle), np.sin(angle)])
    normal = np.array([0.0, -np.sin(angle), np.cos(angle)])  # row x col
    base = np.array([3.0, -7.0, 20.0])
    positions = [base + 1.5 * k * normal for k in (2, 0, 4, 1, 3)]  # written out of order
    for k, position in zip((2, 0, 4, 1, 3), positions):
        _write_slice(tmp_path / f"{k}.dcm", _stored(k), position, orientation=(*row, *col))
    image = read_dicom_series(tmp_path)
    np.testing.assert_allclose(image.GetOrigin(), base, atol=1e-6)
    np.testing.assert_allclose(image.GetSpacing(), (COL_SPACING, ROW_SPACING, 1.5), atol=1e-6)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), np.column_stack([row, col, normal]), atol=1e-6)
    point = base + 4 * COL_SPACING * row + 2 * ROW_SPACING * col + 3 * 1.5 * normal
    np.testing.assert_allclose(image.TransformIndexToPhysicalPoint((4, 2, 3)), point, atol=1e-6)


def test_two_series_largest_ct_by_default_and_uid_picks_the_other(tmp_path):
    _write_series(tmp_path, _axial(5), prefix="a", series_uid=SERIES_A)
    _write_series(tmp_path, _axial(7, step=1.0), prefix="b", series_uid=SERIES_B)
    infos = {info.uid: info for info in list_series(tmp_path)}
    assert {uid: (info.num_slices, info.modality) for uid, info in infos.items()} == {
        SERIES_A: (5, "CT"),
        SERIES_B: (7, "CT"),
    }
    assert isinstance(infos[SERIES_A], SeriesInfo) and "description" not in SeriesInfo.__dataclass_fields__
    assert read_dicom_series(tmp_path).GetSize()[2] == 7
    chosen = read_dicom_series(tmp_path, series_uid=SERIES_A)
    assert chosen.GetSize()[2] == 5 and chosen.GetSpacing()[2] == pytest.approx(2.5)
    with pytest.raises(InputError, match=r"no series with UID '1\.2\.3'.*\(5 slices\).*\(7 slices\)") as err:
        read_dicom_series(tmp_path, series_uid="1.2.3")
    assert SERIES_A in str(err.value) and SERIES_B in str(err.value)


def test_series_with_an_empty_uid_is_found_and_read(tmp_path):
    _write_series(tmp_path, _axial(3), prefix="a", series_uid=SERIES_B)
    _write_series(tmp_path, _axial(5), prefix="z", series_uid="")
    assert sorted(info.uid for info in list_series(tmp_path)) == ["", SERIES_B]
    image = read_dicom_series(tmp_path, series_uid="")
    assert image.GetSize()[2] == 5


def test_folder_without_ct_names_the_modalities_found(tmp_path):
    _write_series(tmp_path, _axial(4), prefix="mr", modality="MR", series_uid=SERIES_A)
    _write_series(tmp_path, _axial(3), prefix="pt", modality="PT", series_uid=SERIES_B)
    with pytest.raises(InputError, match=r"no CT series \(found MR, PT\)"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        ([(0, 0, z) for z in (0, 2, 4, 8, 10)], r"non-uniform slice spacing from 2 to 4 mm"),
        ([(0, 0, z) for z in (0, 2, 2, 4, 6)], r"duplicate slice positions"),
        ([(0, 2 * k * np.tan(np.radians(15)), 2 * k) for k in range(5)], r"gantry tilt of 15\.00 degrees"),
    ],
    ids=["missing-slice", "duplicate", "tilt"],
)
def test_bad_stacks_are_refused(tmp_path, positions, message):
    _write_series(tmp_path, positions)
    with pytest.raises(InputError, match=message):
        read_dicom_series(tmp_path)


def test_rounding_jitter_in_positions_is_accepted(tmp_path):
    jitter = (0.0, 0.004, -0.003, 0.002, -0.004, 0.0)
    _write_series(tmp_path, [(0.0, 0.0, 1.25 * k + j) for k, j in enumerate(jitter)])
    assert read_dicom_series(tmp_path).GetSpacing()[2] == pytest.approx(1.25)


def test_mixed_orientations_are_refused(tmp_path):
    _write_series(tmp_path, _axial(3), prefix="a")
    _write_series(tmp_path, _axial(2, z0=-30.0), prefix="b", orientation=(1.0, 0.0, 0.0, 0.0, 0.8, 0.6))
    with pytest.raises(InputError, match="different ImageOrientationPatient"):
        read_dicom_series(tmp_path)


def test_missing_orientation_is_refused(tmp_path):
    _write_series(tmp_path, _axial(3), orientation=None)
    with pytest.raises(InputError, match="lacks a valid ImagePositionPatient or ImageOrientationPatient"):
        read_dicom_series(tmp_path)


def test_slices_of_different_sizes_are_refused(tmp_path):
    _write_series(tmp_path, _axial(3))
    _write_slice(tmp_path / "small.dcm", _stored(3)[:8], _axial(4)[3])
    with pytest.raises(InputError, match="slices differ in size or pixel spacing"):
        read_dicom_series(tmp_path)


def test_undecodable_pixel_data_is_refused(tmp_path):
    _write_series(tmp_path, _axial(4))
    damaged = pydicom.dcmread(tmp_path / "slice002.dcm")
    damaged.file_meta.TransferSyntaxUID = JPEG2000Lossless
    damaged.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(60)])  # a JPEG 2000 stream cut after its start
    damaged["PixelData"].VR = "OB"
    damaged.save_as(tmp_path / "slice002.dcm")
    with pytest.raises(
        InputError, match=r"pixel data cannot be decoded \(corrupt file or unsupported compression\?\)$"
    ):
        read_dicom_series(tmp_path)


def test_single_slice_is_refused(tmp_path):
    _write_series(tmp_path, _axial(1))
    with pytest.raises(InputError, match="single slice: a 3D series is needed"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize("content", [None, b"not a DICOM file\n"], ids=["empty", "junk-only"])
def test_folder_without_dicom_is_refused(tmp_path, capfd, content):
    if content is not None:
        (tmp_path / "README.txt").write_bytes(content)
    with pytest.raises(InputError, match="no DICOM series found") as err:
        read_dicom_series(tmp_path)
    assert str(err.value) == f"{tmp_path}: no DICOM series found"
    assert capfd.readouterr().err == ""  # ITK's "No Series were found" warning is silenced


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="not a folder"):
        list_series(tmp_path / "absent")


def test_junk_beside_a_series_is_ignored_with_a_warning(tmp_path, caplog):
    _write_series(tmp_path, _axial(5))
    (tmp_path / "README.txt").write_text("exported by the scanner\n")
    (tmp_path / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 64)
    with caplog.at_level(logging.WARNING, logger="monai_pipeline.io.dicom"):
        image = read_dicom_series(tmp_path)
    assert image.GetSize() == (COLS, ROWS, 5)
    assert "ignored 2 file(s) that are not part of a readable DICOM series" in caplog.text
    assert "damaged DICOM files among them: broken.dcm" in caplog.text  # named, as it may be a lost slice


def _cut_short(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _short_pixel_data(path: Path) -> None:
    damaged = pydicom.dcmread(path)
    damaged.PixelData = damaged.PixelData[:200]  # Rows x Columns x 2 = 384 bytes are needed
    damaged.save_as(path)


def _unreadable_header(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"\x20\x00\x0e\x00UI") + 60])  # the series UID is there, the rest is not


DAMAGE = {"cut short": _cut_short, "pixel data too short": _short_pixel_data, "header cut": _unreadable_header}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("index", [0, 10, 19], ids=["first", "middle", "last"])
def test_a_damaged_slice_fails_the_series_naming_the_file(tmp_path, damage, index):
    paths = _write_series(tmp_path / "series", _axial(20))
    _write_series(tmp_path / "series", _axial(3), prefix="other", series_uid=SERIES_A + "2")  # a UID A starts
    DAMAGE[damage](paths[index])
    with pytest.raises(InputError) as err:
        read_image(tmp_path / "series", series_uid=SERIES_A)
    assert err.value.path == str(paths[index])
    assert "belongs to the series" in err.value.problem or "damaged slice of the series" in err.value.problem


def test_a_damaged_file_of_another_series_does_not_fail_this_one(tmp_path, caplog):
    _write_series(tmp_path, _axial(4))
    (other,) = _write_series(tmp_path, _axial(1), prefix="other", series_uid=SERIES_A + "2")
    _cut_short(other)
    with caplog.at_level(logging.WARNING, logger="monai_pipeline.io.dicom"):
        assert read_dicom_series(tmp_path).GetSize() == (COLS, ROWS, 4)
    assert "damaged DICOM files among them: other000.dcm" in caplog.text


def test_pixel_data_of_odd_length_padded_to_even_is_complete(tmp_path):
    path = tmp_path / "odd.dcm"
    _write_slice(path, np.full((3, 5), 1000, np.uint16), _axial(1)[0])
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(range(15)) + b"\0"  # 15 bytes needed, padded to 16
    ds.save_as(path)
    assert pixel_data_problem(path, 15) is None
    assert (
        pixel_data_problem(path, 30) == "pixel data holds 16 bytes, not the 30 that Rows x Columns x BitsAllocated need"
    )


def test_several_series_say_which_was_read_and_which_were_ignored(tmp_path, caplog):
    _write_series(tmp_path, _axial(5), prefix="a", series_uid=SERIES_A)
    _write_series(tmp_path, _axial(7, step=1.0), prefix="b", series_uid=SERIES_B)
    _write_series(tmp_path, _axial(2), prefix="m", series_uid=SERIES_A + "3", modality="MR")
    with caplog.at_level(logging.INFO, logger="monai_pipeline.io.dicom"):
        assert read_image(tmp_path).GetSize()[2] == 7
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line == (
        f"{tmp_path}: read series '{SERIES_B}' (CT, 7 file(s)), the CT series with the most slices; ignored "
        f"series '{SERIES_A}' (CT, 5 file(s)); series '{SERIES_A}3' (MR, 2 file(s)) (pick another with --series-uid)"
    )
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="monai_pipeline.io.dicom"):
        assert read_image(tmp_path, series_uid=SERIES_A).GetSize()[2] == 5
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert f"read series '{SERIES_A}' (CT, 5 file(s)) as asked; ignored series '{SERIES_A}3' (MR" in caplog.text


def test_one_series_says_nothing(tmp_path, caplog):
    _write_series(tmp_path, _axial(3))
    with caplog.at_level(logging.INFO, logger="monai_pipeline.io.dicom"):
        read_image(tmp_path)
    assert caplog.text == ""


@pytest.mark.parametrize("name", ["slice000.dcm", "IM0001"])
def test_a_single_dicom_file_asks_for_its_folder(tmp_path, name):
    (path,) = _write_series(tmp_path, _axial(1))
    path = path.rename(tmp_path / name)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: a single DICOM file: pass its series folder ({tmp_path})"


def test_read_image_on_a_folder_keeps_no_header_data(tmp_path, capfd, caplog):
    _write_series(tmp_path, _axial(5))
    with caplog.at_level(logging.DEBUG):
        image = read_image(tmp_path)
    assert image.GetSize() == (COLS, ROWS, 5)
    assert image.GetMetaDataKeys() == ()
    assert read_dicom_series(tmp_path).GetMetaDataKeys() == ()
    captured = capfd.readouterr()
    for secret in ("Doe", "SECRET", "20240229"):
        assert secret not in captured.out + captured.err + caplog.text


# Real samples: skipped when ../shared/data/real is absent.


@pytest.fixture(scope="module")
def example_ct() -> sitk.Image:
    return read_dicom_series(REAL / "totalseg/example_ct_dicom")


@needs_real
@pytest.mark.realdata
def test_real_jpeg2000_series_with_empty_uid(example_ct):
    (info,) = list_series(REAL / "totalseg/example_ct_dicom")
    assert info.uid == "" and info.num_slices == 20 and info.modality == "CT"
    assert example_ct.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(example_ct.GetSpacing(), (0.9765625, 0.9765625, 2.0), atol=1e-6)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(example_ct.GetDirection()) == "LPS"
    values = sitk.GetArrayViewFromImage(example_ct)
    assert values.min() == -1024 and values.max() == 1839
    assert example_ct.GetMetaDataKeys() == ()


@needs_real
@pytest.mark.realdata
def test_real_series_matches_its_liver_mask(example_ct):
    mask = sitk.ReadImage(str(REAL / "totalseg/example_seg_dicom_liver_binary.nii.gz"))
    # The mask is stored with its y axis flipped (LAS); on the same voxel grid once reoriented to LPS.
    mask = sitk.DICOMOrient(mask, "LPS")
    assert mask.GetSize() == example_ct.GetSize()
    for get in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(mask, get)(), getattr(example_ct, get)(), atol=1e-4)
    liver = sitk.GetArrayViewFromImage(mask) > 0
    assert 40 < float(sitk.GetArrayViewFromImage(example_ct)[liver].mean()) < 160  # liver HU, not a flipped mask


@needs_real
@pytest.mark.realdata
def test_real_three_slice_series_beside_a_seg_object(tmp_path):
    shutil.copytree(REAL / "dcmqi/ct-3slice", tmp_path / "ct")
    shutil.copy(REAL / "dcmqi/liver.dcm", tmp_path / "ct")
    image = read_dicom_series(tmp_path / "ct")
    assert image.GetSize() == (512, 512, 3)
    np.testing.assert_allclose(image.GetSpacing(), (0.810547, 0.810547, 1.0), atol=1e-5)
    np.testing.assert_allclose(image.GetOrigin(), (-235.199997, -226.800003, -128.690002), atol=1e-5)
    (tmp_path / "seg").mkdir()
    shutil.copy(REAL / "dcmqi/liver.dcm", tmp_path / "seg")
    with pytest.raises(InputError, match=r"no CT series \(found SEG\)"):
        read_dicom_series(tmp_path / "seg")
    (seg,) = list_series(tmp_path / "seg")
    assert seg.modality == "SEG" and seg.num_slices == 1
    with pytest.raises(InputError, match=r"one multi-frame DICOM file \(3 frames\) is not supported"):
        read_dicom_series(tmp_path / "seg", series_uid=seg.uid)


@needs_real
@pytest.mark.realdata
def test_real_single_ct_slice_is_refused(tmp_path):
    shutil.copy(REAL / "pydicom/CT_small.dcm", tmp_path)
    with pytest.raises(InputError, match="single slice: a 3D series is needed"):
        read_dicom_series(tmp_path)
