"""Synthetic phantoms: values, labels, anatomy fixed in patient space, contrast phases, fields of view, noise and
slice thickness, and datasets written in LiTS/MSD layout."""

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
from monai_pipeline.synth import (
    FOV_MIX,
    TISSUE_RANGES,
    case_grid,
    case_settings,
    direction_cosines,
    make_phantom,
    sample_anatomy,
    write_synthetic_dataset,
)
from monai_pipeline.synth.imaging import slice_weights

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
    liver = np.median(ct[label == 1])
    assert 40 <= liver <= 140  # from unenhanced to portal-venous
    assert ct[label == 2].mean() != pytest.approx(liver, abs=5)  # lesions differ from the liver
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
    assert all(1 <= len(case) <= 14 for case in diameters)  # 7-14 in a multifocal liver
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


def check_case(image_path, label_path, liver: bool = True) -> Geometry:
    image, label = nib.load(image_path), nib.load(label_path)
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
    np.testing.assert_allclose(image.affine, label.affine, atol=1e-4)
    values = np.unique(np.asarray(label.dataobj))
    assert set(values.tolist()) <= {0, 1, 2} and (1 in values) == liver
    return Geometry.of(sitk.ReadImage(str(image_path)))


def test_lits_dataset(tmp_path):
    written = write_synthetic_dataset(tmp_path, 4, seed=5, size=(40, 40, 12), progress=False, fov_mix="abdomen")
    expected = [tmp_path / f"{kind}-{i}.nii.gz" for i in range(4) for kind in ("volume", "segmentation")]
    assert written == [*expected, tmp_path / "phantoms.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temporary files left
    records = json.loads((tmp_path / "phantoms.json").read_text())["phantoms"]
    assert [r["image"] for r in records] == [f"volume-{i}.nii.gz" for i in range(4)]
    assert {r["fov"] for r in records} == {"abdomen"}
    geometries = [check_case(written[2 * i], written[2 * i + 1]) for i in range(4)]
    assert len({np.round(g.direction, 3).tobytes() for g in geometries}) == 4
    assert {g.orientation for g in geometries} >= {"RAS", "LAI"}
    for g in geometries:
        assert g.size == (40, 40, 12)
        assert 2.0 <= g.spacing[2] / g.spacing[0] <= 3.5  # anisotropic


def test_msd_dataset(tmp_path):
    written = write_synthetic_dataset(
        tmp_path, 2, seed=1, layout="msd", spacing=(8.0, 8.0, 20.0), progress=False, fov_mix="abdomen"
    )
    assert written[-2:] == [tmp_path / "dataset.json", tmp_path / "phantoms.json"]
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


# --- anatomy, contrast phases, fields of view, noise and slice thickness -------------------------------------------

HU_SIZE, HU_SPACING = (120, 100, 64), (3.0, 3.0, 3.0)  # 360 x 300 x 192 mm about the body centre
HU_SEED = 11


@pytest.fixture(scope="module")
def phases() -> dict[str, tuple[sitk.Image, sitk.Image]]:
    """Noiseless thin-slice phantoms of one patient in each phase."""
    return {
        phase: make_phantom(HU_SEED, size=HU_SIZE, spacing=HU_SPACING, noise=False, phase=phase, thickness=1.0)
        for phase in TISSUE_RANGES
    }


def body_points(image: sitk.Image, centre: np.ndarray) -> np.ndarray:
    """The body-centred LPS points (3, z, y, x) of every voxel of ``image``."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in image.GetSize()[::-1]], indexing="ij"))[::-1]
    direction = np.reshape(image.GetDirection(), (3, 3)) * np.asarray(image.GetSpacing())
    origin = np.asarray(image.GetOrigin()) - centre
    return np.tensordot(direction, index.astype(float), axes=1) + origin.reshape(3, 1, 1, 1)


def part_hu(ct: sitk.Image, names: set[str], phase: str, low: float = 3.0, high: float = np.inf) -> np.ndarray:
    """The CT values of voxels ``low``-``high`` mm deep in the parts called ``names``."""
    anatomy = sample_anatomy(HU_SEED, phase)
    points = body_points(ct, anatomy.centre)
    mask = np.zeros(points.shape[1:], dtype=bool)
    for part in (*anatomy.organs, *anatomy.late, *anatomy.hepatic, *anatomy.skeleton):
        if part.name in names:
            depth = part.shape.depth(points)
            mask |= (depth > low) & (depth < high)
    assert mask.sum() >= 5, names
    return sitk.GetArrayViewFromImage(ct)[mask]


TISSUES = {  # parts sampled for each tissue value
    "spleen": {"spleen"},
    "aorta": {"aorta"},
    "portal": {"portal_vein", "splenic_vein"},
    "hepatic": {"hepatic_vein"},
    "ivc": {"ivc"},
    "pancreas": {"pancreas"},
    "bile": {"gallbladder"},
    "medulla": {"kidney_left", "kidney_right"},
}


@pytest.mark.parametrize("phase", list(TISSUE_RANGES))
def test_organ_values_follow_the_phase(phases, phase):
    ct, label = phases[phase]
    ranges = TISSUE_RANGES[phase]
    low, high = ranges["liver"]
    assert low - 3 <= np.median(sitk.GetArrayViewFromImage(ct)[sitk.GetArrayViewFromImage(label) == 1]) <= high + 3
    for tissue, names in TISSUES.items():
        depth = {"hepatic": 1.0, "portal": 1.5, "medulla": 8.0}.get(tissue, 3.0)
        low, high = ranges[tissue]
        value = np.median(part_hu(ct, names, phase, depth))
        assert low - 8 <= value <= high + 8, (tissue, value)


def test_arterial_phase_contrasts(phases):
    arterial, portal = phases["arterial"][0], phases["portal-venous"][0]
    kidneys = {"kidney_left", "kidney_right"}
    cortex, medulla = (
        np.median(part_hu(arterial, kidneys, "arterial", 0.5, 4.0)),
        np.median(part_hu(arterial, kidneys, "arterial", 8.0)),
    )
    assert np.median(part_hu(arterial, {"aorta"}, "arterial")) > 200
    assert cortex > medulla + 40  # corticomedullary
    nephrographic = part_hu(portal, kidneys, "portal-venous", 0.5, 4.0), part_hu(portal, kidneys, "portal-venous", 8.0)
    assert abs(np.median(nephrographic[0]) - np.median(nephrographic[1])) < 15
    assert np.subtract(*np.percentile(part_hu(arterial, {"spleen"}, "arterial", 5.0), [75, 25])) > 10  # mottled
    assert np.subtract(*np.percentile(part_hu(portal, {"spleen"}, "portal-venous", 5.0), [75, 25])) < 3


def test_phases_change_values_not_anatomy(phases):
    labels = [sitk.GetArrayViewFromImage(label) for _, label in phases.values()]
    np.testing.assert_array_equal(labels[0], labels[1])
    np.testing.assert_array_equal(labels[0], labels[2])
    liver = [np.median(sitk.GetArrayViewFromImage(ct)[labels[0] == 1]) for ct, _ in phases.values()]
    assert liver[0] < liver[1] < liver[2]  # non-contrast, arterial, portal-venous


def test_lesion_values_per_kind():
    by_kind: dict[str, list[tuple[str, float, float]]] = {}
    for seed in range(40):
        for phase in TISSUE_RANGES:
            anatomy = sample_anatomy(seed, phase)
            for lesion in anatomy.tumours:
                by_kind.setdefault(lesion.kind, []).append((phase, lesion.hu, anatomy.liver_hu))
    assert set(by_kind) == {"metastasis", "hcc", "cyst"}
    assert all(0 <= hu <= 15 for _, hu, _ in by_kind["cyst"])
    assert all(hu < liver - 10 for _, hu, liver in by_kind["metastasis"])
    for phase, hu, liver in by_kind["hcc"]:
        assert hu > liver + 25 if phase == "arterial" else hu < liver  # enhances, then washes out


def test_lesion_in_the_image_has_its_values(phases):
    ct, label = phases["portal-venous"]
    anatomy = sample_anatomy(HU_SEED, "portal-venous")
    points = body_points(ct, anatomy.centre)
    lesion = max(anatomy.tumours, key=lambda t: t.shape.reach)
    depth = lesion.shape.depth(points)
    body = (depth > lesion.rim + 1) & (depth < lesion.necrosis - 1)
    assert (sitk.GetArrayViewFromImage(label)[depth > 0.5 * lesion.shape.reach] == 2).all()
    assert np.median(sitk.GetArrayViewFromImage(ct)[body]) == pytest.approx(lesion.hu, abs=1)


def test_organs_where_they_belong(phases):
    ct, label = phases["arterial"]
    anatomy = sample_anatomy(HU_SEED, "arterial")
    parts = {part.name: part.shape for part in (*anatomy.organs, *anatomy.late)}
    liver = np.argwhere(sitk.GetArrayViewFromImage(label) >= 1)[:, ::-1].mean(axis=0)
    liver = np.asarray(ct.TransformContinuousIndexToPhysicalPoint(liver.tolist())) - anatomy.centre
    assert parts["spleen"].centre[0] > liver[0] + 80  # on the left
    for kidney in ("kidney_left", "kidney_right"):
        assert parts[kidney].centre[1] > liver[1] + 20 and parts[kidney].centre[1] > anatomy.spine_y - 15  # back
    assert parts["kidney_right"].centre[0] < 0 < parts["kidney_left"].centre[0]
    assert parts["gallbladder"].centre[0] < 0 and parts["gallbladder"].centre[2] < liver[2]  # under the liver
    at_liver = [p for p in anatomy.late if p.name == "aorta"][0].shape  # the abdominal aorta
    middle = at_liver.centre
    assert middle[0] > 0 and middle[1] < anatomy.spine_y - 15  # left of the midline, in front of the spine

    def hu_at(point):
        index = ct.TransformPhysicalPointToIndex((anatomy.centre + point).tolist())
        return sitk.GetArrayViewFromImage(ct)[index[::-1]], sitk.GetArrayViewFromImage(label)[index[::-1]]

    assert hu_at(middle)[0] > 200 and hu_at(np.array([0.0, anatomy.spine_y, middle[2]]))[0] > 300  # aorta, spine
    cava = [p for p in anatomy.late if p.name == "ivc"][1].shape
    assert hu_at(cava.centre)[1] == 0  # the vena cava is not liver
    vein = next(p.shape for p in anatomy.hepatic if hu_at(p.shape.end)[1] == 1)
    assert hu_at(vein.end)[0] != pytest.approx(anatomy.liver_hu, abs=10)  # a vessel inside the liver, label 1


@pytest.mark.parametrize("orientation", ["LPS", "LAI", "oblique"])
def test_chest_and_pelvis_have_no_liver(orientation):
    direction = OBLIQUE if orientation == "oblique" else orientation
    size, spacing = (64, 56, 40), (6.0, 6.0, 6.0)
    anatomy = sample_anatomy(5, "portal-venous")
    chest_ct, chest_label = make_phantom(5, size=size, spacing=spacing, orientation=direction, fov="chest",
                                         phase="portal-venous", noise=False)  # fmt: skip
    pelvis_ct, pelvis_label = make_phantom(5, size=size, spacing=spacing, orientation=direction, fov="pelvis",
                                           phase="portal-venous", noise=False)  # fmt: skip
    for ct, label in ((chest_ct, chest_label), (pelvis_ct, pelvis_label)):
        assert not sitk.GetArrayViewFromImage(label).any()
        assert Geometry.of(ct) == Geometry.of(label)
    chest = sitk.GetArrayViewFromImage(chest_ct)
    assert ((chest > -950) & (chest < -700)).mean() > 0.1  # lungs
    heart = next(p.shape for p in anatomy.late if p.name == "heart")
    index = chest_ct.TransformPhysicalPointToIndex((anatomy.centre + heart.centre).tolist())
    assert TISSUE_RANGES["portal-venous"]["heart_blood"][0] - 5 <= chest[index[::-1]] <= 200
    pelvis = sitk.GetArrayViewFromImage(pelvis_ct)
    bladder = next(p.shape for p in anatomy.organs if p.name == "bladder")
    index = pelvis_ct.TransformPhysicalPointToIndex((anatomy.centre + bladder.centre).tolist())
    assert -5 <= pelvis[index[::-1]] <= 25  # urine
    assert ((pelvis > -950) & (pelvis < -700)).mean() < 0.02 and (pelvis > 500).sum() > 200  # no lung, pelvic bones


@pytest.mark.parametrize("seed", range(4))
def test_partial_liver_touches_an_end(seed):
    label = sitk.GetArrayFromImage(
        make_phantom(seed, size=(48, 40, 30), spacing=(8.0, 8.0, 6.0), fov="partial-liver", noise=False)[1]
    )
    assert set(np.unique(label).tolist()) <= {0, 1, 2} and (label == 1).any()
    ends = label[0].any(), label[-1].any()
    assert ends in ((True, False), (False, True))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_is_textured_and_sized_per_case(seed):
    grid = {"size": (96, 96, 6), "spacing": (2.0, 2.0, 5.0)}
    noisy = sitk.GetArrayFromImage(make_phantom(seed, **grid)[0]).astype(float)
    clean = sitk.GetArrayFromImage(make_phantom(seed, noise=False, **grid)[0]).astype(float)
    noise = (noisy - clean)[:, 20:76, 20:76]  # inside the body, away from the clipped air
    sigma = sample_anatomy(seed).noise_sigma
    assert 8 <= noise.std() <= 30 and noise.std() == pytest.approx(sigma, rel=0.15)
    power = np.mean(np.abs(np.fft.fft2(noise)) ** 2, axis=0)
    frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(56, 2.0), np.fft.fftfreq(56, 2.0)))
    assert power[frequency < 0.03].mean() < 0.5 * power[(frequency > 0.12) & (frequency < 0.25)].mean()  # not white


def test_slice_thickness_blurs_the_image_not_the_label():
    np.testing.assert_allclose(slice_weights(5.0, 5.0), [0.125, 0.75, 0.125], atol=1e-3)
    assert slice_weights(1.0, 5.0).max() > 0.9 and len(slice_weights(5.0, 1.0)) >= 5
    grid = {"size": (48, 48, 40), "spacing": (7.0, 7.0, 1.5), "noise": False}
    thin_ct, thin_label = arrays(*make_phantom(2, thickness=1.0, **grid))
    thick_ct, thick_label = arrays(*make_phantom(2, thickness=5.0, **grid))
    np.testing.assert_array_equal(thin_label, thick_label)
    variation = [np.mean(np.diff(ct.astype(float), axis=0) ** 2) for ct in (thin_ct, thick_ct)]  # edges soften
    assert variation[1] < 0.6 * variation[0]
    with pytest.raises(ValueError, match="thickness"):
        make_phantom(2, thickness=0.0, **grid)


def test_fov_mix_and_settings():
    fovs = [case_settings(0, case)[2] for case in range(200)]
    assert fovs.count("abdomen") > 130 and 8 < fovs.count("partial-liver") < 35
    assert fovs.count("chest") > 2 and fovs.count("pelvis") > 2
    assert {case_settings(0, case, "abdomen")[2] for case in range(30)} == {"abdomen"}
    assert {case_settings(0, case, phase="arterial")[1] for case in range(10)} == {"arterial"}
    assert len({case_settings(0, case)[1] for case in range(30)}) == 3
    assert sum(FOV_MIX.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="field"):
        case_settings(0, 0, {"legs": 1.0})
    with pytest.raises(ValueError, match="shares"):
        case_settings(0, 0, {"chest": -1.0})
    with pytest.raises(ValueError, match="phase"):
        make_phantom(0, phase="venous")
    with pytest.raises(ValueError, match="fov"):
        make_phantom(0, fov="head")


def test_mixed_dataset_records_each_case(tmp_path):
    mix = {"chest": 1.0, "partial-liver": 1.0}
    written = write_synthetic_dataset(tmp_path, 3, seed=2, size=(32, 32, 10), progress=False, fov_mix=mix)
    records = json.loads(written[-1].read_text())["phantoms"]
    for i, record in enumerate(records):
        assert record["fov"] in mix and record["phase"] in TISSUE_RANGES and 8 <= record["noise_hu"] <= 30
        assert 1 <= record["thickness_mm"] <= 5
        check_case(written[2 * i], written[2 * i + 1], liver=record["fov"] != "chest")


def test_some_lesions_are_subcapsular_and_some_livers_multifocal():
    counts, subcapsular = [], 0
    for seed in range(40):
        anatomy = sample_anatomy(seed)
        first, *rest = anatomy.tumours
        assert anatomy.liver_depth(first.shape.surface_points()).min() > 3.0  # the largest lies deep
        counts.append(len(anatomy.tumours))
        subcapsular += sum(anatomy.liver_depth(t.shape.surface_points()).min() < 0 for t in rest)
    assert max(counts) >= 7 and subcapsular >= 10, (counts, subcapsular)


def test_a_subcapsular_lesion_reaches_the_liver_surface_and_is_labelled_only_inside_the_liver():
    anatomy = sample_anatomy(3)  # lesions 1 and 2 reach out through the liver's surface
    ct, label = make_phantom(3, size=(192, 192, 96), spacing=(1.5, 1.5, 2.0))
    lab = sitk.GetArrayFromImage(label)
    tumour = lab == 2
    depth = ndimage.distance_transform_edt(lab > 0, sampling=(2.0, 1.5, 1.5))  # mm to the nearest background
    assert len(anatomy.tumours) == 7
    assert (depth[tumour] <= 3.5).sum() > 20  # at the liver's surface, behind a voxel or two of liver
    assert depth[tumour].min() > 1.0  # a lesion is painted only where its neighbours are liver too
    assert set(np.unique(lab)) == {0, 1, 2}
