"""Tests for monai_pipeline.io reading and writing: round trips in every orientation, atomicity, metadata, bad input."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from monai_pipeline.errors import InputError, PipelineError, case_failure, reason, root_cause
from monai_pipeline.io import (
    Geometry,
    atomic_path,
    case_name,
    check_label_values,
    is_image_file,
    load_image,
    read_image,
    write_image,
    write_mask,
)

SIZE = (9, 7, 5)  # (x, y, z): all different so a transposed axis shows
SPACING = (0.7, 0.9, 2.5)
ORIGIN = (-120.5, 33.25, -410.0)
SUFFIXES = [".nii.gz", ".nii", ".nrrd", ".mha"]
PATIENT_NAME = "Doe^Jane"


def _expected_ras_affine(geometry: Geometry) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(geometry.direction).reshape(3, 3) @ np.diag(geometry.spacing)
    affine[:3, 3] = geometry.origin
    affine[:2, :] *= -1.0
    return affine


def _assert_same_geometry(read: Geometry, written: Geometry) -> None:
    assert read.size == written.size
    np.testing.assert_allclose(read.spacing, written.spacing, rtol=0, atol=1e-5)
    np.testing.assert_allclose(read.origin, written.origin, rtol=0, atol=1e-5)
    np.testing.assert_allclose(read.direction, written.direction, rtol=0, atol=1e-5)
    assert read.differences(written) == []


def _assert_input_error(path: Path, word: str) -> InputError:
    with pytest.raises(InputError) as caught:
        read_image(path)
    message = str(caught.value)
    assert "\n" not in message, message
    assert str(path) in message
    assert word.lower() in message.lower(), message
    assert caught.value.path == str(path)
    return caught.value


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- round trips ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int16, np.uint8], ids=["int16-ct", "uint8-mask"])
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_read_round_trip(make_image, orientation, suffix, dtype, tmp_path):
    image = make_image(SIZE, SPACING, ORIGIN, orientation.direction, dtype)
    path = tmp_path / f"case{suffix}"

    assert write_image(image, path) == path
    back = read_image(path)

    written = sitk.GetArrayFromImage(image)
    read = sitk.GetArrayFromImage(back)
    assert read.dtype == written.dtype
    np.testing.assert_array_equal(read, written)
    _assert_same_geometry(Geometry.of(back), Geometry.of(image))
    assert Geometry.of(back).orientation == Geometry.of(image).orientation


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_load_image_returns_zyx_array_and_geometry(make_image, orientation, suffix, tmp_path):
    image = make_image(SIZE, SPACING, ORIGIN, orientation.direction, np.int16)
    path = write_image(image, tmp_path / f"ct{suffix}")

    array, geometry = load_image(path)

    assert isinstance(array, np.ndarray)
    assert array.shape == (5, 7, 9) == geometry.shape
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(image))
    # the (z, y, x) array indexes like the image's (x, y, z) index
    assert array[4, 6, 8] == image[8, 6, 4]
    _assert_same_geometry(geometry, Geometry.of(image))


def test_float_image_round_trips(make_image, tmp_path):
    image = make_image(SIZE, SPACING, ORIGIN, dtype=np.float32) * 0.25
    back = read_image(write_image(image, tmp_path / "float.nii.gz"))

    assert back.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))


def test_nifti_written_as_nibabel_reads_it(make_image, orientation, tmp_path):
    image = make_image(SIZE, SPACING, ORIGIN, orientation.direction, np.int16)
    path = write_image(image, tmp_path / "ct.nii.gz")

    nifti = nib.load(path)

    assert nifti.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asanyarray(nifti.dataobj), sitk.GetArrayFromImage(image).transpose(2, 1, 0))
    np.testing.assert_allclose(nifti.affine, _expected_ras_affine(Geometry.of(image)), atol=1e-4)


def test_uncompressed_nifti_is_not_gzipped(make_image, tmp_path):
    nii = write_image(make_image(SIZE, SPACING, ORIGIN), tmp_path / "ct.nii")
    gz = write_image(make_image(SIZE, SPACING, ORIGIN), tmp_path / "ct.nii.gz")

    assert nii.read_bytes()[:2] != b"\x1f\x8b"
    assert gz.read_bytes()[:2] == b"\x1f\x8b"


def test_write_image_makes_parent_folders(make_image, tmp_path):
    path = write_image(make_image(SIZE, SPACING, ORIGIN), tmp_path / "a" / "b" / "ct.nrrd")
    assert path.is_file()
    assert read_image(path).GetSize() == SIZE


# ---- write_mask ----------------------------------------------------------------------------------------------------


def test_write_mask_uses_the_geometry_exactly(make_image, orientation, tmp_path):
    scan = make_image(SIZE, SPACING, ORIGIN, orientation.direction, np.int16)
    geometry = Geometry.of(scan)
    mask = np.zeros(geometry.shape, dtype=np.int64)
    mask[1:4, 2:5, 3:7] = 1
    mask[2, 3, 4] = 2

    path = write_mask(mask, geometry, tmp_path / "case_seg.nii.gz")

    nifti = nib.load(path)
    assert nifti.get_data_dtype() == np.uint8
    assert nifti.shape == (9, 7, 5)
    np.testing.assert_array_equal(np.asanyarray(nifti.dataobj), mask.transpose(2, 1, 0))
    np.testing.assert_allclose(nifti.affine, geometry.affine_ras, atol=1e-4)
    np.testing.assert_allclose(nifti.affine, _expected_ras_affine(geometry), atol=1e-4)
    array, read_geometry = load_image(path)
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, mask)
    _assert_same_geometry(read_geometry, geometry)


def test_write_mask_from_float_labels(tmp_path):
    geometry = Geometry(size=SIZE, spacing=SPACING, origin=ORIGIN, direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    mask = np.zeros(geometry.shape, dtype=np.float32)
    mask[0, 0, 0], mask[4, 6, 8] = 1.0, 2.0

    array, _ = load_image(write_mask(mask, geometry, tmp_path / "m.nrrd"))

    assert array.dtype == np.uint8
    assert array[0, 0, 0] == 1 and array[4, 6, 8] == 2 and int(array.sum()) == 3


@pytest.mark.parametrize("shape", [(9, 7, 5), (5, 7, 8), (7, 9), (1, 5, 7, 9)], ids=["xyz-order", "short", "2d", "4d"])
def test_write_mask_rejects_wrong_shape(shape, tmp_path):
    geometry = Geometry(size=SIZE, spacing=SPACING, origin=ORIGIN, direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    path = tmp_path / "m.nii.gz"

    with pytest.raises(ValueError, match="does not match"):
        write_mask(np.zeros(shape, dtype=np.uint8), geometry, path)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


# ---- atomic writing ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_leaves_only_the_file(make_image, suffix, tmp_path):
    write_image(make_image(SIZE, SPACING, ORIGIN), tmp_path / f"ct{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [f"ct{suffix}"]


def _failing_writer(calls: list[str]):
    def write(image, path, *args, **kwargs):
        calls.append(str(path))
        Path(path).write_bytes(b"partial nifti header")
        raise RuntimeError("disk full")

    return write


def test_failed_write_leaves_nothing(make_image, monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setattr(sitk, "WriteImage", _failing_writer(calls))
    destination = tmp_path / "ct.nii.gz"

    with pytest.raises(RuntimeError, match="disk full"):
        write_image(make_image(SIZE, SPACING, ORIGIN), destination)

    assert len(calls) == 1 and calls[0] != str(destination)  # the writer was given a temporary name
    assert not destination.exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_old_file(make_image, monkeypatch, tmp_path):
    destination = write_image(make_image(SIZE, SPACING, ORIGIN), tmp_path / "ct.nii.gz")
    before = destination.read_bytes()
    monkeypatch.setattr(sitk, "WriteImage", _failing_writer([]))

    with pytest.raises(RuntimeError, match="disk full"):
        write_image(make_image((4, 4, 4), SPACING, ORIGIN), destination)

    assert destination.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]
    monkeypatch.undo()
    assert read_image(destination).GetSize() == SIZE


def test_overwrite_replaces_the_file(make_image, tmp_path):
    destination = tmp_path / "ct.mha"
    write_image(make_image((4, 4, 4), SPACING, ORIGIN), destination)
    write_image(make_image(SIZE, SPACING, ORIGIN), destination)

    assert read_image(destination).GetSize() == SIZE
    assert [p.name for p in tmp_path.iterdir()] == ["ct.mha"]


@pytest.mark.parametrize("name", ["volume-3.nii.gz", "ct.nii", "seg.nrrd", "x.mha"])
def test_atomic_path_keeps_endings_and_renames(name, tmp_path):
    destination = tmp_path / "sub" / name
    payload = gzip.compress(b"payload") if name.endswith(".gz") else b"payload"  # a .gz file is checked to be whole
    with atomic_path(destination) as tmp:
        ending = name[name.index(".") :]
        assert tmp.name.endswith(ending)
        assert tmp.parent == destination.parent
        assert tmp != destination
        assert not destination.exists()
        tmp.write_bytes(payload)

    assert destination.read_bytes() == payload
    assert [p.name for p in destination.parent.iterdir()] == [name]


def test_atomic_path_on_error_removes_temp_and_keeps_old(tmp_path):
    destination = tmp_path / "volume-3.nii.gz"
    destination.write_bytes(b"old")

    with pytest.raises(KeyError), atomic_path(destination) as tmp:
        tmp.write_bytes(b"half")
        raise KeyError("boom")

    assert destination.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["volume-3.nii.gz"]


# ---- metadata ------------------------------------------------------------------------------------------------------


def _image_with_patient_name(make_image) -> sitk.Image:
    image = make_image(SIZE, SPACING, ORIGIN)
    image.SetMetaData("0010|0010", PATIENT_NAME)
    image.SetMetaData("PatientName", PATIENT_NAME)
    return image


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_write_image_drops_metadata(make_image, suffix, tmp_path):
    image = _image_with_patient_name(make_image)
    control = tmp_path / f"control{suffix}"
    sitk.WriteImage(image, str(control))
    assert PATIENT_NAME.encode() in control.read_bytes()  # the format would carry it

    path = write_image(image, tmp_path / f"ct{suffix}")

    assert PATIENT_NAME.encode() not in path.read_bytes()
    assert b"0010|0010" not in path.read_bytes()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_image(path)), sitk.GetArrayFromImage(image))


def test_write_image_leaves_callers_image_alone(make_image, tmp_path):
    image = _image_with_patient_name(make_image)
    pixels = sitk.GetArrayFromImage(image)

    write_image(image, tmp_path / "ct.nrrd")

    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), pixels)
    assert set(image.GetMetaDataKeys()) == {"0010|0010", "PatientName"}
    assert image.GetMetaData("0010|0010") == PATIENT_NAME


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_read_image_returns_no_metadata(make_image, suffix, tmp_path):
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(_image_with_patient_name(make_image), str(path))
    assert sitk.ReadImage(str(path)).GetMetaDataKeys()  # plain SimpleITK keeps some

    assert read_image(path).GetMetaDataKeys() == ()


# ---- bad input -----------------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    _assert_input_error(tmp_path / "nope" / "volume-1.nii.gz", "no such")


def test_unsupported_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not an image")
    error = _assert_input_error(path, "not an image file")
    assert ".nii.gz" in str(error)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_corrupt_file(suffix, tmp_path):
    path = tmp_path / f"corrupt{suffix}"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_input_error(path, "cannot be read")


@pytest.mark.parametrize(
    "suffix",
    [
        ".nii.gz",
        ".nii",
        ".nrrd",
        ".mha",
    ],
)
def test_truncated_file(make_image, suffix, tmp_path):
    whole = write_image(make_image((40, 30, 20), SPACING, ORIGIN), tmp_path / f"whole{suffix}")
    data = whole.read_bytes()
    path = tmp_path / f"truncated{suffix}"
    path.write_bytes(data[: len(data) // 2])

    _assert_input_error(path, "truncated")


def test_2d_image(make_image, tmp_path):
    path = write_image(make_image(SIZE, SPACING, ORIGIN)[:, :, 0], tmp_path / "slice.nii.gz")
    _assert_input_error(path, "2D")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_single_slice_3d_image(make_image, suffix, tmp_path):
    image = make_image((9, 7, 1), SPACING, ORIGIN)
    assert image.GetDimension() == 3
    path = write_image(image, tmp_path / f"one{suffix}")
    _assert_input_error(path, "single slice")


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_4d_image_with_three_time_points(make_image, suffix, tmp_path):
    volume = make_image(SIZE, SPACING, ORIGIN)
    series = sitk.JoinSeries([volume, volume, volume])
    assert series.GetDimension() == 4 and series.GetSize() == (9, 7, 5, 3)
    path = write_image(series, tmp_path / f"fmri{suffix}")

    error = _assert_input_error(path, "4D")
    assert "9x7x5x3" in str(error)


def test_4d_image_with_one_time_point_reads_as_3d(make_image, tmp_path):
    volume = make_image(SIZE, SPACING, ORIGIN)
    path = write_image(sitk.JoinSeries([volume]), tmp_path / "one_time_point.mha")

    array, geometry = load_image(path)

    assert geometry.size == SIZE
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(volume))


@pytest.mark.parametrize(
    "suffix",
    [
        ".nrrd",
        ".mha",
        ".nii.gz",
        ".nii",
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_float_image_with_nan(make_image, suffix, bad, tmp_path):
    array = sitk.GetArrayFromImage(make_image(SIZE, SPACING, ORIGIN, dtype=np.float32))
    array[2, 3, 4] = bad
    image = sitk.GetImageFromArray(array)
    path = write_image(image, tmp_path / f"nan{suffix}")

    error = _assert_input_error(path, "NaN")
    assert "1 NaN" in str(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_vector_image(suffix, tmp_path):
    image = sitk.GetImageFromArray(np.zeros((5, 7, 9, 2), dtype=np.float32), isVector=True)
    assert image.GetNumberOfComponentsPerPixel() == 2
    path = write_image(image, tmp_path / f"vector{suffix}")

    error = _assert_input_error(path, "single-channel")
    assert "2 channels" in str(error)


# ---- label values --------------------------------------------------------------------------------------------------


def _label(values, dtype) -> sitk.Image:
    array = np.zeros((3, 4, 5), dtype=dtype)
    array.flat[: len(values)] = values
    return sitk.GetImageFromArray(array)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [([0, 1, 2], np.uint8), ([0.0, 1.0, 2.0], np.float32), ([0, 1], np.int16), ([0.0], np.float64)],
    ids=["uint8", "float32", "int16-no-tumour", "float64-empty"],
)
def test_check_label_values_accepts(values, dtype):
    assert check_label_values(_label(values, dtype), "seg.nii.gz") is None


@pytest.mark.parametrize(
    ("values", "dtype", "shown"),
    [
        ([0, 1, 3], np.uint8, "3"),
        ([0, 2, 255], np.uint8, "255"),
        ([1, 3, 255], np.uint8, "3, 255"),
        ([0.0, 3.0], np.float32, "3"),
        ([0, -1], np.int16, "-1"),
    ],
    ids=["3", "255", "3-and-255", "float-3", "negative"],
)
def test_check_label_values_rejects_and_names_values(values, dtype, shown):
    with pytest.raises(InputError) as caught:
        check_label_values(_label(values, dtype), "/data/seg-7.nii.gz")
    message = str(caught.value)
    assert message.startswith("/data/seg-7.nii.gz: ")
    assert f"label values {shown} outside {{0, 1, 2}}" in message
    assert "\n" not in message


@pytest.mark.parametrize("bad", [0.5, np.nan], ids=["half", "nan"])
def test_check_label_values_rejects_non_integers(bad):
    with pytest.raises(InputError, match="non-integer") as caught:
        check_label_values(_label([0.0, 1.0, bad], np.float32), "seg.nii.gz")
    assert "seg.nii.gz" in str(caught.value)


def test_check_label_values_other_allowed_set():
    check_label_values(_label([0, 1], np.uint8), "liver.nii.gz", allowed=(0, 1))
    with pytest.raises(InputError, match="label values 2 outside"):
        check_label_values(_label([0, 2], np.uint8), "liver.nii.gz", allowed=(0, 1))


# ---- names ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/data/lits/volume-3.nii.gz", "volume-3"),
        ("a.nii", "a"),
        ("b.nrrd", "b"),
        ("c.mha", "c"),
        ("d.nhdr", "d"),
        ("e.mhd", "e"),
        ("UPPER.NII.GZ", "UPPER"),
        ("case.v2.nii.gz", "case.v2"),
        (Path("/x/y/liver_17.nii.gz"), "liver_17"),
        ("notes.txt", "notes.txt"),
    ],
)
def test_case_name(path, name):
    assert case_name(path) == name


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("volume-3.nii.gz", True),
        ("a.nii", True),
        ("b.nrrd", True),
        ("c.mha", True),
        ("c.mhd", True),
        ("c.nhdr", True),
        ("VOLUME.NII.GZ", True),
        (Path("/d/ct.Nrrd"), True),
        ("notes.txt", False),
        ("archive.gz", False),
        ("volume.nii.gz.bak", False),
        ("datalist.json", False),
        ("nii", False),
    ],
)
def test_is_image_file(path, expected):
    assert is_image_file(path) is expected


# ---- real data -----------------------------------------------------------------------------------------------------


def test_real_totalseg_ct(real_data):
    path = real_data / "totalseg" / "example_ct.nii.gz"
    nifti = nib.load(path)

    array, geometry = load_image(path)

    assert geometry.size == (122, 101, 112) == nifti.shape
    assert array.shape == (112, 101, 122)
    np.testing.assert_allclose(geometry.spacing, (3.0, 3.0, 3.0), atol=1e-5)
    np.testing.assert_allclose(geometry.spacing, nifti.header.get_zooms()[:3], atol=1e-5)
    assert geometry.orientation == "RAS" == "".join(nib.aff2axcodes(nifti.affine))
    np.testing.assert_allclose(geometry.affine_ras, nifti.affine, atol=1e-4)
    np.testing.assert_array_equal(array, np.asanyarray(nifti.dataobj).transpose(2, 1, 0))


def test_real_lits_volume(real_data):
    path = real_data / "lits117" / "volume-117.nii.gz"
    nifti = nib.load(path)

    array, geometry = load_image(path)

    assert geometry.size == (128, 128, 128)
    assert array.dtype == np.int16
    assert geometry.orientation == "LPS" == "".join(nib.aff2axcodes(nifti.affine))
    np.testing.assert_allclose(geometry.spacing, (1.0, 1.0, 1.0), atol=1e-5)
    np.testing.assert_allclose(geometry.affine_ras, nifti.affine, atol=1e-4)
    assert -1100 < float(array.mean()) < 500  # HU, not raw or rescaled values


def test_real_dcmqi_nrrd_label(real_data):
    path = real_data / "dcmqi" / "liver_spine_seg.nrrd"

    image = read_image(path)

    assert image.GetDimension() == 3
    assert image.GetSize() == (512, 512, 3)
    values = set(np.unique(sitk.GetArrayViewFromImage(image)).tolist())
    assert values <= {0, 1, 2} and 1 in values
    check_label_values(image, path)


@pytest.mark.parametrize(
    "relative", ["totalseg/example_ct.nii.gz", "lits117/volume-117.nii.gz", "dcmqi/liver_spine_seg.nrrd"]
)
def test_reading_real_data_does_not_modify_it(real_data, relative):
    path = real_data / relative
    before, mtime = _sha256(path), os.stat(path).st_mtime_ns

    load_image(path)

    assert _sha256(path) == before
    assert os.stat(path).st_mtime_ns == mtime


# Headers whose geometry cannot be trusted: spacing 0, axes that are not orthogonal.


def _nifti_without_spacing(path: Path, sform: np.ndarray | None = None) -> Path:
    """A NIfTI with pixdim 0 and, unless ``sform`` is given, no sform or qform (nibabel and ITK then guess 1 mm)."""
    image = nib.Nifti1Image(np.full((6, 5, 4), -1000, np.int16), None)
    image.header["pixdim"][1:4] = 0.0
    if sform is not None:
        image.set_sform(sform, code=1)
    nib.save(image, str(path))
    return path


def test_spacing_0_without_sform_or_qform_is_refused(tmp_path):
    path = _nifti_without_spacing(tmp_path / "nospacing.nii.gz")
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == (
        f"{path}: spacing 0 in the header (no sform or qform either); "
        "infer takes --assume-spacing X Y Z (mm) if you know it"
    )


def test_an_sform_with_an_axis_of_length_0_is_refused(tmp_path):
    path = _nifti_without_spacing(tmp_path / "flat.nii.gz", sform=np.diag([0.8, 0.8, 0.0, 1.0]))
    with pytest.raises(InputError, match="spacing 0 in the header"):
        read_image(path)


def test_assumed_spacing_is_used_only_when_the_header_has_none(make_image, tmp_path, caplog):
    path = _nifti_without_spacing(tmp_path / "nospacing.nii.gz")
    with caplog.at_level("WARNING", logger="monai_pipeline.io.reader"):
        image = read_image(path, assume_spacing=(0.8, 0.9, 2.5))
    assert image.GetSpacing() == pytest.approx((0.8, 0.9, 2.5))
    assert f"{path}: spacing 0 in the header; assumed 0.8 x 0.9 x 2.5 mm as asked" in caplog.text
    with pytest.raises(InputError, match="--assume-spacing must be three positive sizes"):
        read_image(path, assume_spacing=(0.8, 0.0, 2.5))
    written = write_image(make_image(), tmp_path / "ok.nii.gz")
    assert read_image(written, assume_spacing=(5.0, 5.0, 5.0)).GetSpacing() == pytest.approx(SPACING)


def _metaimage(path: Path, geometry: str) -> Path:
    """A 6 x 5 x 4 MetaImage header with the ``geometry`` lines, beside its raw data."""
    path.with_suffix(".raw").write_bytes(np.zeros((4, 5, 6), np.int16).tobytes())
    path.write_text(
        f"ObjectType = Image\nNDims = 3\n{geometry}\nDimSize = 6 5 4\nElementType = MET_SHORT\n"
        f"ElementDataFile = {path.with_suffix('.raw').name}\n"
    )
    return path


def test_metaimage_with_spacing_0_is_refused(tmp_path):
    path = _metaimage(tmp_path / "zero.mhd", "ElementSpacing = 0 1 1")
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: spacing 0 in the header; write the voxel size into it"


SHEARED = (
    "the direction matrix is not orthonormal (axes {} degrees off square: a sheared grid); resample it onto an "
    "orthogonal grid first, e.g. with nibabel.processing.resample_to_output"
)


def test_sheared_nifti_names_the_problem_and_the_fix(tmp_path):
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[0, 1] = 0.8 * np.tan(np.radians(10.0))  # the y axis leans 10 degrees towards x
    path = tmp_path / "sheared.nii.gz"
    nib.save(nib.Nifti1Image(np.full((6, 5, 4), -1000, np.int16), affine), str(path))
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value) == f"{path}: " + SHEARED.format("10")


def test_sheared_metaimage_is_refused_too(tmp_path):
    # ITK reads a MetaImage's skewed TransformMatrix without complaint; the pipeline must not.
    path = _metaimage(tmp_path / "sheared.mhd", "ElementSpacing = 1 1 1\nTransformMatrix = 1 0 0 0.5 1 0 0 0 1")
    with pytest.raises(InputError, match=r"not orthonormal \(axes 26\.6 degrees off square"):
        read_image(path)


def test_float32_rounding_of_an_oblique_affine_is_not_shear(make_image, tmp_path):
    oblique = (0.9659258, -0.2588190, 0.0, 0.2588190, 0.9659258, 0.0, 0.0, 0.0, 1.0)  # 15 degrees, 7 digits
    path = write_image(make_image(direction=oblique), tmp_path / "oblique.nii.gz")
    assert read_image(path).GetSize() == SIZE


def test_library_errors_are_reported_by_their_root_cause():
    try:
        try:
            sitk.BinShrink(sitk.Image([2, 2, 2], sitk.sitkUInt8), [4, 4, 4])
        except RuntimeError as err:
            raise RuntimeError("applying transform <monai.transforms.Something>") from err  # as MONAI wraps it
    except RuntimeError as err:
        wrapped = err
    assert str(root_cause(wrapped)).startswith("Exception thrown in SimpleITK BinShrink: /")
    assert reason(root_cause(wrapped)) == (
        "ITK ERROR: BinShrinkImageFilter: InputImage is too small! An output pixel does not map to a whole input bin."
    )
    assert case_failure(wrapped, "scan.nii.gz") == f"scan.nii.gz: RuntimeError: {reason(root_cause(wrapped))}"
    assert case_failure(PipelineError("grid too large"), "scan.nii.gz") == "scan.nii.gz: grid too large"
    assert case_failure(InputError("other.nii.gz", "bad"), "scan.nii.gz") == "other.nii.gz: bad"
    assert case_failure(MemoryError(), "scan.nii.gz") == "scan.nii.gz: MemoryError"
