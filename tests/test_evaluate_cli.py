"""``monai-pipeline evaluate`` and its API as users run them: pairing files by case name (LiTS, MSD, ``infer``
outputs), the four output files and the printed table, unmatched cases with and without ``--strict``, one-line
errors for bad input, and the bundle's ``configs/evaluate.json`` run through MONAI's runner."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from monai_pipeline import cli
from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.evaluation import case_key, evaluate, find_masks, match_cases

SPACING = (0.8, 0.8, 2.0)
ORIGIN = (-40.0, 20.0, -300.0)
RAS = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
SHAPE = (12, 40, 40)  # (z, y, x)


def _write(labels: np.ndarray, path: Path, spacing=SPACING, origin=ORIGIN) -> Path:
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(RAS)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def _case(seed: int, shift: int = 0) -> np.ndarray:
    """A liver box with one or two tumour boxes; ``shift`` moves everything along x (a prediction's error)."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[2:10, 5:35, 5 + shift : 30 + shift] = 1
    labels[4:8, 10:16, 10 + shift : 16 + shift] = 2
    if seed % 2:
        labels[4:7, 22:30, 20 + shift : 26 + shift] = 2
    return labels


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    """(PRED, REF): an ``infer`` output folder (masks, lesion CSVs, probability maps, summary) for cases 0-2, and a
    LiTS folder with ``volume-N`` scans and ``segmentation-N`` labels for them."""
    pred, ref = tmp_path / "OUT", tmp_path / "LITS"
    for n in range(3):
        _write(_case(n, shift=n % 2), pred / f"volume-{n}_seg.nii.gz")
        _write(np.zeros(SHAPE, dtype=np.float32), pred / f"volume-{n}_prob_tumour.nii.gz")
        (pred / f"volume-{n}_lesions.csv").write_text("lesion_id\n")
        _write(_case(n), ref / f"segmentation-{n}.nii")
        _write(np.full(SHAPE, -1000, dtype=np.int16), ref / f"volume-{n}.nii")
    (pred / "summary.json").write_text("{}")
    return pred, ref


# ------------------------------------------------------------------------------------------------- matching


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("segmentation-7.nii", "liver_7"),
        ("segmentation-007.nii.gz", "liver_7"),
        ("volume-7_seg.nii.gz", "liver_7"),
        ("liver_7.nii.gz", "liver_7"),
        ("liver_7_seg.nii.gz", "liver_7"),
        ("patient_a.nrrd", "patient_a"),
        ("patient_a_seg.nii.gz", "patient_a"),
    ],
)
def test_case_keys(name, key):
    assert case_key(Path("/some/folder") / name) == key


def test_folders_pair_infer_outputs_with_lits_labels(folders):
    pred, ref = folders
    matching = match_cases(pred, ref)
    assert [(p.case, p.pred.name, p.ref.name) for p in matching.pairs] == [
        (f"liver_{n}", f"volume-{n}_seg.nii.gz", f"segmentation-{n}.nii") for n in range(3)
    ]
    assert matching.unmatched_predictions == matching.unmatched_references == []
    assert [path.name for path in find_masks(ref)] == [f"segmentation-{n}.nii" for n in range(3)]  # not volume-N


def test_plain_names_and_single_files(tmp_path):
    a = _write(_case(0), tmp_path / "P" / "abc_seg.nii.gz")
    b = _write(_case(0), tmp_path / "R" / "abc.nii.gz")
    assert [(p.case, p.pred, p.ref) for p in match_cases(tmp_path / "P", tmp_path / "R").pairs] == [("abc", a, b)]
    other = _write(_case(1), tmp_path / "other_name.nii.gz")
    (pair,) = match_cases(other, b).pairs  # two files are a pair whatever their names
    assert (pair.case, pair.pred, pair.ref) == ("abc", other, b)
    (pair,) = match_cases([a], tmp_path / "R").pairs  # a list of files
    assert pair.pred == a


def test_two_files_of_one_case_are_refused(tmp_path):
    _write(_case(0), tmp_path / "P" / "liver_3_seg.nii.gz")
    _write(_case(0), tmp_path / "P" / "segmentation-3.nii.gz")
    _write(_case(0), tmp_path / "R" / "liver_3.nii.gz")
    with pytest.raises(InputError, match="case liver_3 appears twice"):
        match_cases(tmp_path / "P", tmp_path / "R")


# ------------------------------------------------------------------------------------------------- CLI and API


