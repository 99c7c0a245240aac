"""Inference tests: geometry checked voxel for voxel against an oracle network, the files the CLI and the bundle
write, the CLI's errors, and real scans.

The oracle (``tests/_oracle.py``) labels each voxel from its own HU. With the preprocessing spacing equal to the
scan's, every step (reorientation, body crop, resampling, windowing, sliding windows, the way back through physical
space) is exact at voxel centres, so the mask must equal the oracle's thresholding of the scan's HU array exactly,
whatever the scan's orientation. A transposed, flipped or shifted axis anywhere would show as a mismatch. Oracles
that read a neighbouring voxel instead check which patient axis each axis of the network's input runs along.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _oracle import (
    INFERENCE_2D,
    INFERENCE_3D,
    HUOracle,
    ct_image,
    dice,
    ellipsoid,
    grid_points,
    oracle_labels,
    oracle_model,
    phantom_hu,
    write_tiny_run,
)
from conftest import ORIENTATIONS
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from monai_pipeline import cli
from monai_pipeline.errors import InputError
from monai_pipeline.inference import Lesion, PostprocessConfig, measure_lesions, scan_summary, segment
from monai_pipeline.inference.postprocess import postprocess
from monai_pipeline.inference.predict import predict_probabilities
from monai_pipeline.inference.run import InferenceCase, find_scans, run_cases
from monai_pipeline.io import Geometry, read_image, write_image
from monai_pipeline.preprocessing.pipeline import preprocess

REPO = Path(__file__).resolve().parents[1]
INFERENCE_JSON = REPO / "bundles" / "liver_tumor_ct" / "configs" / "inference.json"

SIZE = (48, 40, 24)  # (x, y, z)
SPACING = (1.0, 1.2, 2.0)
ORIGIN = (-37.5, 12.25, 101.0)
OFF = PostprocessConfig.off()
SMALL_LIVER = PostprocessConfig(min_liver_ml=0.0)
"""Every step but the no-liver one: the phantom's liver (6 mL) is smaller than a real liver could be."""
LESION_HEADER = list(Lesion.__dataclass_fields__)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One torch thread: on these tiny volumes OpenMP threads cost more than they give, a lot more on a busy
    machine (measured: a 64k-voxel sigmoid 0.1 ms on one thread, 18 ms on two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def hu() -> np.ndarray:
    return phantom_hu(SIZE, SPACING)


def _image(hu: np.ndarray, direction, spacing=SPACING, origin=ORIGIN) -> sitk.Image:
    return ct_image(hu, spacing, origin, direction)


def _grid(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _assert_same_grid(actual: sitk.Image, expected: sitk.Image, atol: float = 0.0) -> None:
    """Same size, and spacing, origin and direction equal (exactly, or to ``atol`` for float32 file headers)."""
    assert actual.GetSize() == expected.GetSize()
    for get in (sitk.Image.GetSpacing, sitk.Image.GetOrigin, sitk.Image.GetDirection):
        np.testing.assert_allclose(get(actual), get(expected), rtol=0, atol=atol, err_msg=get.__name__)


def _leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes left in ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


# --------------------------------------------------------------------------------------------- the oracle, exact


def test_phantom_makes_a_meaningful_oracle_mask(hu):
    expected = oracle_labels(hu)
    counts = np.bincount(expected.ravel(), minlength=3)
    assert counts[1] > 1000 and counts[2] > 100, counts
    for axis in range(3):  # no symmetry that would hide a flipped axis
        assert not np.array_equal(expected, np.flip(expected, axis))


def test_mask_equals_the_oracle_voxel_for_voxel(hu, orientation):
    image = _image(hu, orientation.direction)
    model = oracle_model(SPACING)
    prepared = preprocess(image, model.preprocessing)
    assert prepared.record["crop_box"]["size"] != list(SIZE), "the body crop should cut air, so undoing it is tested"
    assert prepared.record["preprocessed"]["orientation"] == "RAS"

    result = segment(image, model, postprocessing=OFF, probabilities=True)

    assert result.mask.GetPixelID() == sitk.sitkUInt8
    assert _grid(result.mask) == _grid(image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result.mask), oracle_labels(hu))
    for name, label in (("liver", 1), ("tumour", 2)):
        probability = result.probabilities[name]
        assert _grid(probability) == _grid(image)
        np.testing.assert_allclose(sitk.GetArrayFromImage(probability), oracle_labels(hu) == label, atol=1e-4)
    # the lesions, measured inside the tumours' bounding box only, are those of the whole mask on the scan's grid
    full = measure_lesions(oracle_labels(hu), Geometry.of(image), (oracle_labels(hu) == 2).astype(np.float32), hu)
    assert len(result.lesions) == len(full) == 1
    ours, reference = asdict(result.lesions[0]), asdict(full[0])
    for key in ("mean_probability", "max_probability"):
        assert ours.pop(key) == pytest.approx(reference.pop(key), abs=1e-3)
    assert ours == reference
    expected = scan_summary(oracle_labels(hu), Geometry.of(image), full)
    assert {key: result.summary[key] for key in expected} == expected


def test_written_mask_has_the_scans_nifti_header(hu, orientation, tmp_path):
    scan = write_image(_image(hu, orientation.direction), tmp_path / "in" / "ct.nii.gz")
    image = read_image(scan)
    model = oracle_model(SPACING)
    summary = run_cases([InferenceCase("ct", scan)], model, tmp_path / "out", postprocessing=OFF, progress=False)
    assert summary.ok and list(summary.cases) == ["ct"]

    mask_path = tmp_path / "out" / "ct_seg.nii.gz"
    written, source = nib.load(str(mask_path)), nib.load(str(scan))
    assert written.header.get_data_dtype() == np.uint8
    assert written.shape == SIZE
    np.testing.assert_allclose(written.affine, source.affine, rtol=0, atol=1e-4)
    assert int(written.header["qform_code"]) > 0 and int(written.header["sform_code"]) > 0
    np.testing.assert_array_equal(np.asarray(written.dataobj).transpose(2, 1, 0), oracle_labels(hu))

    mask = sitk.ReadImage(str(mask_path))
    # Not bit for bit for the oblique grid: its NIfTI quaternion, rebuilt from the float32 header read back, moves
    # the direction by about 1e-10.
    _assert_same_grid(mask, image, atol=1e-8)
    _assert_same_grid(mask, _image(hu, orientation.direction), atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_anisotropic_scan_resampled_to_coarser_isotropic_spacing(tmp_path):
    # 0.8 x 0.8 x 3.0 mm is anisotropic (3.75 > 3): in-plane linear, then nearest along z, onto 2 mm voxels.
    spacing = (0.8, 0.8, 3.0)
    body = ((10.0, 0.0, 4.0), (30.0, 34.0, 40.0))
    liver, tumour = ((8.0, -4.0, 2.0), (18.0, 16.0, 22.0)), ((2.0, -6.0, 6.0), 7.0)
    hu = phantom_hu((100, 90, 24), spacing, body=body, liver=liver, tumour=tumour)
    image = _image(hu, ORIENTATIONS["oblique"].direction, spacing=spacing)
    model = oracle_model((2.0, 2.0, 2.0))
    assert preprocess(image, model.preprocessing).record["anisotropic_axis"] == 2

    mask = segment(image, model, postprocessing=OFF).mask

    assert _grid(mask) == _grid(image)
    labels, expected = sitk.GetArrayFromImage(mask), oracle_labels(hu)
    # The body's edge (150 HU next to -1000 HU air) interpolates through the liver and tumour HU ranges, so the
    # oracle paints a thin shell there on any resampled grid. Compare inside the body, 6 mm from its edge.
    inner = ellipsoid(grid_points((100, 90, 24), spacing), body[0], np.subtract(body[1], 6.0))
    assert expected[~inner].max() == 0
    assert dice((labels >= 1) & inner, expected >= 1) >= 0.95
    assert dice((labels == 2) & inner, expected == 2) >= 0.85


def _with_detached_liver(hu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``hu`` with a 4 mm ball of liver HU inside the body, far from the liver; and where that ball is."""
    blob = ellipsoid(grid_points(SIZE, SPACING), (12.0, 8.0, -12.0), (4.0, 4.0, 4.0))
    hu = hu.copy()
    hu[blob] = 60
    return hu, blob


def test_detached_liver_is_dropped_on_the_networks_grid_as_on_the_scans(hu, orientation):
    hu, blob = _with_detached_liver(hu)
    assert oracle_labels(hu)[blob].min() == 1
    image = _image(hu, orientation.direction)
    model = oracle_model(SPACING)

    result = segment(image, model, probabilities=True, postprocessing=SMALL_LIVER)

    labels = sitk.GetArrayFromImage(result.mask)
    assert not labels[blob].any() and labels.any()
    plain = segment(image, model, postprocessing=OFF).mask
    expected = postprocess(sitk.GetArrayFromImage(plain), Geometry.of(image), SMALL_LIVER)
    np.testing.assert_array_equal(labels, expected)
    # the probability maps are the network's, post-processing only shapes the mask
    assert sitk.GetArrayFromImage(result.probabilities["liver"])[blob].min() > 0.99


def test_detached_liver_is_dropped_when_the_network_grid_is_coarser(hu):
    hu, blob = _with_detached_liver(hu)
    image = _image(hu, ORIENTATIONS["oblique"].direction)
    model = oracle_model((2.0, 2.0, 2.0))

    labels = sitk.GetArrayFromImage(segment(image, model, postprocessing=SMALL_LIVER).mask)
    plain = sitk.GetArrayFromImage(segment(image, model, postprocessing=OFF).mask)

    assert plain[blob].mean() > 0.5 and not labels[blob].any()
    expected = postprocess(plain, Geometry.of(image), SMALL_LIVER)
    assert dice(labels >= 1, expected >= 1) >= 0.99
    assert dice(labels == 2, expected == 2) >= 0.99


def test_tta_gives_the_same_mask(hu):
    image = _image(hu, ORIENTATIONS["LAI"].direction)
    plain, mirrored = HUOracle(), HUOracle()
    segment(image, oracle_model(SPACING, [plain]), postprocessing=OFF)
    mask = segment(image, oracle_model(SPACING, [mirrored]), postprocessing=OFF, tta=True).mask
    assert mirrored.calls == 8 * plain.calls  # every mirroring of the three axes went through the network
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), oracle_labels(hu))


def test_folds_are_averaged(hu):
    image = _image(hu, ORIENTATIONS["oblique"].direction)
    soft = {"gain": 0.1, "scale": 3.0}  # soft probabilities so that the average is not trivial
    first, second = HUOracle(**soft), HUOracle(tumour=(10.0, 50.0), liver_max=120.0, **soft)
    alone = [predict_probabilities(image, oracle_model(SPACING, [net]))[0] for net in (first, second)]
    both, prepared, _ = predict_probabilities(image, oracle_model(SPACING, [first, second]))
    assert both.shape == (3, *prepared.image.GetSize()[::-1])
    assert np.abs(alone[0] - alone[1]).max() > 0.1
    np.testing.assert_allclose(both, (alone[0] + alone[1]) / 2, atol=1e-5)
    np.testing.assert_allclose(both.sum(axis=0), 1.0, atol=1e-5)


@pytest.mark.parametrize("slices", [2, 3])
@pytest.mark.parametrize("inference", [INFERENCE_3D, INFERENCE_2D], ids=["3d", "2.5d"])
def test_thin_scans_down_to_two_slices_give_the_oracle_mask(hu, slices, inference):
    # far thinner than one window of the network (32 slices) or the body crop's 4 mm bins
    thin = np.ascontiguousarray(hu[11 : 11 + slices])
    assert np.count_nonzero(oracle_labels(thin) == 1) > 100
    image = _image(thin, ORIENTATIONS["LAI"].direction)
    oracle = HUOracle(channel=1 if inference["spatial_dims"] == 2 else 0)
    mask = segment(image, oracle_model(SPACING, [oracle], inference=inference), postprocessing=OFF).mask
    assert _grid(mask) == _grid(image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), oracle_labels(thin))


def test_2d_slice_stacks_give_the_oracle_mask(hu, orientation):
    image = _image(hu, orientation.direction)
    oracle = HUOracle(channel=1)  # the centre of the 3-slice stack
    model = oracle_model(SPACING, [oracle], inference=INFERENCE_2D)
    mask = segment(image, model, postprocessing=OFF).mask
    assert _grid(mask) == _grid(image)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), oracle_labels(hu))
    tta = segment(image, model, postprocessing=OFF, tta=True).mask
    np.testing.assert_array_equal(sitk.GetArrayFromImage(tta), oracle_labels(hu))


def _neighbour_labels(hu: np.ndarray, direction, towards: str, outside: str = "air") -> np.ndarray:
    """The oracle's labels of each voxel's neighbour one voxel towards the patient's side ``towards`` (one of
    RLAPSI), on the scan's own grid; beyond the scan's edge the neighbour is air, or the voxel itself
    ("replicate")."""
    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(d) for d in direction])
    opposite = dict(zip("RLAPSI", "LRPAIS"))[towards]
    axis = next(k for k, letter in enumerate(code) if letter in (towards, opposite))  # the index axis (x, y, z)
    step = 1 if code[axis] == towards else -1
    array_axis = 2 - axis
    padded = np.pad(hu, [(1, 1) if a == array_axis else (0, 0) for a in range(3)], mode="edge")
    if outside == "air":
        padded = np.moveaxis(padded, array_axis, 0).copy()
        padded[[0, -1]] = -1000
        padded = np.moveaxis(padded, 0, array_axis)
    neighbour = np.take(padded, np.arange(hu.shape[array_axis]) + 1 + step, axis=array_axis)
    return oracle_labels(neighbour)


@pytest.mark.parametrize(("axis", "towards"), [(0, "R"), (1, "A")])
def test_network_input_axes_are_ras_x_y_z(hu, orientation, axis, towards):
    # An oracle that labels each voxel from its neighbour along one axis of the network's input: the first spatial
    # axis must run towards the patient's right and the second towards anterior (MONAI's (x, y, z) order of a RAS
    # image), on the scan whatever its orientation. One window covers the whole cropped volume.
    image = _image(hu, orientation.direction)
    inference = dict(INFERENCE_3D, roi_size=[48, 48, 32])
    model = oracle_model(SPACING, [HUOracle(neighbour=(axis, 1))], inference)
    mask = segment(image, model, postprocessing=OFF).mask
    expected = _neighbour_labels(hu, orientation.direction, towards)
    assert not np.array_equal(expected, oracle_labels(hu))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), expected)


def test_slice_stack_channels_run_from_feet_to_head(hu, orientation):
    # 2.5D: the first of the three channels is the slice below (inferior), as SlicesToChannels orders them in
    # training; at the scan's lowest slice it repeats that slice.
    image = _image(hu, orientation.direction)
    model = oracle_model(SPACING, [HUOracle(channel=0)], INFERENCE_2D)
    mask = segment(image, model, postprocessing=OFF).mask
    inferior = _neighbour_labels(hu, orientation.direction, "I", outside="replicate")
    assert not np.array_equal(inferior, oracle_labels(hu))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), inferior)


# ------------------------------------------------------------------------------------- files through the CLI


def _write_dicom_series(folder: Path, hu: np.ndarray, spacing, origin) -> None:
    """An axial (LPS) CT series, one file per slice, stored as HU + 1024 with RescaleIntercept -1024."""
    folder.mkdir(parents=True)
    series, study = generate_uid(), generate_uid()
    for k, pixels in enumerate(hu):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] + k * spacing[2])]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]  # between rows (y), between columns (x)
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1.0, -1024.0, "HU"
        ds.PixelData = (pixels.astype(np.int32) + 1024).astype(np.uint16).tobytes()
        ds.save_as(folder / f"slice{k:03d}.dcm", enforce_file_format=True)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real training-run folder: a tiny random DynUNet, its run.json and a 4 mm preprocessing."""
    return write_tiny_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def scans(tmp_path_factory, hu) -> dict[str, Path]:
    """One scan per format, each in another orientation, and a DICOM series."""
    folder = tmp_path_factory.mktemp("scans")
    paths = {
        "nifti": write_image(_image(hu, ORIENTATIONS["RAS"].direction), folder / "ras.nii.gz"),
        "nrrd": write_image(_image(hu, ORIENTATIONS["LAI"].direction), folder / "lai.nrrd"),
        "mha": write_image(_image(hu, ORIENTATIONS["oblique"].direction), folder / "oblique.mha"),
    }
    _write_dicom_series(folder / "dicom" / "series", hu, SPACING, ORIGIN)
    paths["dicom"] = folder / "dicom" / "series"
    return paths


def _infer(capsys, *args, quiet: bool = True) -> tuple[int, str, str]:
    """Run ``monai-pipeline infer`` in this process; ``--quiet`` keeps progress bars off stderr."""
    code = cli.main(["infer", *map(str, args), *(["--quiet"] if quiet else [])])
    out, err = capsys.readouterr()
    return code, out, err


def _check_written_case(out: Path, name: str, scan: Path) -> np.ndarray:
    """The mask of ``name`` in ``out`` has the scan's geometry and labels; its lesion table has the header."""
    mask = sitk.ReadImage(str(out / f"{name}_seg.nii.gz"))
    assert mask.GetPixelID() == sitk.sitkUInt8
    _assert_same_grid(mask, read_image(scan), atol=1e-4)  # NIfTI headers hold float32
    labels = sitk.GetArrayFromImage(mask)
    assert set(np.unique(labels)) <= {0, 1, 2}
    with (out / f"{name}_lesions.csv").open(newline="") as stream:
        assert next(csv.reader(stream)) == LESION_HEADER
    return labels


@pytest.mark.parametrize("kind", ["nifti", "nrrd", "mha", "dicom"])
def test_cli_segments_each_input_format(kind, run_dir, scans, tmp_path, capsys):
    scan = scans[kind]
    code, out, err = _infer(capsys, "--model", run_dir, "--input", scan, "--output", tmp_path)
    assert code == 0, err
    name = scan.name if kind == "dicom" else scan.name.split(".")[0]
    assert f"{name}: liver" in out and "1 scan(s) segmented, 0 failed" in out
    _check_written_case(tmp_path, name, scan)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["cases"]) == [name] and summary["failed"] == {}
    assert summary["cases"][name]["files"] == {"mask": f"{name}_seg.nii.gz", "lesions": f"{name}_lesions.csv"}
    # the untrained network's mask is never taken at face value: unsure, or too small to be a liver
    codes = {flag["code"] for flag in summary["cases"][name]["flags"]}
    assert codes & {"low_confidence", "no_liver"} and codes <= {"no_liver", "partial_liver", "low_confidence"}
    assert _leftovers(tmp_path) == []


def test_cli_folder_with_a_corrupt_scan_segments_the_others(run_dir, scans, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for kind in ("nifti", "mha"):
        (folder / scans[kind].name).write_bytes(scans[kind].read_bytes())
    data = scans["nifti"].read_bytes()
    (folder / "broken.nii.gz").write_bytes(data[: len(data) // 2])

    code, out, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", tmp_path / "out")

    assert code == 1
    assert "Traceback" not in out + err
    assert "failed broken:" in out and "2 scan(s) segmented, 1 failed" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(summary["cases"]) == ["oblique", "ras"] and list(summary["failed"]) == ["broken"]
    assert "truncated" in summary["failed"]["broken"]
    for name in ("oblique", "ras"):
        _check_written_case(tmp_path / "out", name, next(folder.glob(f"{name}.*")))
    assert not list((tmp_path / "out").glob("broken*")) and _leftovers(tmp_path) == []


def test_cli_refuses_a_scan_that_is_not_ct_and_segments_the_others(run_dir, hu, tmp_path, capsys, caplog):
    """An MR-like scan fails with one line naming it; a CT stored as HU + 1024 is corrected with a warning line."""
    folder = tmp_path / "in"
    reference = _image(hu, ORIENTATIONS["RAS"].direction)
    write_image(reference, folder / "ct.nii.gz")
    stored = sitk.GetImageFromArray((hu.astype(np.int32) + 1024).astype(np.uint16))
    stored.CopyInformation(reference)
    write_image(stored, folder / "offset.nii.gz")
    mr = sitk.GetImageFromArray(np.where(hu > -500, 1500 + 2 * hu.astype(np.int32), 0).astype(np.uint16))
    mr.CopyInformation(reference)
    write_image(mr, folder / "mr.nii.gz")

    code, out, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", tmp_path / "out")

    assert code == 1 and "Traceback" not in out + err
    assert f"failed mr: {folder / 'mr.nii.gz'}: does not look like CT in HU" in out
    assert "2 scan(s) segmented, 1 failed" in out
    assert any(line.startswith(f"{folder / 'offset.nii.gz'}: stored as HU + 1024") for line in caplog.messages)
    masks = [
        sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out" / f"{name}_seg.nii.gz")))
        for name in ("ct", "offset")
    ]
    np.testing.assert_array_equal(masks[0], masks[1])  # the corrected scan is the CT


def test_failed_write_leaves_no_partial_mask(run_dir, scans, tmp_path, capsys, monkeypatch):
    real_write = sitk.WriteImage

    def half_write(image, path, *args, **kwargs):
        real_write(image, path, *args, **kwargs)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise OSError("No space left on device")

    monkeypatch.setattr(sitk, "WriteImage", half_write)
    code, out, err = _infer(capsys, "--model", run_dir, "--input", scans["nifti"], "--output", tmp_path)
    assert code == 1 and "no space left on device" in out and "Traceback" not in out + err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


POSTPROCESS_FLAGS = {
    (): PostprocessConfig(),
    ("--no-postprocess",): OFF,
    ("--no-largest-liver",): PostprocessConfig(keep_largest_liver=False),
    ("--no-tumour-in-liver", "--min-lesion-ml", "0"): PostprocessConfig(tumour_in_liver=False, min_lesion_ml=0.0),
    ("--liver-margin-mm", "4.5", "--min-lesion-ml", "0.2"): PostprocessConfig(liver_margin_mm=4.5, min_lesion_ml=0.2),
}


@pytest.mark.parametrize("flags", list(POSTPROCESS_FLAGS), ids=lambda flags: " ".join(flags) or "default")
def test_cli_switches_each_postprocessing_step(flags, run_dir, scans, tmp_path, capsys, monkeypatch):
    import monai_pipeline.inference as inference

    seen = {}
    real_infer = inference.infer

    def spy(*args, **kwargs):
        seen["postprocessing"] = kwargs["postprocessing"]
        return real_infer(*args, **kwargs)

    monkeypatch.setattr(inference, "infer", spy)
    code, _, _ = _infer(capsys, "--model", run_dir, "--input", scans["nifti"], "--output", tmp_path, *flags)
    assert code == 0 and seen["postprocessing"] == POSTPROCESS_FLAGS[flags]


def _without_file(run: Path, name: str, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    copy.mkdir()
    for path in run.iterdir():
        if path.name != name:
            (copy / path.name).write_bytes(path.read_bytes())
    return copy


ERRORS = {
    "model folder missing": (lambda run, tmp: ["--model", tmp / "nope"], "no such model folder"),
    "model.pt missing": (lambda run, tmp: ["--model", _without_file(run, "model.pt", tmp)], "model.pt: missing"),
    "preprocessing.json missing": (
        lambda run, tmp: ["--model", _without_file(run, "preprocessing.json", tmp)],
        "preprocessing.json: missing",
    ),
    "output is a file": (lambda run, tmp: ["--output", _touch(tmp / "taken.txt")], "is not a folder"),
    "overlap 1.5": (lambda run, tmp: ["--overlap", "1.5"], "--overlap must be >= 0 and < 1"),
    "negative margin": (lambda run, tmp: ["--liver-margin-mm", "-1"], "--liver-margin-mm must be >= 0"),
    "device cuda": (lambda run, tmp: ["--device", "cuda"], "no CUDA GPU"),
    "weights file as model": (
        lambda run, tmp: ["--model", run / "model.pt"],
        "model.pt: is a file: pass the run folder (",
    ),
    "assumed spacing 0": (lambda run, tmp: ["--assume-spacing", "1", "0", "1"], "--assume-spacing must be three"),
}


def _touch(path: Path) -> Path:
    path.write_text("not a folder\n")
    return path


@pytest.mark.parametrize("case", list(ERRORS))
def test_cli_errors_are_one_line(case, run_dir, scans, tmp_path, capsys):
    if case == "device cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    make, message = ERRORS[case]
    args = {"--model": run_dir, "--input": scans["nifti"], "--output": tmp_path / "out"}
    extra = make(run_dir, tmp_path)
    options = dict(zip(extra[::2], extra[1::2]))
    args.update(options)
    argv = [str(v) for item in args.items() for v in item]

    code, out, err = _infer(capsys, *argv, quiet=False)

    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err
    assert "Traceback" not in out + err
    assert not list(tmp_path.rglob("*_seg.nii.gz")) and _leftovers(tmp_path) == []


NOT_3D = {
    "2D": (np.zeros((30, 20), np.int16), "expected a 3D image, got a 2D image (30x20)"),
    "4D": (np.zeros((30, 20, 8, 3), np.int16), "expected a 3D image, got a 4D image (30x20x8x3)"),
    "3 channels": (np.zeros((30, 20, 8, 1, 3), np.int16), "expected a single-channel image, got 3 channels"),
}


@pytest.mark.parametrize("case", list(NOT_3D))
def test_cli_refuses_images_that_are_not_3d(case, run_dir, tmp_path, capsys):
    # A scan that cannot be used is a failed case, as in a folder run: named on stdout and in summary.json, exit 1.
    values, message = NOT_3D[case]
    scan = tmp_path / "odd.nii.gz"
    header = nib.Nifti1Header()
    if values.ndim == 5:
        header.set_intent("vector")
    nib.save(nib.Nifti1Image(values, np.eye(4), header), str(scan))
    code, out, err = _infer(capsys, "--model", run_dir, "--input", scan, "--output", tmp_path / "out")
    assert code == 1
    assert "Traceback" not in out + err
    assert f"failed odd: {scan}: {message}" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["failed"] == {"odd": f"{scan}: {message}"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.json"]


def _bad_headers(folder: Path, hu: np.ndarray) -> dict[str, str]:
    """Scans whose headers cannot be trusted, written into ``folder``, with the line each must fail with."""
    folder.mkdir()
    values = hu.transpose(2, 1, 0)  # nibabel's (x, y, z)
    nospacing = nib.Nifti1Image(values, None)
    nospacing.header["pixdim"][1:4] = 0.0
    nib.save(nospacing, str(folder / "nospacing.nii.gz"))
    nib.save(nib.Nifti1Image(values, np.diag([200.0, 200.0, 200.0, 1.0])), str(folder / "huge.nii.gz"))
    sheared = np.diag([1.0, 1.2, 2.0, 1.0])
    sheared[0, 2] = 0.5
    nib.save(nib.Nifti1Image(values, sheared), str(folder / "sheared.nii.gz"))
    labels = np.zeros(values.shape, np.uint8)
    labels[10:30, 10:30, 5:15], labels[15:20, 15:20, 8:10] = 1, 2
    nib.save(nib.Nifti1Image(labels, np.diag([1.0, 1.2, 2.0, 1.0])), str(folder / "labels.nii.gz"))
    return {
        "nospacing": f"{folder / 'nospacing.nii.gz'}: spacing 0 in the header (no sform or qform either); "
        "infer takes --assume-spacing X Y Z (mm) if you know it",
        "huge": f"{folder / 'huge.nii.gz'}: spacing 200 x 200 x 200 mm in the header: resampled to 4 x 4 x 4 mm it",
        "sheared": f"{folder / 'sheared.nii.gz'}: the direction matrix is not orthonormal (axes 14 degrees off square",
        "labels": f"{folder / 'labels.nii.gz'}: looks like a label map, not a CT scan (3 distinct values: 0, 1, 2)",
    }


def test_scans_with_untrustworthy_headers_fail_with_their_problem_and_the_others_finish(run_dir, hu, tmp_path, capsys):
    folder = tmp_path / "in"
    expected = _bad_headers(folder, hu)
    write_image(_image(hu, ORIENTATIONS["RAS"].direction), folder / "good.nii.gz")
    code, out, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", tmp_path / "out")
    assert code == 1 and "Traceback" not in out + err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert list(summary["cases"]) == ["good"] and sorted(summary["failed"]) == sorted(expected)
    for name, line in expected.items():
        assert summary["failed"][name].startswith(line), summary["failed"][name]
        assert f"failed {name}: {line}" in out
    assert "1 scan(s) segmented, 4 failed" in out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "good_lesions.csv",
        "good_seg.nii.gz",
        "summary.json",
    ]


def test_assumed_spacing_segments_a_scan_without_one(run_dir, hu, tmp_path, capsys, caplog):
    scan = tmp_path / "in" / "nospacing.nii.gz"
    _bad_headers(tmp_path / "in", hu)
    code, out, err = _infer(
        capsys, "--model", run_dir, "--input", scan, "--output", tmp_path / "out", "--assume-spacing", "1", "1.2", "2"
    )
    assert code == 0, out + err
    mask = sitk.ReadImage(str(tmp_path / "out" / "nospacing_seg.nii.gz"))
    np.testing.assert_allclose(mask.GetSpacing(), (1.0, 1.2, 2.0), rtol=1e-6)
    assert "spacing 0 in the header; assumed 1 x 1.2 x 2 mm as asked" in caplog.text


def test_a_library_error_is_reported_by_its_root_cause(run_dir, scans, tmp_path, capsys, monkeypatch):
    from monai_pipeline.inference import run as inference_run

    def failing(*args, **kwargs):
        try:
            sitk.BinShrink(sitk.Image([2, 2, 2], sitk.sitkUInt8), [4, 4, 4])
        except RuntimeError as err:
            raise RuntimeError("applying transform <monai.transforms.Something>") from err

    monkeypatch.setattr(inference_run, "segment", failing)
    code, out, err = _infer(capsys, "--model", run_dir, "--input", scans["nifti"], "--output", tmp_path / "out")
    assert code == 1
    assert (
        f"failed ras: {scans['nifti']}: RuntimeError: ITK ERROR: BinShrinkImageFilter: InputImage is too small! "
        "An output pixel does not map to a whole input bin.\n" in out
    )


def test_output_into_the_dicom_folder_is_refused(run_dir, hu, tmp_path, capsys):
    series = tmp_path / "series"
    _write_dicom_series(series, hu[:4], SPACING, ORIGIN)
    before = sorted(p.name for p in series.iterdir())
    code, out, err = _infer(capsys, "--model", run_dir, "--input", series, "--output", series)
    assert code == 1 and err.startswith("error:") and "would overwrite an input" in err
    assert sorted(p.name for p in series.iterdir()) == before


def test_input_named_like_a_mask_is_kept(run_dir, scans, tmp_path, capsys):
    # `x_seg.nii.gz` is case `x_seg`, whose mask is `x_seg_seg.nii.gz`: a single file never maps onto itself.
    scan = tmp_path / "x_seg.nii.gz"
    scan.write_bytes(scans["nifti"].read_bytes())
    code, out, err = _infer(capsys, "--model", run_dir, "--input", scan, "--output", tmp_path)
    assert code == 0, err
    assert scan.read_bytes() == scans["nifti"].read_bytes()
    _check_written_case(tmp_path, "x_seg", scan)


def test_folder_segmented_into_itself_does_not_overwrite_an_input(run_dir, scans, tmp_path, capsys):
    original = scans["nifti"].read_bytes()
    (tmp_path / "x.nii.gz").write_bytes(original)
    (tmp_path / "x_seg.nii.gz").write_bytes(original)
    code, out, err = _infer(capsys, "--model", run_dir, "--input", tmp_path, "--output", tmp_path)
    assert (tmp_path / "x_seg.nii.gz").read_bytes() == original, "an input scan was overwritten"
    assert code == 1 and err.startswith("error:")


def test_two_scans_with_one_case_name_are_not_silently_merged(run_dir, scans, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.nii.gz").write_bytes(scans["nifti"].read_bytes())
    (folder / "a.nrrd").write_bytes(scans["nrrd"].read_bytes())
    code, out, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", tmp_path / "out")
    refused = code == 1 and err.startswith("error:") and not (tmp_path / "out").exists()
    both_written = code == 0 and len(list((tmp_path / "out").glob("*_seg.nii.gz"))) == 2
    assert refused or both_written, out + err


def test_same_command_twice_with_the_output_inside_the_input_folder(run_dir, scans, tmp_path, capsys):
    (tmp_path / "x.nii.gz").write_bytes(scans["nifti"].read_bytes())
    first, _, _ = _infer(capsys, "--model", run_dir, "--input", tmp_path, "--output", tmp_path / "pred")
    second, out, err = _infer(capsys, "--model", run_dir, "--input", tmp_path, "--output", tmp_path / "pred")
    refused_at_once = first == 1 and not (tmp_path / "pred").exists()
    assert refused_at_once or (first, second) == (0, 0), out + err


def test_folder_run_skips_an_earlier_runs_output_folder(run_dir, scans, tmp_path, capsys, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "x.nii.gz").write_bytes(scans["nifti"].read_bytes())
    code, _, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", folder / "old")
    assert code == 0, err
    assert sorted(p.name for p in (folder / "old").iterdir() if p.suffix in (".gz", ".json", ".csv"))
    assert [case.name for case in find_scans(folder)] == ["x"]
    assert "old" in caplog.text and "not a DICOM series" in caplog.text
    code, out, err = _infer(capsys, "--model", run_dir, "--input", folder, "--output", tmp_path / "new")
    assert code == 0, out + err
    assert [p.name for p in (tmp_path / "new").glob("*_seg.nii.gz")] == ["x_seg.nii.gz"]


def test_folder_with_a_dicom_series_beside_outputs_is_still_a_series(scans, tmp_path):
    folder = tmp_path / "in"
    series = folder / "series"
    series.mkdir(parents=True)
    for path in scans["dicom"].iterdir():
        (series / path.name).write_bytes(path.read_bytes())
    (series / "summary.json").write_text("{}")
    assert [(case.name, case.path) for case in find_scans(folder)] == [("series", series)]


# ------------------------------------------------------------------------------------------------- the bundle


@contextmanager
def _root_logging_restored():
    """``ConfigWorkflow`` applies the bundle's logging.conf to the root logger; put the old handlers back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def bundle_inputs(tmp_path_factory, scans) -> Path:
    folder = tmp_path_factory.mktemp("bundle_scans")
    for kind in ("nifti", "mha"):
        (folder / scans[kind].name).write_bytes(scans[kind].read_bytes())
    series = folder / "series"
    series.mkdir()
    for path in scans["dicom"].iterdir():
        (series / path.name).write_bytes(path.read_bytes())
    return folder


def test_bundle_run_writes_what_the_cli_writes(run_dir, bundle_inputs, tmp_path, capsys):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same single thread as this process, for identical sums
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(INFERENCE_JSON)]
    command += ["--model_dir", str(run_dir), "--dataset_dir", str(bundle_inputs), "--output_dir", str(tmp_path / "b")]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    code, _, err = _infer(capsys, "--model", run_dir, "--input", bundle_inputs, "--output", tmp_path / "c")
    assert code == 0, err

    bundle_files = sorted(p.name for p in (tmp_path / "b").iterdir())
    assert bundle_files == sorted(p.name for p in (tmp_path / "c").iterdir())
    assert bundle_files == sorted(
        [f"{n}_seg.nii.gz" for n in ("oblique", "ras", "series")]
        + [f"{n}_lesions.csv" for n in ("oblique", "ras", "series")]
        + ["summary.json"]
    )
    bundle, command_line = tmp_path / "b", tmp_path / "c"
    for name in ("oblique", "ras", "series"):
        from_bundle = sitk.ReadImage(str(bundle / f"{name}_seg.nii.gz"))
        from_cli = sitk.ReadImage(str(command_line / f"{name}_seg.nii.gz"))
        assert _grid(from_bundle) == _grid(from_cli)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(from_bundle), sitk.GetArrayFromImage(from_cli))
        assert (bundle / f"{name}_lesions.csv").read_text() == (command_line / f"{name}_lesions.csv").read_text()
    cases = [json.loads((tmp_path / d / "summary.json").read_text())["cases"] for d in ("b", "c")]
    for case in cases:
        for record in case.values():
            record.pop("seconds")
    assert cases[0] == cases[1]


def _inference_workflow(run_dir: Path, dataset_dir: Path, output_dir: Path):
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=str(INFERENCE_JSON),
        workflow_type="infer",
        model_dir=str(run_dir),
        dataset_dir=str(dataset_dir),
        output_dir=str(output_dir),
    )
    workflow.initialize()
    return workflow


def test_bundle_inference_workflow_properties(run_dir, bundle_inputs, tmp_path):
    with _root_logging_restored():
        assert _inference_workflow(run_dir, bundle_inputs, tmp_path / "out").check_properties() == []


def test_bundle_run_into_its_own_dataset_folder_does_not_overwrite_an_input(run_dir, scans, tmp_path):
    # The bundle route has the CLI's checks: `x_seg.nii.gz` is a scan there, and x's mask would replace it.
    original = scans["nifti"].read_bytes()
    (tmp_path / "x.nii.gz").write_bytes(original)
    (tmp_path / "x_seg.nii.gz").write_bytes(original)
    with _root_logging_restored():
        workflow = _inference_workflow(run_dir, tmp_path, tmp_path)
        with pytest.raises(RuntimeError) as raised:  # MONAI wraps what an expression raises
            workflow.run()
    assert isinstance(raised.value.__cause__, InputError)
    assert "x_seg.nii.gz: an output would overwrite an input" in str(raised.value.__cause__)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz", "x_seg.nii.gz"]
    assert (tmp_path / "x_seg.nii.gz").read_bytes() == original


# ---------------------------------------------------------------------------------------------- real scans


REAL_SCANS = {
    "dicom": "totalseg/example_ct_dicom",
    "totalseg_nifti": "totalseg/example_ct.nii.gz",
    "lits117": "lits117/volume-117.nii.gz",
}
REAL_LIVER_MAX = 150.0
"""The liver of the contrast-enhanced DICOM series is 52-117 HU (5th-95th percentile under TotalSegmentator's
mask), so on real scans the oracle calls (35, 150] HU liver. It has no tumour class there: real soft tissue holds
thousands of 0-35 HU specks, each of which would be measured as a lesion."""


def _real_oracle(image: sitk.Image):
    inference = dict(INFERENCE_3D, roi_size=[96, 96, 32], sw_batch_size=4)
    return oracle_model(image.GetSpacing(), [HUOracle(tumour=None, liver_max=REAL_LIVER_MAX)], inference)


def _check_oracle_in_crop(labels: np.ndarray, image: sitk.Image, model) -> None:
    """Inside the body crop the mask is the oracle's thresholding, outside it (table, air) background."""
    (x, y, z), (sx, sy, sz) = preprocess(image, model.preprocessing).record["crop_box"].values()
    inside = np.zeros(labels.shape, dtype=bool)
    inside[z : z + sz, y : y + sy, x : x + sx] = True
    expected = oracle_labels(sitk.GetArrayViewFromImage(image), None, REAL_LIVER_MAX)
    np.testing.assert_array_equal(labels[inside], expected[inside])
    assert not labels[~inside].any()
    assert np.count_nonzero(labels == 1) > 10_000


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["totalseg_nifti", "lits117"])
def test_real_scan_mask_is_the_oracle_on_the_scans_grid(name, real_data):
    image = read_image(real_data / REAL_SCANS[name])
    model = _real_oracle(image)
    mask = segment(image, model, postprocessing=OFF).mask
    assert _grid(mask) == _grid(image)
    _check_oracle_in_crop(sitk.GetArrayFromImage(mask), image, model)


@pytest.mark.realdata
def test_real_dicom_mask_overlays_the_totalsegmentator_liver(real_data, tmp_path):
    series = real_data / REAL_SCANS["dicom"]
    image = read_image(series)
    assert image.GetSize() == (512, 512, 20)
    model = _real_oracle(image)
    summary = run_cases([InferenceCase("example", series)], model, tmp_path, postprocessing=OFF, progress=False)
    assert summary.ok, summary.failed

    mask = sitk.ReadImage(str(tmp_path / "example_seg.nii.gz"))
    _assert_same_grid(mask, image, atol=1e-4)
    labels = sitk.GetArrayFromImage(mask)
    _check_oracle_in_crop(labels, image, model)

    # TotalSegmentator's liver is stored LAS (y flipped against the LPS series): put it onto our mask's grid through
    # physical space with nearest neighbour. Where the grids agree, nearly all of its liver is where our mask says
    # liver HU (99.6%); the same mask laid on array for array, i.e. y flipped, would overlap far less (70%).
    reference = sitk.ReadImage(str(real_data / "totalseg" / "example_seg_dicom_liver_binary.nii.gz"))
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reference.GetDirection()) == "LAS"
    on_grid = sitk.GetArrayFromImage(
        sitk.Resample(reference, mask, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    ).astype(bool)
    flipped = sitk.GetArrayFromImage(reference).astype(bool)
    assert on_grid.sum() > 100_000 and on_grid.sum() == flipped.sum()
    inside = float(np.mean(labels[on_grid] >= 1))
    assert inside > 0.9, inside
    assert float(np.mean(labels[flipped] >= 1)) < 0.8 < inside


def test_tta_mirrors_the_axes_the_model_was_trained_to_see_mirrored(caplog):
    from monai_pipeline.inference.predict import _mirrorings

    assert len(list(_mirrorings(3, True))) == 8  # a run that records no axes: every mirroring
    assert list(_mirrorings(3, True, [0, 2])) == [(), (2,), (4,), (2, 4)]
    assert list(_mirrorings(2, True, [1])) == [(), (3,)]
    assert list(_mirrorings(3, False, [0, 1, 2])) == [()]
    with caplog.at_level("WARNING"):
        assert list(_mirrorings(3, True, [])) == [()]
    assert "trained without mirroring" in caplog.text


def test_an_unexpected_library_error_of_a_command_shows_its_root_cause(capsys):
    import argparse

    def command(args):
        try:
            sitk.BinShrink(sitk.Image([2, 2, 2], sitk.sitkUInt8), [4, 4, 4])
        except RuntimeError as err:
            raise RuntimeError("applying transform <monai.transforms.Something>") from err

    code = cli.run_command(command, argparse.Namespace(debug=False, quiet=True))
    assert code == 1
    assert capsys.readouterr().err == (
        "error: unexpected RuntimeError: ITK ERROR: BinShrinkImageFilter: InputImage is too small! An output pixel "
        "does not map to a whole input bin. (run with --debug for details)\n"
    )
