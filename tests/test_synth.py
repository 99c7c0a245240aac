"""Synthetic phantoms: values, labels, anatomy fixed in patient space, and datasets written in LiTS/MSD layout."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage
from scipy.spatial.transform import Rotation

from monai_pipeline.errors import InputError
from monai_pipeline.io.geometry import Geometry, lps_to_ras_affine
from monai_pipeline.io.writer import write_image
from monai_pipeline.synth import case_grid, direction_cosines, make_phantom, sample_anatomy, write_synthetic_dataset

SIZE, SPACING = (64, 64, 24), (5.5, 5.5, 10.0)  # a 352 x 352 x 240 mm field of view, as the default grid
OBLIQUE = tuple(Rotation.from_euler("ZX", [17, 5], degrees=True).as_matrix().ravel())  # LPS turned about z and x


def arrays(ct: sitk.Image, label: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    return sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(label)


@pytest.fixture(scope="module")
def phantom() -> tuple[sitk.Image, sitk.Image]:
    return make_phantom(3, size=SIZE, spacing=SPACING)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_same_seed_same_phantom_other_seed_other(phantom):
    ct, label = arrays(*phantom)
    again_ct, again_label = arrays(*make_phantom(3, size=SIZE, spacing=SPACING))
    other_ct, other_label = arrays(*make_phantom(4, size=SIZE, spacing=SPACING))
    np.testing.assert_array_equal(ct, again_ct)
    np.testing.assert_array_equal(label, again_label)
    assert not np.array_equal(label, other_label)
    assert Geometry.of(phantom[0]) == Geometry.of(make_phantom(3, size=SIZE, spacing=SPACING)[1])


def test_types_grid_and_label_values(phantom):
    ct, label = phantom
    assert ct.GetPixelID() == sitk.sitkInt16 and label.GetPixelID() == sitk.sitkUInt8
    assert ct.GetSize() == SIZE and ct.GetSpacing() == SPACING
    assert Geometry.of(ct) == Geometry.of(label)
    values = set(np.unique(sitk.GetArrayViewFromImage(label)).tolist())
    assert values == {0, 1, 2}


def test_hounsfield_units_are_ct_like(phantom):
    ct, label = arrays(*phantom)
    liver = ct[label == 1].mean()
    assert 40 <= liver <= 80
    assert ct[label == 2].mean() <= liver - 20
    corners = ct[:, :4, :4]  # the field of view is wider than the body: its corners are air
    assert corners.mean() < -950 and np.percentile(corners, 99.9) < -900
    body = ct[ct > -500]
    assert ((body > -150) & (body < -50)).mean() > 0.03  # subcutaneous and visceral fat
    assert ct.max() > 400  # bone


@pytest.mark.parametrize("seed", range(6))
def test_tumours_lie_inside_the_liver(seed):
    label = sitk.GetArrayFromImage(make_phantom(seed, size=SIZE, spacing=SPACING, noise=False)[1])
    tumour = label == 2
    touching = ndimage.binary_dilation(tumour, ndimage.generate_binary_structure(3, 1)) & ~tumour
    assert tumour.any() and (label[touching] == 1).all()


def test_tumour_counts_and_sizes():
    diameters = [[2 * t.shape.radii.mean() for t in sample_anatomy(seed).tumours] for seed in range(4)]
    assert all(1 <= len(case) <= 6 for case in diameters)
    assert all(4 <= d <= 46 for case in diameters for d in case)
    assert any(d <= 10 for case in diameters for d in case)  # a small one
    assert any(d >= 25 for case in diameters for d in case)  # a large one


@pytest.mark.parametrize("orientation", ["RAS", "LAI", "RPI"])
def test_same_anatomy_on_grids_of_any_orientation(phantom, orientation):
    reference = phantom[1]
    label = make_phantom(3, size=SIZE, spacing=SPACING, orientation=orientation)[1]
    assert Geometry.of(label).orientation == orientation
    resampled = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    ref, res = sitk.GetArrayViewFromImage(reference), sitk.GetArrayViewFromImage(resampled)
    assert dice(ref >= 1, res >= 1) > 0.97
    assert dice(ref == 2, res == 2) > 0.9


def test_same_anatomy_on_an_oblique_grid():
    reference = make_phantom(3, size=(96, 96, 32), spacing=(3.7, 3.7, 7.5), noise=False)[1]
    label = make_phantom(3, size=(96, 96, 32), spacing=(3.7, 3.7, 7.5), orientation=OBLIQUE, noise=False)[1]
    np.testing.assert_allclose(label.GetDirection(), direction_cosines(OBLIQUE))
    resampled = sitk.Resample(label, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert dice(sitk.GetArrayViewFromImage(reference) >= 1, sitk.GetArrayViewFromImage(resampled) >= 1) > 0.9


@pytest.mark.parametrize("orientation", ["LPS", "RAS", "LAI"])
def test_liver_on_the_patients_right(orientation):
    label = make_phantom(1, size=SIZE, spacing=SPACING, orientation=orientation, noise=False)[1]
    index = np.argwhere(sitk.GetArrayViewFromImage(label) >= 1)[:, ::-1].mean(axis=0)  # (x, y, z) index
    centroid = label.TransformContinuousIndexToPhysicalPoint(index.tolist())
    body = label.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in label.GetSize()])
    np.testing.assert_allclose(body, sample_anatomy(1).centre, atol=1e-6)  # the field of view is centred on the body
    assert centroid[0] < body[0] - 20  # LPS x grows to the left: the right side has smaller x


def test_oblique_direction_survives_writing(tmp_path):
    ct = make_phantom(2, size=(32, 32, 12), spacing=(11.0, 11.0, 20.0), orientation=OBLIQUE)[0]
    path = write_image(ct, tmp_path / "oblique.nii.gz")
    back = sitk.ReadImage(str(path))
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-5)
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    nifti = nib.load(path)
    assert nifti.get_data_dtype() == np.int16
    expected = lps_to_ras_affine(ct.GetSpacing(), ct.GetOrigin(), ct.GetDirection())
    np.testing.assert_allclose(nifti.affine, expected, atol=1e-3)
    assert nib.aff2axcodes(nifti.affine) == ("L", "P", "S")  # nearest axes, in nibabel's RAS terms


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="orientation"):
        make_phantom(0, orientation="XYZ")
    with pytest.raises(ValueError, match="orthonormal"):
        make_phantom(0, orientation=(1, 0, 0, 0, 2, 0, 0, 0, 1))
    with pytest.raises(ValueError, match="seed"):
        make_phantom(-1)
    with pytest.raises(ValueError, match="size"):
        make_phantom(0, size=(64, 64))
    with pytest.raises(ValueError, match="layout"):
        write_synthetic_dataset("unused", 1, layout="nnunet")
    with pytest.raises(ValueError, match="cases"):
        write_synthetic_dataset("unused", 0)


def test_dataset_into_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a folder"):
        write_synthetic_dataset(tmp_path / "file", 1, progress=False)


def check_case(image_path, label_path) -> Geometry:
    image, label = nib.load(image_path), nib.load(label_path)
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, label.affine, atol=1e-4)
    values = np.unique(np.asarray(label.dataobj))
    assert set(values.tolist()) <= {0, 1, 2} and 1 in values
    return Geometry.of(sitk.ReadImage(str(image_path)))


def test_lits_dataset(tmp_path):
    written = write_synthetic_dataset(tmp_path, 4, seed=5, size=(40, 40, 12), progress=False)
    expected = [tmp_path / f"{kind}-{i}.nii.gz" for i in range(4) for kind in ("volume", "segmentation")]
    assert written == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in expected)  # no temporary files left
    geometries = [check_case(written[2 * i], written[2 * i + 1]) for i in range(4)]
    assert len({np.round(g.direction, 3).tobytes() for g in geometries}) == 4
    assert {g.orientation for g in geometries} >= {"RAS", "LAI"}
    for g in geometries:
        assert g.size == (40, 40, 12)
        assert 2.0 <= g.spacing[2] / g.spacing[0] <= 3.5  # anisotropic


def test_msd_dataset(tmp_path):
    written = write_synthetic_dataset(tmp_path, 2, seed=1, layout="msd", spacing=(8.0, 8.0, 20.0), progress=False)
    assert written[-1] == tmp_path / "dataset.json"
    description = json.loads((tmp_path / "dataset.json").read_text())
    assert description["modality"] == {"0": "CT"}
    assert description["labels"] == {"0": "background", "1": "liver", "2": "cancer"}
    assert description["numTraining"] == 2 and description["test"] == []
    assert description["training"][1] == {"image": "./imagesTr/liver_1.nii.gz", "label": "./labelsTr/liver_1.nii.gz"}
    for entry in description["training"]:
        geometry = check_case(tmp_path / entry["image"], tmp_path / entry["label"])
        assert geometry.spacing == pytest.approx((8.0, 8.0, 20.0))


def test_case_grids_are_reproducible_and_varied():
    assert case_grid(0, 3) == case_grid(0, 3)
    grids = [case_grid(0, i) for i in range(8)]
    for size, spacing, _ in grids:
        assert 0.7 * 2.2 - 1e-9 <= spacing[0] <= 2.2 + 1e-9 and 2.0 <= spacing[2] / spacing[0] <= 3.5
        assert 340 <= size[0] * spacing[0] <= 421
    assert len({spacing for _, spacing, _ in grids}) == 8
    assert case_grid(0, 1, size=(10, 20, 30), spacing=(1, 2, 3))[:2] == ((10, 20, 30), (1.0, 2.0, 3.0))
