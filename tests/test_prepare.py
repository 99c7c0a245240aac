"""Tests for monai_pipeline.prepare: finding LiTS/MSD cases and preparing a dataset end to end, on tiny synthetic
CT volumes written to a temporary folder."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from _volumes import LAI, LIVER_HU, LPS, OBLIQUE, RAS, SMALL, Phantom, make_case, tree_digest, write_lits_case
from monai.data import load_decathlon_datalist
from monai.transforms import LoadImaged

from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.io import Geometry
from monai_pipeline.prepare import find_cases, prepare_dataset
from monai_pipeline.prepare.datalist import assign_folds
from monai_pipeline.preprocessing import PreprocessingConfig

# ------------------------------------------------------------------------------------------------ find_cases


def _touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_find_cases_lits_layout_over_batch_folders(tmp_path):
    _touch(
        tmp_path,
        "Training Batch 1/volume-0.nii",
        "Training Batch 1/segmentation-0.nii",
        "Training Batch 1/volume-2.nii.gz",
        "Training Batch 1/segmentation-2.nii.gz",
        "Training Batch 2/volume-10.nii",
        "Training Batch 2/segmentation-10.nii.gz",
        "Training Batch 2/volume-1.nii.gz",
        "Training Batch 2/segmentation-1.nii",
        "Test/test-volume-3.nii",
        "Test/test-volume-12.nii",
        "Training Batch 2/.volume-5.nii",  # hidden files (macOS copies) are not cases
        "Training Batch 2/notes.txt",
    )
    cases = find_cases(tmp_path)
    assert [case.name for case in cases] == [
        "liver_0",
        "liver_1",
        "liver_2",
        "liver_10",
        "liver_test_3",
        "liver_test_12",
    ]
    by_name = {case.name: case for case in cases}
    assert by_name["liver_10"].image == tmp_path / "Training Batch 2/volume-10.nii"
    assert by_name["liver_10"].label == tmp_path / "Training Batch 2/segmentation-10.nii.gz"
    assert by_name["liver_1"].label == tmp_path / "Training Batch 2/segmentation-1.nii"
    assert by_name["liver_test_12"].image == tmp_path / "Test/test-volume-12.nii"
    assert by_name["liver_test_12"].label is None
    assert [case.split for case in cases] == ["training"] * 4 + ["test"] * 2


def _write_msd(root: Path) -> None:
    manifest = {
        "name": "Liver",
        "training": [
            {"image": "./imagesTr/liver_10.nii.gz", "label": "./labelsTr/liver_10.nii.gz"},
            {"image": "./imagesTr/liver_2.nii.gz", "label": "./labelsTr/liver_2.nii.gz"},
            {"image": "./imagesTr/liver_0.nii.gz", "label": "./labelsTr/liver_0.nii.gz"},
        ],
        "test": ["./imagesTs/liver_132.nii.gz"],
    }
    _touch(
        root,
        *(f"{folder}/liver_{n}.nii.gz" for folder in ("imagesTr", "labelsTr") for n in (0, 2, 10)),
        "imagesTr/._liver_0.nii.gz",  # resource forks shipped in the MSD tar
        "labelsTr/._liver_0.nii.gz",
        "imagesTs/liver_132.nii.gz",
        "imagesTs/._liver_132.nii.gz",
    )
    (root / "dataset.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("nested", [False, True], ids=["task-folder", "parent-folder"])
def test_find_cases_msd_layout(tmp_path, nested):
    task = tmp_path / "Task03_Liver" if nested else tmp_path
    _write_msd(task)
    cases = find_cases(tmp_path)
    assert [case.name for case in cases] == ["liver_0", "liver_2", "liver_10", "liver_132"]
    assert cases[1].image == task / "imagesTr/liver_2.nii.gz"
    assert cases[1].label == task / "labelsTr/liver_2.nii.gz"
    assert cases[3].image == task / "imagesTs/liver_132.nii.gz"
    assert cases[3].label is None
    assert [case.split for case in cases] == ["training"] * 3 + ["test"]


def test_find_cases_msd_missing_listed_label(tmp_path):
    _write_msd(tmp_path)
    (tmp_path / "labelsTr/liver_2.nii.gz").unlink()
    with pytest.raises(InputError, match="listed in dataset.json but missing") as info:
        find_cases(tmp_path)
    assert info.value.path == str(tmp_path / "labelsTr/liver_2.nii.gz")


def test_find_cases_msd_same_name_in_training_and_test_is_an_error(tmp_path):
    _write_msd(tmp_path)
    _touch(tmp_path, "imagesTs/liver_2.nii.gz")
    with pytest.raises(InputError, match="liver_2"):
        find_cases(tmp_path)


@pytest.mark.parametrize(
    ("files", "at_fault", "problem"),
    [
        (None, "missing", "no such folder"),
        ((), ".", "no labelled cases"),
        (("notes.txt", "scan.nii.gz", "a/b/ct_0001.nrrd", "test-volume-1.nii"), ".", "no labelled cases"),
        (("volume-1.nii", "segmentation-1.nii", "b/volume-2.nii.gz"), "b/volume-2.nii.gz", "without its segmentation"),
        (("volume-1.nii", "segmentation-1.nii", "segmentation-2.nii"), "segmentation-2.nii", "without its volume"),
        (
            ("a/volume-3.nii", "a/segmentation-3.nii", "b/volume-3.nii.gz"),
            "b/volume-3.nii.gz",
            "appears twice",
        ),
        (("volume-7.nii", "segmentation-07.nii", "segmentation-7.nii.gz"), "segmentation-7.nii.gz", "appears twice"),
        (("volume-1.nii",), "file", "not a folder"),
    ],
    ids=["missing", "empty", "unrelated", "no-segmentation", "no-volume", "duplicate", "duplicate-0-padded", "file"],
)
def test_find_cases_errors_name_the_path(tmp_path, files, at_fault, problem):
    root = tmp_path / "RAW"
    if files is not None:
        root.mkdir()
        _touch(root, *files)
    if at_fault == "file":
        root = root / "volume-1.nii"
        at_fault = "."
    expected = root if at_fault in (".", "missing") else root / at_fault
    with pytest.raises(InputError, match=problem) as info:
        find_cases(root)
    assert info.value.path == str(expected)
    assert str(info.value).startswith(str(expected))
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------------------- prepare_dataset

RAW_CASES = {
    # name: (subfolder, number, direction, spacing, ending)
    "liver_1": ("batch1", 1, LPS, (0.8, 0.8, 2.5), ".nii.gz"),
    "liver_2": ("batch1", 2, RAS, (0.8, 0.8, 2.5), ".nii"),
    "liver_3": ("batch2", 3, OBLIQUE, (0.8, 0.8, 2.5), ".nii.gz"),
    "liver_4": ("batch2", 4, LPS, (0.7, 0.7, 3.0), ".nii.gz"),
    "liver_10": ("batch2", 10, LAI, (0.9, 0.9, 2.0), ".nii.gz"),
}
TRAINING = list(RAW_CASES)
ALL_CASES = TRAINING + ["liver_test_5"]


@pytest.fixture(scope="module")
def raw_lits(tmp_path_factory) -> Path:
    """Five labelled LiTS cases over two batch folders, in four orientations, plus one unlabelled test volume."""
    root = tmp_path_factory.mktemp("lits") / "RAW"
    for folder, number, direction, spacing, ending in RAW_CASES.values():
        write_lits_case(root / folder, number, direction, spacing=spacing, ending=ending)
    write_lits_case(root / "test", 5, LAI, spacing=(0.8, 0.8, 2.5), ending=".nii", labelled=False)
    return root


@pytest.fixture(scope="module")
def prepared(raw_lits, tmp_path_factory):
    """The synthetic LiTS folder prepared at the default config with 2 folds."""
    out = tmp_path_factory.mktemp("prepared") / "PREP"
    before = tree_digest(raw_lits)
    summary = prepare_dataset(raw_lits, out, folds=2, seed=0, progress=False)
    assert tree_digest(raw_lits) == before, "the raw files are never modified"
    return summary, out


def _raw_pair(raw: Path, name: str) -> tuple[sitk.Image, sitk.Image | None]:
    case = {case.name: case for case in find_cases(raw)}[name]
    image = sitk.ReadImage(str(case.image))
    return image, sitk.ReadImage(str(case.label)) if case.label else None


def _arrays(out: Path, folder: str) -> dict[str, np.ndarray]:
    return {path.name: sitk.GetArrayFromImage(sitk.ReadImage(str(path))) for path in (out / folder).iterdir()}


def test_prepare_summary(prepared):
    summary, out = prepared
    assert summary.ok
    assert sorted(summary.prepared) == sorted(ALL_CASES)
    assert summary.skipped == [] and summary.failed == {}
    assert summary.out_dir == out.resolve()


def test_prepare_writes_the_promised_files(prepared):
    _, out = prepared
    assert sorted(p.name for p in out.iterdir()) == [
        "datalist.json",
        "fingerprint.json",
        "images",
        "labels",
        "preprocessing.json",
        "records",
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{n}.nii.gz" for n in ALL_CASES)
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{n}.nii.gz" for n in TRAINING)
    assert sorted(p.name for p in (out / "records").iterdir()) == sorted(f"{n}.json" for n in ALL_CASES)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    for name in ALL_CASES:
        image = sitk.ReadImage(str(out / "images" / f"{name}.nii.gz"))
        assert image.GetPixelID() == sitk.sitkFloat32
        values = sitk.GetArrayViewFromImage(image)
        assert values.min() == 0.0 and values.max() <= 1.0
        geometry = Geometry.of(image)
        assert geometry.orientation == "RAS"
        np.testing.assert_allclose(geometry.spacing, (1.5, 1.5, 1.5), rtol=1e-6)
        if name in TRAINING:
            label = sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz"))
            assert label.GetPixelID() == sitk.sitkUInt8
            assert set(np.unique(sitk.GetArrayViewFromImage(label))) == {0, 1, 2}
            assert geometry.differences(Geometry.of(label), 1e-6) == []


def test_prepared_label_keeps_the_liver_volume(prepared, raw_lits):
    _, out = prepared
    for name in TRAINING:
        _, raw_label = _raw_pair(raw_lits, name)
        raw_ml = (sitk.GetArrayViewFromImage(raw_label) >= 1).sum() * np.prod(raw_label.GetSpacing()) / 1000
        label = sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz"))
        ml = (sitk.GetArrayViewFromImage(label) >= 1).sum() * 1.5**3 / 1000
        assert ml == pytest.approx(raw_ml, rel=0.05), name
        assert raw_ml == pytest.approx(4 / 3 * np.pi * np.prod(SMALL.liver) / 1000, rel=0.05)


def test_datalist_loads_with_monai(prepared):
    _, out = prepared
    training = load_decathlon_datalist(out / "datalist.json", True, "training", out)
    assert [entry["case"] for entry in training] == TRAINING
    for entry in training:
        for key in ("image", "label"):
            assert Path(entry[key]).is_absolute() and Path(entry[key]).is_file()
        assert entry["image"] == str(out / "images" / f"{entry['case']}.nii.gz")
        assert entry["label"] == str(out / "labels" / f"{entry['case']}.nii.gz")
        assert entry["fold"] in (0, 1)
    test = load_decathlon_datalist(out / "datalist.json", False, "test", out)
    assert test == [{"image": str(out / "images" / "liver_test_5.nii.gz"), "case": "liver_test_5"}]
    data = json.loads((out / "datalist.json").read_text())
    assert (data["numTraining"], data["numTest"], data["num_folds"], data["fold_seed"]) == (5, 1, 2, 0)
    assert data["labels"] == {"0": "background", "1": "liver", "2": "tumour"}


def test_monai_load_image_sees_ras(prepared):
    _, out = prepared
    entry = load_decathlon_datalist(out / "datalist.json", True, "training", out)[2]
    data = LoadImaged(keys=["image", "label"])(entry)
    image, label = data["image"], data["label"]
    assert nib.aff2axcodes(image.affine.numpy()) == ("R", "A", "S")
    reference = sitk.ReadImage(entry["image"])
    assert tuple(image.shape) == reference.GetSize()
    np.testing.assert_allclose(image.affine.numpy(), Geometry.of(reference).affine_ras, atol=1e-4)
    np.testing.assert_allclose(label.affine.numpy(), image.affine.numpy(), atol=1e-4)
    np.testing.assert_array_equal(image.numpy(), sitk.GetArrayFromImage(reference).transpose(2, 1, 0))


def _folds(out: Path) -> dict[str, int]:
    data = json.loads((out / "datalist.json").read_text())
    return {entry["case"]: entry["fold"] for entry in data["training"]}


def test_folds_are_balanced_and_seeded(prepared):
    _, out = prepared
    folds = _folds(out)
    assert sorted(Counter(folds.values()).values()) == [2, 3]
    assert folds == assign_folds(TRAINING, 2, seed=0)
    assert assign_folds(list(reversed(TRAINING)), 2, seed=0) == folds, "independent of the order of the cases"
    other_seeds = [assign_folds(TRAINING, 2, seed=seed) for seed in (1, 2, 3)]
    assert any(other != folds for other in other_seeds)
    for n_folds in (3, 4, 5):
        sizes = Counter(assign_folds(TRAINING, n_folds, seed=7).values())
        assert sorted(sizes) == list(range(n_folds)) and max(sizes.values()) - min(sizes.values()) <= 1


def test_a_new_seed_reassigns_folds_without_redoing_cases(prepared, raw_lits, tmp_path):
    _, out = prepared
    copy = tmp_path / "PREP"
    shutil.copytree(out, copy)
    seed = next(seed for seed in range(1, 10) if assign_folds(TRAINING, 2, seed) != _folds(out))
    summary = prepare_dataset(raw_lits, copy, folds=2, seed=seed, progress=False)
    assert sorted(summary.skipped) == sorted(ALL_CASES) and summary.prepared == []
    assert _folds(copy) == assign_folds(TRAINING, 2, seed) != _folds(out)


def test_fewer_cases_than_folds_is_an_error(raw_lits, tmp_path):
    with pytest.raises(PipelineError, match="--folds 6 needs at least 6 labelled cases, found 5"):
        prepare_dataset(raw_lits, tmp_path / "PREP", folds=6, progress=False)
    assert not (tmp_path / "PREP").exists()


def test_one_fold_trains_and_validates_on_every_case(raw_lits, tmp_path, caplog):
    from monai_pipeline.training import fold_files

    out = tmp_path / "PREP"
    prepare_dataset(raw_lits, out, folds=1, progress=False)
    assert set(_folds(out).values()) == {0}
    with caplog.at_level("WARNING"):
        train, val = fold_files(out, 0, "train"), fold_files(out, 0, "val")
    assert [e["image"] for e in train] == [e["image"] for e in val] and len(train) == len(TRAINING)
    assert "one fold: training validates on its own cases" in caplog.text


def test_fingerprint(prepared, raw_lits):
    _, out = prepared
    fingerprint = json.loads((out / "fingerprint.json").read_text())
    assert fingerprint["num_cases"] == 6 and fingerprint["num_labelled"] == 5
    assert set(fingerprint["cases"]) == set(ALL_CASES)
    spacings, totals, liver_hu = [], Counter(), []
    for name in ALL_CASES:
        image, label = _raw_pair(raw_lits, name)
        record = fingerprint["cases"][name]
        geometry = Geometry.of(image)
        np.testing.assert_allclose(record["geometry"]["spacing"], geometry.spacing, rtol=1e-6)
        assert record["geometry"]["size"] == list(geometry.size)
        assert record["geometry"]["orientation"] == geometry.orientation
        spacings.append(geometry.spacing)
        if label is None:
            assert "label_voxels" not in record
            continue
        values = sitk.GetArrayFromImage(label)
        counts = {str(k): int((values == k).sum()) for k in (0, 1, 2)}
        assert record["label_voxels"] == counts
        totals.update(counts)
        liver_hu.append(sitk.GetArrayFromImage(image)[values >= 1])
    assert [fingerprint["cases"][n]["geometry"]["orientation"] for n in TRAINING] == ["LPS", "RAS", "LPS", "LPS", "LAI"]
    assert fingerprint["orientations"] == {"LPS": 3, "RAS": 1, "LAI": 2}
    np.testing.assert_allclose(fingerprint["median_spacing"], np.median(spacings, axis=0), rtol=1e-6)
    assert fingerprint["label_voxels"] == dict(totals)
    pooled = np.concatenate(liver_hu)
    stats = fingerprint["liver_hu"]
    assert 40 <= stats["percentile_50_0"] <= 70
    assert stats["percentile_50_0"] == pytest.approx(np.percentile(pooled, 50), abs=1)
    assert stats["voxels"] == pooled.size
    assert stats["mean"] == pytest.approx(pooled.mean(), abs=0.01)
    assert LIVER_HU - 20 < stats["mean"] < LIVER_HU


def test_preprocessing_record_and_case_records(prepared, raw_lits):
    _, out = prepared
    config = PreprocessingConfig.load(out / "preprocessing.json")
    assert config == PreprocessingConfig()
    for name in ALL_CASES:
        record = json.loads((out / "records" / f"{name}.json").read_text())
        assert record["case"] == name
        assert record["config_digest"] == config.digest()
        case = {case.name: case for case in find_cases(raw_lits)}[name]
        assert raw_lits / record["source"]["image"] == case.image
        image = sitk.ReadImage(str(out / "images" / f"{name}.nii.gz"))
        assert Geometry.from_dict(record["preprocessing"]["preprocessed"]).differences(Geometry.of(image), 1e-6) == []


# -------------------------------------------------------------------------------------------------- re-run


@pytest.fixture
def prepared_copy(prepared, tmp_path) -> Path:
    copy = tmp_path / "PREP"
    shutil.copytree(prepared[1], copy)
    return copy


def _mtimes(out: Path) -> dict[str, int]:
    return {p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in (out / "images").iterdir()} | {
        p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in (out / "labels").iterdir()
    }


def test_rerun_skips_every_case(prepared_copy, prepared, raw_lits):
    before = _mtimes(prepared_copy)
    summary = prepare_dataset(raw_lits, prepared_copy, folds=2, progress=False)
    assert sorted(summary.skipped) == sorted(ALL_CASES)
    assert summary.prepared == [] and summary.ok
    assert _mtimes(prepared_copy) == before
    # the dataset files are rebuilt from the case records and come out the same
    for name in ("datalist.json", "fingerprint.json", "preprocessing.json"):
        assert json.loads((prepared_copy / name).read_text()) == json.loads((prepared[1] / name).read_text()), name


def test_rerun_redoes_a_deleted_case_only(prepared_copy, prepared, raw_lits):
    before = _mtimes(prepared_copy)
    (prepared_copy / "images" / "liver_3.nii.gz").unlink()
    summary = prepare_dataset(raw_lits, prepared_copy, folds=2, progress=False)
    assert summary.prepared == ["liver_3"]
    assert sorted(summary.skipped) == sorted(set(ALL_CASES) - {"liver_3"})
    after = _mtimes(prepared_copy)
    changed = sorted(key for key in after if after[key] != before.get(key))
    assert changed == ["images/liver_3.nii.gz", "labels/liver_3.nii.gz"]
    redone = sitk.GetArrayFromImage(sitk.ReadImage(str(prepared_copy / "images" / "liver_3.nii.gz")))
    first = sitk.GetArrayFromImage(sitk.ReadImage(str(prepared[1] / "images" / "liver_3.nii.gz")))
    np.testing.assert_array_equal(redone, first)


def test_rerun_with_other_spacing_redoes_every_case(prepared_copy, raw_lits):
    config = PreprocessingConfig(spacing=(2.0, 2.0, 2.0))
    summary = prepare_dataset(raw_lits, prepared_copy, config, folds=2, progress=False)
    assert sorted(summary.prepared) == sorted(ALL_CASES) and summary.skipped == []
    assert PreprocessingConfig.load(prepared_copy / "preprocessing.json") == config
    for name in ALL_CASES:
        image = sitk.ReadImage(str(prepared_copy / "images" / f"{name}.nii.gz"))
        np.testing.assert_allclose(image.GetSpacing(), (2.0, 2.0, 2.0), rtol=1e-6)
        record = json.loads((prepared_copy / "records" / f"{name}.json").read_text())
        assert record["config_digest"] == config.digest()


# --------------------------------------------------------------------------------------------------- zscore


def test_zscore_uses_pooled_liver_statistics(raw_lits, tmp_path):
    out = tmp_path / "PREP"
    summary = prepare_dataset(raw_lits, out, PreprocessingConfig(normalization="zscore"), folds=2, progress=False)
    assert summary.ok
    config = PreprocessingConfig.load(out / "preprocessing.json")
    assert config.normalization == "zscore"
    stats = config.intensity_stats
    pooled = []
    for name in TRAINING:
        image, label = _raw_pair(raw_lits, name)
        pooled.append(sitk.GetArrayFromImage(image)[sitk.GetArrayFromImage(label) >= 1].astype(float))
    pooled = np.concatenate(pooled)
    assert stats.mean == pytest.approx(pooled.mean(), abs=1)
    assert stats.std == pytest.approx(pooled.std(), abs=1)
    assert stats.percentile_00_5 == pytest.approx(np.percentile(pooled, 0.5), abs=1)
    assert stats.percentile_99_5 == pytest.approx(np.percentile(pooled, 99.5), abs=1)
    assert stats.std > 5  # liver and tumour and noise

    for name in TRAINING:
        image = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "images" / f"{name}.nii.gz")))
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels" / f"{name}.nii.gz")))
        assert abs(image[label >= 1].mean()) < 0.15, name
        assert image.min() == pytest.approx((stats.percentile_00_5 - stats.mean) / stats.std, abs=1e-4)

    # the statistics come out the same on a re-run, so nothing is redone
    again = prepare_dataset(raw_lits, out, PreprocessingConfig(normalization="zscore"), folds=2, progress=False)
    assert sorted(again.skipped) == sorted(ALL_CASES) and again.prepared == []
    assert PreprocessingConfig.load(out / "preprocessing.json") == config


# ------------------------------------------------------------------------------------------------ bad cases

GOOD = {"liver_1": LPS, "liver_2": RAS, "liver_3": OBLIQUE}


def _write_pair(folder: Path, number: int, image: sitk.Image, label: sitk.Image) -> tuple[Path, Path]:
    paths = folder / f"volume-{number}.nii.gz", folder / f"segmentation-{number}.nii.gz"
    sitk.WriteImage(image, str(paths[0]), useCompression=True)
    sitk.WriteImage(label, str(paths[1]), useCompression=True)
    return paths


@pytest.fixture(scope="module")
def raw_with_bad_cases(tmp_path_factory) -> tuple[Path, dict[str, tuple[Path, str]]]:
    """Three good cases and five bad ones; for each bad case the file at fault and a word of the problem."""
    root = tmp_path_factory.mktemp("bad") / "RAW"
    for number, direction in enumerate(GOOD.values(), start=1):
        write_lits_case(root / "good", number, direction)
    folder = root / "bad"
    folder.mkdir(parents=True)
    bad = {}

    truncated = write_lits_case(folder, 5).image
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    bad["liver_5"] = (truncated, "truncated")

    ct, label = make_case(phantom=Phantom(extra_labels=(((25.0, 0.0, 0.0), 4.0, 3),)))
    _, seg = _write_pair(folder, 6, ct, label)
    bad["liver_6"] = (seg, "label values 3 outside")

    ct, label = make_case()
    label.SetSpacing((0.8, 0.8, 3.0))
    _, seg = _write_pair(folder, 7, ct, label)
    bad["liver_7"] = (seg, "geometry differs")

    ct, label = make_case()
    volume, _ = _write_pair(folder, 8, ct[:, :, 5], label[:, :, 5])
    bad["liver_8"] = (volume, "expected a 3D image, got a 2D image")

    ct, label = make_case()
    values = sitk.GetArrayFromImage(ct).astype(np.float32)
    values[3, 4, 5] = np.nan
    nan_ct = sitk.GetImageFromArray(values)
    nan_ct.CopyInformation(ct)
    volume, _ = _write_pair(folder, 9, nan_ct, label)
    bad["liver_9"] = (volume, "NaN")
    return root, bad


@pytest.mark.parametrize("workers", [1, 2])
def test_bad_cases_are_reported_and_left_out(raw_with_bad_cases, tmp_path, workers):
    raw, bad = raw_with_bad_cases
    before = tree_digest(raw)
    out = tmp_path / "PREP"
    summary = prepare_dataset(raw, out, folds=2, workers=workers, progress=False)

    assert not summary.ok
    assert sorted(summary.prepared) == sorted(GOOD)
    assert set(summary.failed) == set(bad)
    for name, (path, problem) in bad.items():
        message = summary.failed[name]
        assert message.startswith(f"{path}: "), message
        assert problem in message
        assert "\n" not in message
        assert "Traceback" in summary.details[name]
    datalist = json.loads((out / "datalist.json").read_text())
    assert [entry["case"] for entry in datalist["training"]] == list(GOOD)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f"{n}.nii.gz" for n in GOOD)
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(f"{n}.nii.gz" for n in GOOD)
    assert sorted(p.name for p in (out / "records").iterdir()) == sorted(f"{n}.json" for n in GOOD)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name or p.name.startswith(".")]
    assert set(json.loads((out / "fingerprint.json").read_text())["cases"]) == set(GOOD)
    assert tree_digest(raw) == before


def test_truncated_header_is_reported(tmp_path):
    raw = tmp_path / "RAW"
    for number in (1, 2):
        write_lits_case(raw, number)
    truncated = write_lits_case(raw, 3).image
    truncated.write_bytes(truncated.read_bytes()[:200])
    summary = prepare_dataset(raw, tmp_path / "PREP", folds=2, progress=False)
    assert sorted(summary.prepared) == ["liver_1", "liver_2"]
    assert summary.failed["liver_3"].startswith(f"{truncated}: cannot be read")
    assert not (tmp_path / "PREP" / "images" / "liver_3.nii.gz").exists()


def test_all_cases_bad_is_an_error(tmp_path):
    raw = tmp_path / "RAW"
    ct, label = make_case()
    raw.mkdir()
    for number in (1, 2):
        _write_pair(raw, number, ct[:, :, 3], label[:, :, 3])
    with pytest.raises(PipelineError, match="no case could be prepared"):
        prepare_dataset(raw, tmp_path / "PREP", folds=2, progress=False)


@pytest.mark.parametrize("spelling", ["same", "dotdot", "relative"])
def test_out_dir_equal_to_data_dir_is_refused(raw_lits, spelling, monkeypatch):
    before = tree_digest(raw_lits)
    out = {"same": raw_lits, "dotdot": raw_lits / "batch1" / "..", "relative": Path("RAW")}[spelling]
    monkeypatch.chdir(raw_lits.parent)
    with pytest.raises(InputError, match="must not be the raw data folder") as info:
        prepare_dataset(raw_lits, out, folds=2, progress=False)
    assert info.value.path == str(raw_lits)
    assert tree_digest(raw_lits) == before


def test_workers_must_be_positive(raw_lits, tmp_path):
    with pytest.raises(ValueError, match="workers"):
        prepare_dataset(raw_lits, tmp_path / "PREP", workers=0, progress=False)


# --------------------------------------------------------------------------------------------------- workers


def test_two_workers_give_the_same_outputs(prepared, raw_lits, tmp_path):
    _, first = prepared
    out = tmp_path / "PREP"
    summary = prepare_dataset(raw_lits, out, folds=2, workers=2, progress=False)
    assert sorted(summary.prepared) == sorted(ALL_CASES)
    for folder in ("images", "labels"):
        one, two = _arrays(first, folder), _arrays(out, folder)
        assert one.keys() == two.keys()
        for name in one:
            np.testing.assert_array_equal(one[name], two[name])
            assert Geometry.of(sitk.ReadImage(str(first / folder / name))) == Geometry.of(
                sitk.ReadImage(str(out / folder / name))
            )
    assert json.loads((out / "datalist.json").read_text()) == json.loads((first / "datalist.json").read_text())
    assert json.loads((out / "fingerprint.json").read_text()) == json.loads((first / "fingerprint.json").read_text())
    assert (out / "preprocessing.json").read_text() == (first / "preprocessing.json").read_text()
