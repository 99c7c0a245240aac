"""The shipped phantom model: a whole run folder, usable by name from ``infer`` and ``train``, that finds the liver of
the shipped real CT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.bundle import ConfigParser

from monai_pipeline.cli import main
from monai_pipeline.samples import PHANTOM_MODEL, phantom_model, resolve_model, totalseg_example_ct
from monai_pipeline.training import build_network, load_pretrained

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "liver_tumor_ct"


def test_phantom_model_is_a_whole_run_of_the_bundles_cpu_network():
    run = phantom_model()
    record = json.loads((run / "run.json").read_text())
    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "configs" / "train.json"), str(BUNDLE / "configs" / "cpu.json")])
    assert record["network"]["filters"] == parser["filters"]
    assert record["inference"]["roi_size"] == parser["roi_size"] and record["inference"]["mirror_axes"] == []
    assert json.loads((run / "preprocessing.json").read_text())["spacing"] == [3.0, 3.0, 3.0]
    state = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state.values())
    network = build_network(**record["network"])
    report = load_pretrained(network, run / "model.pt")
    assert report is not None and len(report.loaded) == len(network.state_dict())
    assert "phantoms only" in (run / "README.md").read_text()
    assert resolve_model(PHANTOM_MODEL) == str(run) and resolve_model("runs/x") == "runs/x"


@pytest.mark.slow
def test_infer_by_name_finds_the_liver_of_the_shipped_real_ct(tmp_path, capsys):
    sample = totalseg_example_ct()
    assert main(["infer", "--model", PHANTOM_MODEL, "--input", str(sample.scan), "--output", str(tmp_path)]) == 0
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "example_ct_seg.nii.gz"))) >= 1
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(sample.liver))) >= 1
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice >= 0.85, dice  # real CT, a model that has seen phantoms only
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "no_liver" not in json.dumps(summary)


def test_train_by_name_starts_from_the_shipped_weights(monkeypatch, tmp_path):
    import monai_pipeline.training.workflow as workflow

    seen = {}

    def fake_train(*args, **kwargs):
        seen.update(kwargs)
        return tmp_path

    monkeypatch.setattr(workflow, "train", fake_train)
    argv = ["train", "--dataset-dir", str(tmp_path), "--config", "cpu", "--pretrained", PHANTOM_MODEL]
    assert main(argv) == 0
    assert Path(seen["pretrained"]) == phantom_model() / "model.pt"
    assert np.isclose(Path(seen["pretrained"]).stat().st_size / 2**20, 5.4, atol=0.5)
