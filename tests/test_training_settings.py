"""Tests of the checks of training settings: ``--set`` values of the wrong kind and settings the network cannot
take are refused with one line before anything is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_pipeline import cli
from monai_pipeline.errors import PipelineError
from monai_pipeline.training.settings import check_override, check_settings

DEFAULTS = {"roi_size": [96, 96, 96], "filters": [32, 64, 128, 256, 320], "spatial_dims": 3}


@pytest.mark.parametrize(
    ("key", "value", "current"),
    [("roi_size", "abc", [96, 96, 96]), ("amp", "yes", False), ("learning_rate", "fast", 3e-4), ("seed", [1], 0)],
)
def test_override_of_another_kind_is_refused(key, value, current):
    with pytest.raises(PipelineError, match=f"--set {key}=.*{key} takes"):
        check_override(key, value, current)


@pytest.mark.parametrize(
    ("key", "value", "current"),
    [
        ("roi_size", [64, 64, 64], [96, 96, 96]),
        ("mirror_axes", [0, 1], []),
        ("max_minutes", 7.5, 0),
        ("device", "cpu", "$torch.device('cpu')"),
        ("amp", True, False),
    ],
)
def test_override_of_the_same_kind_passes(key, value, current):
    check_override(key, value, current)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"roi_size": [50, 50, 50]}, "each side must be a multiple of 16, e.g. roi_size=[48, 48, 48]"),
        ({"roi_size": [48, 48, 48], "filters": [8, 16, 32, 64, 128, 256]}, "multiple of 32"),
        ({"roi_size": [64, 64]}, "roi_size must list 3 positive whole numbers"),
        ({"filters": [8, 16]}, "filters must list at least 3"),
        ({"batch_size": 0}, "batch_size must be a whole number >= 1"),
        ({"max_epochs": 2.5}, "max_epochs must be a whole number >= 1"),
        ({"learning_rate": 0}, "learning_rate must be a number > 0"),
        ({"sw_overlap": 1.0}, "sw_overlap must be a number >= 0 and < 1"),
        ({"cache_rate": 1.5}, "cache_rate must be a number >= 0 and <= 1"),
        ({"context": 4}, "context must be odd"),
        ({"crop_ratios": [0, 0, 0]}, "crop_ratios must list 3 numbers"),
        ({"mirror_axes": [3]}, "mirror_axes must list distinct axes in 0..2"),
    ],
)
def test_settings_the_network_cannot_take_are_refused(changes, message):
    with pytest.raises(PipelineError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        check_settings({**DEFAULTS, **changes})


def test_the_bundle_defaults_and_the_2d_settings_pass():
    check_settings(DEFAULTS)
    check_settings({"roi_size": [224, 224], "filters": [32, 64, 128, 256, 320], "spatial_dims": 2, "context": 5})


@pytest.fixture
def listed_dataset(tmp_path) -> Path:
    """A datalist whose files exist (the settings are refused before any is read)."""
    prep = tmp_path / "PREP"
    for folder in ("images", "labels"):
        (prep / folder).mkdir(parents=True)
        for case in ("a", "b"):
            (prep / folder / f"{case}.nii.gz").write_bytes(b"")
    training = [{"image": f"images/{c}.nii.gz", "label": f"labels/{c}.nii.gz", "fold": i} for i, c in enumerate("ab")]
    (prep / "datalist.json").write_text(json.dumps({"training": training}))
    return prep


@pytest.mark.parametrize(
    ("setting", "phrase"),
    [
        ("roi_size=abc", '--set roi_size="abc": roi_size takes a list of numbers such as [96, 96, 96], not text'),
        ("roi_size=[50,50,50]", "roi_size [50, 50, 50] does not fit the network"),
    ],
)
def test_train_cli_refuses_bad_settings_in_one_line_and_writes_nothing(
    listed_dataset, tmp_path, capsys, setting, phrase
):
    run = tmp_path / "RUN"
    code = cli.main(["train", "--dataset-dir", str(listed_dataset), "--output-dir", str(run), "--set", setting])
    err = capsys.readouterr().err
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], err
    assert not run.exists()