def test_cli_writes_the_report_and_prints_a_table(folders, tmp_path, capsys):
    pred, ref = folders
    out = tmp_path / "REPORT"
    assert cli.main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert {path.name for path in out.iterdir()} == {"metrics.csv", "lesions.csv", "summary.json", "summary.png"}
    assert printed.splitlines()[0].split()[:3] == ["case", "liver", "Dice"]
    assert "liver_0" in printed and "global Dice" in printed and "lesions iou>0.5: recall" in printed
    assert printed.strip().endswith(f"3 case(s) evaluated, 0 file(s) without a partner -> {out}")

    with (out / "metrics.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["case"] for row in rows] == ["liver_0", "liver_1", "liver_2"]
    assert float(rows[0]["liver_dice"]) == 1.0 and float(rows[0]["tumour_hd95_mm"]) == 0.0
    liver_1 = rows[1]  # shifted one voxel (0.8 mm) along x
    assert 0.9 < float(liver_1["liver_dice"]) < 1.0 and float(liver_1["liver_mssd_mm"]) == pytest.approx(0.8)
    assert (liver_1["lesions_ref"], liver_1["lesions_pred"], liver_1["lesions_detected"]) == ("2", "2", "2")
    assert liver_1["ref_file"] == str(ref / "segmentation-1.nii")

    with (out / "lesions.csv").open(newline="") as stream:
        lesions = list(csv.DictReader(stream))
    assert len(lesions) == 2 * (1 + 2 + 1)  # reference and predicted lesions of the three cases
    first = lesions[0]
    assert (first["case"], first["source"], first["lesion_id"], first["matched"], first["detected"]) == (
        "liver_0",
        "reference",
        "1",
        "P1",
        "True",
    )
    assert float(first["volume_ml"]) == pytest.approx(4 * 6 * 6 * 0.8 * 0.8 * 2.0 / 1000, abs=1e-4)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 3
    assert summary["liver"]["dice_per_case"]["mean"] == pytest.approx(np.mean([float(r["liver_dice"]) for r in rows]))
    assert summary["liver"]["empty_reference_cases"] == 0 and summary["tumour"]["empty_reference_cases"] == 0
    assert summary["lesion_detection"]["iou>0.5"]["recall"] == 1.0
    assert summary["ref"] == str(ref) and summary["unmatched_references"] == []
    assert "Bilic" in summary["conventions"]["reference"]
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_api_without_output_writes_nothing(folders, tmp_path):
    pred, ref = folders
    before = sorted(tmp_path.rglob("*"))
    result = evaluate(pred, ref)
    assert sorted(tmp_path.rglob("*")) == before
    assert result.output_dir is None and result.files == {}
    assert [case.case for case in result.cases] == ["liver_0", "liver_1", "liver_2"]
    assert result.cases[0].regions["tumour"].dice == 1.0
    assert result.summary["liver"]["dice_global"] < 1.0


def test_unmatched_cases_warn_and_the_matched_are_evaluated(folders, tmp_path, capsys, caplog):
    pred, ref = folders
    (pred / "volume-2_seg.nii.gz").unlink()
    _write(_case(5), pred / "volume-5_seg.nii.gz")
    out = tmp_path / "REPORT"
    assert cli.main(["evaluate", "--pred", str(pred), "--ref", str(ref), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warnings = [(r.levelname, r.getMessage()) for r in caplog.records if r.name.startswith("monai_pipeline")]
    assert warnings == [
        (
            "WARNING",
            "reference(s) without a prediction: segmentation-2.nii; prediction(s) without a reference: "
            "volume-5_seg.nii.gz; evaluating the 2 matched case(s) only",
        )
    ]
    assert "2 case(s) evaluated, 2 file(s) without a partner" in captured.out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["cases"] == 2
    assert summary["unmatched_references"] == [str(ref / "segmentation-2.nii")]
    assert summary["unmatched_predictions"] == [str(pred / "volume-5_seg.nii.gz")]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def _bad_input(case: str, pred: Path, ref: Path, tmp_path: Path) -> tuple[list[str], list[str]]:
    """Arguments of a failing evaluation of the ``folders`` fixture, and the phrases its error line must hold."""
    if case == "missing folder":
        return ["--pred", str(tmp_path / "nowhere"), "--ref", str(ref)], [str(tmp_path / "nowhere"), "no such file"]
    if case == "empty folder":
        (tmp_path / "EMPTY").mkdir()
        return ["--pred", str(tmp_path / "EMPTY"), "--ref", str(ref)], [str(tmp_path / "EMPTY"), "no mask files"]
    if case == "nothing matches":
        other = tmp_path / "OTHER"
        _write(_case(0), other / "abc_seg.nii.gz")
        return ["--pred", str(other), "--ref", str(ref)], ["no prediction matches a reference", "abc_seg.nii.gz"]
    if case == "strict":
        (pred / "volume-1_seg.nii.gz").unlink()
        return ["--pred", str(pred), "--ref", str(ref), "--strict"], [
            "reference(s) without a prediction: segmentation-1.nii",
            "without --strict",
        ]
    if case == "geometry":
        _write(_case(1), pred / "volume-1_seg.nii.gz", spacing=(0.8, 0.8, 2.5))
        return ["--pred", str(pred), "--ref", str(ref)], [
            str(pred / "volume-1_seg.nii.gz"),
            "case liver_1: geometry differs from its reference",
            "segmentation-1.nii",
            "spacing",
        ]
    if case == "shape":
        _write(np.zeros((12, 40, 41), dtype=np.uint8), pred / "volume-2_seg.nii.gz")
        return ["--pred", str(pred), "--ref", str(ref)], ["case liver_2", "size [41, 40, 12] vs [40, 40, 12]"]
    labels = _case(0)
    labels[0, 0, 0] = 3
    _write(labels, pred / "volume-0_seg.nii.gz")
    return ["--pred", str(pred), "--ref", str(ref)], [str(pred / "volume-0_seg.nii.gz"), "label values 3 outside"]


BAD_INPUTS = ["missing folder", "empty folder", "nothing matches", "strict", "geometry", "shape", "label values"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_error_line(case, folders, tmp_path, capsys):
    pred, ref = folders
    args, phrases = _bad_input(case, pred, ref, tmp_path)
    out = tmp_path / "REPORT"
    assert cli.main(["evaluate", *args, "--out", str(out)]) == 1
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    assert not out.exists()


def test_api_errors_are_pipeline_errors(folders, tmp_path):
    pred, ref = folders
    (pred / "volume-0_seg.nii.gz").unlink()
    with pytest.raises(PipelineError, match="without a prediction: segmentation-0.nii"):
        evaluate(pred, ref, strict=True)
    with pytest.raises(InputError, match="no such file"):
        evaluate([tmp_path / "missing.nii.gz"], ref)


# ------------------------------------------------------------------------------------------------- the bundle


@pytest.mark.slow
def test_bundle_evaluate_config_writes_the_lits_report(tmp_path):
    """``python -m monai.bundle run`` with train.json + evaluate.json on a fold: MONAI's CSVs as before, the fold's
    predictions on the grids of their labels, and our report whose Dice per case is MONAI's ``MeanDice``."""
    import torch
    from _bundle_data import EVALUATE, TRAIN, check_ok, config_arg, monai_bundle

    from monai_pipeline.prepare import prepare_dataset
    from monai_pipeline.preprocessing import PreprocessingConfig
    from monai_pipeline.synth import write_synthetic_dataset
    from monai_pipeline.training import build_network, fold_files

    raw, prep, run = tmp_path / "RAW", tmp_path / "PREP", tmp_path / "RUN"
    write_synthetic_dataset(raw, 3, seed=0, progress=False)
    assert prepare_dataset(raw, prep, PreprocessingConfig(spacing=(6.0, 6.0, 6.0)), folds=3, progress=False).ok
    network = {"spatial_dims": 3, "in_channels": 1, "out_channels": 3, "filters": [8, 16, 32], "norm": "instance"}
    run.mkdir()
    torch.manual_seed(0)
    torch.save(build_network(**network, res_block=True).state_dict(), run / "model.pt")  # untrained weights

    args = ["--config_file", config_arg(TRAIN, EVALUATE), "--dataset_dir", str(prep), "--output_dir", str(run)]
    args += ["--filters", "[8,16,32]", "--roi_size", "[32,32,32]", "--num_workers", "0", "--fold", "0"]
    check_ok(monai_bundle("run", args))

    eval_dir = run / "eval"
    assert {"metrics.csv", "val_liver_dice_raw.csv", "val_tumour_dice_raw.csv"} <= {p.name for p in eval_dir.iterdir()}
    report = eval_dir / "lits"
    assert {p.name for p in report.iterdir()} == {"metrics.csv", "lesions.csv", "summary.json", "summary.png"}
    labels = [Path(entry["label"]) for entry in fold_files(prep, 0, "val")]
    predictions = sorted((eval_dir / "predictions").iterdir())
    assert [p.name for p in predictions] == sorted(f"{label.name[: -len('.nii.gz')]}_seg.nii.gz" for label in labels)
    for label in labels:
        written = sitk.ReadImage(str(eval_dir / "predictions" / f"{label.name[: -len('.nii.gz')]}_seg.nii.gz"))
        reference = sitk.ReadImage(str(label))
        assert written.GetSize() == reference.GetSize() and written.GetSpacing() == reference.GetSpacing()
        assert written.GetOrigin() == reference.GetOrigin() and written.GetDirection() == reference.GetDirection()
        assert set(np.unique(sitk.GetArrayViewFromImage(written))) <= {0, 1, 2}

    with (report / "metrics.csv").open(newline="") as stream:
        ours = {row["case"]: row for row in csv.DictReader(stream)}
    for region in ("liver", "tumour"):
        with (eval_dir / f"val_{region}_dice_raw.csv").open(newline="") as stream:
            monai_rows = list(csv.DictReader(stream))
        assert len(monai_rows) == len(ours) == len(labels)
        for row in monai_rows:
            case = Path(row["filename"]).name[: -len(".nii.gz")]
            if math.isfinite(float(row["class0"])):
                assert float(ours[case][f"{region}_dice"]) == pytest.approx(float(row["class0"]), abs=1e-6)
    summary = json.loads((report / "summary.json").read_text())
    assert summary["cases"] == len(labels) and summary["unmatched_references"] == []
    shutil.rmtree(run)
