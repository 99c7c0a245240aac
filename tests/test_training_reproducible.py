"""Reproducible training on the CPU: the same seed gives the same weights, and a run stopped at a checkpoint and
resumed ends with exactly the weights of an uninterrupted one (the checkpoint holds the random state)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from _bundle_data import BUNDLE, load_weights, prepare_small_dataset, read_log, restored_logging

from monai_pipeline.errors import Interrupted
from monai_pipeline.training import LAST_NAME, RunCheckpoint
from monai_pipeline.training.workflow import train

TINY = {
    "filters": [8, 16, 32],
    "roi_size": [32, 32, 32],
    "num_workers": 0,
    "val_interval": 1,
    "warmup_epochs": 1,
    "seed": 3,
    "device": "$torch.device('cpu')",
    "amp": False,
}
EPOCHS, STOP = 3, 2


@pytest.fixture(scope="module")
def prep(tmp_path_factory) -> Path:
    return prepare_small_dataset(tmp_path_factory.mktemp("reproducible"))[1]


def _train(prep: Path, run: Path) -> dict[str, torch.Tensor]:
    with restored_logging():
        train(BUNDLE, prep, epochs=EPOCHS, output_dir=run, overrides=TINY, quiet=True)
    return load_weights(run / LAST_NAME)


def _same(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.slow
def test_stopped_and_resumed_run_equals_an_uninterrupted_one(prep, tmp_path, monkeypatch):
    whole = _train(prep, tmp_path / "whole")
    assert _same(whole, _train(prep, tmp_path / "again")), "the same seed must give the same weights on the CPU"

    save = RunCheckpoint._save_last

    def save_then_stop(self, engine):  # Ctrl-C right after the checkpoint of epoch STOP
        save(self, engine)
        if engine.state.epoch == STOP:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunCheckpoint, "_save_last", save_then_stop)
    with pytest.raises(Interrupted, match=f"kept checkpoint_last.pt \\(epoch {STOP}\\)"), restored_logging():
        train(BUNDLE, prep, epochs=EPOCHS, output_dir=tmp_path / "parts", overrides=TINY, quiet=True)
    monkeypatch.undo()
    shutil.copytree(tmp_path / "parts", tmp_path / "no_rng")

    assert _same(_train(prep, tmp_path / "parts"), whole)

    # the same resume without the saved random state draws other patches: the state is what makes it equal
    checkpoint = torch.load(tmp_path / "no_rng" / LAST_NAME, weights_only=True)
    del checkpoint["rng"]
    torch.save(checkpoint, tmp_path / "no_rng" / LAST_NAME)
    assert not _same(_train(prep, tmp_path / "no_rng"), whole)


def test_capture_and_restore_replay_the_transforms_loader_and_global_draws():
    import random

    import numpy as np
    from monai.data import DataLoader, Dataset
    from monai.transforms import Compose, RandGaussianNoised, RandSpatialCropd

    from monai_pipeline.training.rng import capture_rng, random_transforms, restore_rng

    transform = Compose(
        [RandSpatialCropd("image", roi_size=(4, 4), random_size=False), RandGaussianNoised("image", prob=1.0)]
    )
    data = [{"image": torch.zeros(1, 8, 8) + i} for i in range(4)]
    loader = DataLoader(Dataset(data, transform), batch_size=2, shuffle=True, num_workers=0)
    assert len(random_transforms(transform)) >= 3  # the Compose, the two transforms and their array transforms

    def draw():
        batches = [batch["image"].clone() for batch in loader]
        return batches, random.random(), np.random.rand(), torch.rand(1)

    saved = capture_rng(loader)
    first = draw()
    restore_rng(saved, loader)
    second = draw()
    assert all(torch.equal(a, b) for a, b in zip(first[0], second[0]))
    assert first[1:3] == second[1:3] and torch.equal(first[3], second[3])
    assert not all(torch.equal(a, b) for a, b in zip(first[0], draw()[0]))


@pytest.mark.slow
def test_a_run_ended_by_its_budget_validates_and_saves_its_last_epoch(prep, tmp_path):
    run = tmp_path / "RUN"
    budget = {**TINY, "max_minutes": 1e-6, "val_interval": 10}
    with restored_logging():
        train(BUNDLE, prep, epochs=EPOCHS, output_dir=run, overrides=budget, quiet=True)
    state = torch.load(run / LAST_NAME, weights_only=True)
    assert state["trainer"]["epoch"] == 1 and state["best_epoch"] == 1
    _, rows = read_log(run)
    assert len(rows) == 1 and 0.0 <= rows[0]["val_mean_dice"] <= 1.0
    assert _same(load_weights(run / "model.pt"), state["model"])
