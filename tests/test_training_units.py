"""Unit tests for monai_pipeline.training: the transforms, inferer, network, data lists, checkpoints, CSV log,
fine-tuning helpers and small utilities the bundle's configs reference, on tiny tensors, networks and ignite runs."""

from __future__ import annotations

import copy
import csv
import gc
import json
import os
import warnings
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.handlers import MeanDice
from monai.optimizers import WarmupCosineSchedule

from monai_pipeline import __version__
from monai_pipeline.errors import InputError, PipelineError
from monai_pipeline.training import (
    BEST_NAME,
    LAST_NAME,
    RUN_RECORD,
    EpochCSVLogger,
    FreezeEncoder,
    LiTSRegionsd,
    RunCheckpoint,
    SliceStackInferer,
    SlicesToChannelsd,
    build_network,
    copy_preprocessing,
    enabled,
    fold_files,
    is_rank_zero,
    load_datalist,
    load_pretrained,
    read_run_record,
    region_output,
    write_run_record,
)
from monai_pipeline.training.finetune import DYNUNET_ENCODER
from monai_pipeline.training.transforms import LiTSRegions, SlicesToChannels
from monai_pipeline.training.workflow import parse_override

PREPARE = "monai-pipeline prepare"
TINY_FILTERS = (4, 8, 16)


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


def _tiny_net(seed: int, out_channels: int = 3, in_channels: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network(2, in_channels, out_channels, filters=TINY_FILTERS)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _clone_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------------------------ transforms


def test_lits_regions_liver_includes_tumour_and_tumour_alone() -> None:
    label = torch.tensor([[[0, 1, 2], [2, 1, 0]]], dtype=torch.uint8)  # (1, 2, 3)
    regions = LiTSRegions()(label)
    assert regions.shape == (2, 2, 3)
    assert regions.dtype == torch.float32
    assert torch.equal(regions[0], torch.tensor([[0.0, 1.0, 1.0], [1.0, 1.0, 0.0]]))
    assert torch.equal(regions[1], torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]))


def test_lits_regions_dict_wrapper_converts_pred_and_label() -> None:
    pred = torch.tensor([[[[2, 0], [1, 1]]]])  # (1, 1, 2, 2) as argmax output of a 3D volume
    label = torch.tensor([[[[1, 0], [2, 1]]]], dtype=torch.uint8)
    out = LiTSRegionsd(keys=["pred", "label"])({"pred": pred, "label": label, "other": 7})
    assert torch.equal(out["pred"][:, 0], torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]]))
    assert torch.equal(out["label"][1, 0], torch.tensor([[0.0, 0.0], [1.0, 0.0]]))
    assert out["other"] == 7


def test_lits_regions_rejects_multichannel_input() -> None:
    with pytest.raises(ValueError, match="one-channel"):
        LiTSRegions()(torch.zeros(2, 3, 3))


def test_slices_to_channels_orders_channel_major_then_slice() -> None:
    img = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)  # (C, H, W, S)
    out = SlicesToChannels()(img)
    assert out.shape == (10, 3, 4)
    for c in range(2):
        for s in range(5):
            assert torch.equal(out[c * 5 + s], img[c, :, :, s])


def test_slices_to_channels_label_keeps_centre_slice() -> None:
    label = torch.arange(3 * 4 * 5).reshape(1, 3, 4, 5)
    out = SlicesToChannels(centre_only=True)(label)
    assert out.shape == (1, 3, 4)
    assert torch.equal(out, label[..., 2])


def test_slices_to_channels_dict_wrapper_stacks_images_and_centres_labels() -> None:
    image = torch.rand(1, 4, 4, 3)
    label = torch.randint(0, 3, (1, 4, 4, 3))
    out = SlicesToChannelsd(keys=["image", "label"])({"image": image, "label": label})
    assert torch.equal(out["image"], image[0].permute(2, 0, 1))
    assert torch.equal(out["label"], label[..., 1])


@pytest.mark.parametrize("centre_only", [False, True])
def test_slices_to_channels_drops_metatensor_metadata(centre_only: bool) -> None:
    img = MetaTensor(torch.rand(1, 4, 4, 3), affine=torch.diag(torch.tensor([0.7, 0.8, 2.5, 1.0])))
    out = SlicesToChannels(centre_only=centre_only)(img)
    assert type(out) is torch.Tensor
    assert torch.equal(out, img.as_tensor()[..., 1] if centre_only else img.as_tensor()[0].permute(2, 0, 1))


@pytest.mark.parametrize("shape", [(4, 4, 3), (1, 1, 4, 4, 3)])
def test_slices_to_channels_rejects_wrong_ndim(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W, S\)"):
        SlicesToChannels()(torch.zeros(shape))


# ------------------------------------------------------------------------------------------------ inferer


def _volume(batch: int = 1, channels: int = 1, h: int = 6, w: int = 5, d: int = 7) -> torch.Tensor:
    return torch.arange(batch * channels * h * w * d, dtype=torch.float32).reshape(batch, channels, h, w, d)


def _pick(channel: int):
    return lambda x: x[:, channel : channel + 1]


def _shifted(volume: torch.Tensor, channel: int, offset: int) -> torch.Tensor:
    """``volume[:, channel]`` with slice z replaced by slice z + offset, clamped to the ends: (B, 1, H, W, D)."""
    depth = volume.shape[-1]
    index = torch.clamp(torch.arange(depth) + offset, 0, depth - 1)
    return volume[:, channel : channel + 1, ..., index]


@pytest.mark.parametrize("context", [3, 5])
@pytest.mark.parametrize("roi_size", [(6, 5), (4, 4)], ids=["whole-slice", "sliding"])
def test_slice_stack_inferer_feeds_neighbouring_slices(context: int, roi_size: tuple[int, int]) -> None:
    volume = _volume(channels=2)
    half = context // 2
    inferer = SliceStackInferer(roi_size, context=context, sw_batch_size=3)
    for c in range(2):
        for j in range(context):
            out = inferer(volume, _pick(c * context + j))
            assert out.shape == (1, 1, 6, 5, 7)
            torch.testing.assert_close(out, _shifted(volume, c, j - half), atol=1e-4, rtol=0)


def test_slice_stack_inferer_ends_repeat_the_end_slice() -> None:
    volume = _volume(d=4)
    out_first = SliceStackInferer((6, 5), context=5, mode="constant")(volume, _pick(0))  # slice z - 2
    out_last = SliceStackInferer((6, 5), context=5, mode="constant")(volume, _pick(4))  # slice z + 2
    for z, source in enumerate([0, 0, 0, 1]):
        assert torch.equal(out_first[..., z], volume[..., source]), z
    for z, source in enumerate([2, 3, 3, 3]):
        assert torch.equal(out_last[..., z], volume[..., source]), z


def test_slice_stack_inferer_context_one_is_plain_2d() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    volume = torch.rand(1, 2, 6, 5, 7)
    with torch.no_grad():
        out = SliceStackInferer((6, 5), context=1)(volume, conv)
        expected = torch.stack([conv(volume[..., z]) for z in range(7)], dim=-1)
    assert out.shape == (1, 3, 6, 5, 7)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("slices_per_chunk", [1, 2, 3, 7])
def test_slice_stack_inferer_chunking_changes_nothing(slices_per_chunk: int) -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 2, 3, padding=1)
    volume = torch.rand(1, 1, 8, 8, 7)
    with torch.no_grad():
        whole = SliceStackInferer((4, 4), context=3, slices_per_chunk=64)(volume, conv)
        chunked = SliceStackInferer((4, 4), context=3, slices_per_chunk=slices_per_chunk)(volume, conv)
    assert chunked.shape == (1, 2, 8, 8, 7)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


def test_slice_stack_inferer_batch_of_two() -> None:
    volume = _volume(batch=2)
    inferer = SliceStackInferer((6, 5), context=3, mode="constant", slices_per_chunk=3)
    out = inferer(volume, _pick(2))
    assert out.shape == (2, 1, 6, 5, 7)
    assert torch.equal(out, _shifted(volume, 0, 1))
    assert torch.equal(out[1:], inferer(volume[1:], _pick(2)))


def test_slice_stack_inferer_matches_slices_to_channels() -> None:
    """The stack the inferer gives the network for slice z is what training sees: SlicesToChannels of [z-h, z+h]."""
    volume = torch.rand(1, 2, 4, 3, 6)
    context, half = 5, 2
    seen: list[torch.Tensor] = []

    def spy(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x[:, :1]

    SliceStackInferer((4, 3), context=context, sw_batch_size=64, slices_per_chunk=4)(volume, spy)
    stacks = torch.cat(seen)
    assert stacks.shape == (6, 2 * context, 4, 3)
    for z in range(6):
        index = torch.clamp(torch.arange(z - half, z + half + 1), 0, 5)
        assert torch.equal(stacks[z], SlicesToChannels()(volume[0][..., index])), z


@pytest.mark.parametrize("context", [0, 2, -1])
def test_slice_stack_inferer_rejects_even_or_nonpositive_context(context: int) -> None:
    with pytest.raises(ValueError, match="context"):
        SliceStackInferer((4, 4), context=context)


def test_slice_stack_inferer_rejects_3d_roi_and_non_volume_input() -> None:
    with pytest.raises(ValueError, match="roi_size"):
        SliceStackInferer((4, 4, 4))
    with pytest.raises(ValueError, match="volume"):
        SliceStackInferer((4, 4))(torch.zeros(1, 1, 4, 4), _pick(0))


# ------------------------------------------------------------------------------------------------ network


def test_build_network_2d_output_shape_and_in_channels() -> None:
    net = build_network(2, in_channels=5, out_channels=3, filters=TINY_FILTERS).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 5, 16, 12))
    assert out.shape == (2, 3, 16, 12)
    assert net.input_block.conv1.conv.weight.shape[1] == 5
    with pytest.raises(RuntimeError), torch.no_grad():
        net(torch.rand(2, 1, 16, 12))


def test_build_network_3d_output_shape() -> None:
    net = build_network(3, in_channels=1, filters=(4, 8, 8)).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 8, 12, 4))
    assert out.shape == (1, 3, 8, 12, 4)


@pytest.mark.parametrize("kwargs", [{"spatial_dims": 1}, {"spatial_dims": 4}, {"filters": (4,)}])
def test_build_network_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build_network(**kwargs)


def test_build_network_two_levels_is_refused_naming_filters() -> None:
    with pytest.raises(ValueError, match="filters"):
        build_network(2, filters=(4, 8))


# ------------------------------------------------------------------------------------------------ data lists

FOLDS = (0, 1, 2, 0, 1)


def _write_nifti(path: Path, value: int, dtype: type) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full((3, 3, 2), value, dtype=dtype), np.eye(4)), str(path))


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared-dataset folder made by hand: 5 training cases over folds 0..2 and a preprocessing.json."""
    root = tmp_path / "prep"
    training = []
    for index, fold in enumerate(FOLDS):
        name = f"case_{index:03d}"
        _write_nifti(root / "images" / f"{name}.nii.gz", index, np.int16)
        _write_nifti(root / "labels" / f"{name}.nii.gz", index % 3, np.uint8)
        training.append(
            {"image": f"images/{name}.nii.gz", "label": f"labels/{name}.nii.gz", "fold": fold, "case": name}
        )
    (root / "datalist.json").write_text(json.dumps({"training": training, "test": [], "num_folds": 3}))
    (root / "preprocessing.json").write_text(json.dumps({"spacing": [1.0, 1.0, 2.5], "window": [-200, 250]}))
    return root


def _set_training(root: Path, training: list[dict[str, Any]]) -> None:
    datalist = json.loads((root / "datalist.json").read_text())
    datalist["training"] = training
    (root / "datalist.json").write_text(json.dumps(datalist))


@pytest.mark.parametrize("fold", [0, 1, 2])
def test_fold_files_splits_are_disjoint_and_complete(prepared: Path, fold: int) -> None:
    train = fold_files(prepared, fold, "train")
    val = fold_files(prepared, fold, "val")
    every = fold_files(prepared, fold, "all")
    names = {split: [entry["case"] for entry in entries] for split, entries in (("t", train), ("v", val), ("a", every))}
    assert names["v"] == [f"case_{i:03d}" for i, f in enumerate(FOLDS) if f == fold]
    assert names["t"] == [f"case_{i:03d}" for i, f in enumerate(FOLDS) if f != fold]
    assert not set(names["t"]) & set(names["v"])
    assert sorted(names["t"] + names["v"]) == names["a"] == [f"case_{i:03d}" for i in range(5)]
    for entry in every:
        for key in ("image", "label"):
            path = Path(entry[key])
            assert path.is_absolute() and path.is_file()
            assert path == prepared.resolve() / f"{key}s" / f"{entry['case']}.nii.gz"
    assert all(entry["fold"] == fold for entry in val)


def test_fold_files_gives_absolute_paths_from_a_relative_folder(
    prepared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(prepared.parent)
    entries = fold_files("prep", 0, "val")
    assert [Path(e["image"]) for e in entries] == [
        prepared.resolve() / "images" / "case_000.nii.gz",
        prepared.resolve() / "images" / "case_003.nii.gz",
    ]


def test_load_datalist_returns_the_datalist(prepared: Path) -> None:
    datalist = load_datalist(prepared)
    assert len(datalist["training"]) == 5
    assert datalist["num_folds"] == 3


def test_missing_dataset_folder_names_prepare(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        fold_files(tmp_path / "nowhere", 0, "train")
    message = _one_line(err)
    assert str(tmp_path / "nowhere") in message and PREPARE in message


def test_missing_datalist_names_prepare(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        load_datalist(tmp_path)
    message = _one_line(err)
    assert str(tmp_path / "datalist.json") in message and PREPARE in message


def test_datalist_listing_a_missing_file_names_it(prepared: Path) -> None:
    (prepared / "labels" / "case_002.nii.gz").unlink()
    with pytest.raises(InputError) as err:
        fold_files(prepared, 0, "train")
    message = _one_line(err)
    assert str(prepared / "labels" / "case_002.nii.gz") in message
    assert "missing" in message


def test_datalist_with_invalid_json(prepared: Path) -> None:
    (prepared / "datalist.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON") as err:
        load_datalist(prepared)
    _one_line(err)


def test_fold_that_does_not_exist(prepared: Path) -> None:
    with pytest.raises(PipelineError) as err:
        fold_files(prepared, 5, "val")
    message = _one_line(err)
    assert "fold 5" in message and "[0, 1, 2]" in message and "datalist.json" in message


def test_empty_training_list_names_prepare(prepared: Path) -> None:
    _set_training(prepared, [])
    with pytest.raises(InputError) as err:
        fold_files(prepared, 0, "train")
    message = _one_line(err)
    assert "no training cases" in message and PREPARE in message


def test_one_fold_trains_on_the_cases_it_validates_on(prepared: Path, caplog) -> None:
    training = json.loads((prepared / "datalist.json").read_text())["training"]
    _set_training(prepared, [{**entry, "fold": 0} for entry in training])
    assert len(fold_files(prepared, 0, "val")) == 5
    with caplog.at_level("WARNING"):
        assert fold_files(prepared, 0, "train") == fold_files(prepared, 0, "val")
    assert "training validates on its own cases" in caplog.text


def test_fold_leaving_no_validation_case(prepared: Path) -> None:
    training = json.loads((prepared / "datalist.json").read_text())["training"]
    _set_training(prepared, [{**entry, "fold": i % 2} for i, entry in enumerate(training)])
    with pytest.raises(PipelineError, match="fold 2 does not exist") as err:
        fold_files(prepared, 2, "val")
    _one_line(err)


def test_fold_files_rejects_unknown_split(prepared: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        fold_files(prepared, 0, "test")


def test_datalist_entry_without_label_is_an_input_error(prepared: Path) -> None:
    training = json.loads((prepared / "datalist.json").read_text())["training"]
    del training[1]["label"]
    _set_training(prepared, training)
    with pytest.raises(InputError):
        load_datalist(prepared)


def test_copy_preprocessing_copies_byte_identically_and_is_idempotent(prepared: Path, tmp_path: Path) -> None:
    run = tmp_path / "run" / "nested"
    target = copy_preprocessing(prepared, run)
    assert target == run / "preprocessing.json"
    assert target.read_bytes() == (prepared / "preprocessing.json").read_bytes()
    before = target.stat()
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))  # an unneeded rewrite would show
    before = target.stat()
    assert copy_preprocessing(prepared, run) == target
    after = target.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    (prepared / "preprocessing.json").write_text(json.dumps({"spacing": [2.0, 2.0, 2.0]}))
    copy_preprocessing(prepared, run)
    assert target.read_bytes() == (prepared / "preprocessing.json").read_bytes()


def test_copy_preprocessing_without_source_names_prepare(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        copy_preprocessing(tmp_path, tmp_path / "run")
    message = _one_line(err)
    assert str(tmp_path / "preprocessing.json") in message and PREPARE in message


# ------------------------------------------------------------------------------------------------ RunCheckpoint

ITERATIONS = 2  # per epoch
WARMUP = 2  # iterations
LR = 0.1


class _Run:
    """A tiny ignite training run wired as the bundle wires it: the evaluator runs from a trainer EPOCH_COMPLETED
    handler registered before RunCheckpoint, and sets ``val_mean_dice`` from ``scores[epoch - 1]`` on COMPLETED."""

    def __init__(
        self,
        output_dir: Path,
        scores: list[float],
        *,
        max_epochs: int,
        patience: int = 0,
        resume: bool = True,
        seed: int = 0,
        out_features: int = 2,
        stop_after: int | None = None,
    ) -> None:
        torch.manual_seed(seed)
        self.network = torch.nn.Linear(3, out_features)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=LR)
        self.scheduler = WarmupCosineSchedule(
            self.optimizer, warmup_steps=WARMUP, t_total=max_epochs * ITERATIONS, warmup_multiplier=0.1
        )
        generator = torch.Generator().manual_seed(123)
        self.data = [torch.randn(4, 3, generator=generator) for _ in range(ITERATIONS)]
        self.scores, self.max_epochs = scores, max_epochs
        self.lr_used: dict[int, float] = {}
        self.epochs_run: list[int] = []
        self.trainer = Engine(self._step)
        self.evaluator = Engine(lambda engine, batch: None)
        self.evaluator.add_event_handler(Events.COMPLETED, self._score)
        self.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: self.evaluator.run([0]))
        self.checkpoint = RunCheckpoint(
            output_dir, self.network, self.optimizer, self.evaluator, self.scheduler, patience=patience, resume=resume
        )
        self.checkpoint.attach(self.trainer)
        self.trainer.add_event_handler(Events.EPOCH_STARTED, lambda engine: self.epochs_run.append(engine.state.epoch))
        if stop_after is not None:
            self.trainer.add_event_handler(Events.EPOCH_COMPLETED(once=stop_after), lambda e: e.terminate())

    def _step(self, engine: Engine, batch: torch.Tensor) -> dict[str, float]:
        self.lr_used[engine.state.iteration] = self.optimizer.param_groups[0]["lr"]
        self.optimizer.zero_grad()
        loss = (self.network(batch) - 1.0).pow(2).mean()
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return {"loss": loss.item()}

    def _score(self, evaluator: Engine) -> None:
        evaluator.state.metrics["val_mean_dice"] = self.scores[self.trainer.state.epoch - 1]

    def run(self) -> _Run:
        self.trainer.run(self.data, max_epochs=self.max_epochs)
        return self


def _schedule_lrs(t_total: int, steps: int) -> list[float]:
    """The lr a fresh WarmupCosineSchedule of ``t_total`` iterations gives iterations 1..steps."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
    schedule = WarmupCosineSchedule(optimizer, warmup_steps=WARMUP, t_total=t_total, warmup_multiplier=0.1)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_best_model_written_only_when_the_score_improves(tmp_path: Path) -> None:
    run = _Run(tmp_path, [0.3, 0.5, 0.4, 0.6, 0.6, 0.2], max_epochs=6)
    snapshots: list[dict[str, torch.Tensor]] = []
    inodes: list[int] = []

    def track(engine: Engine) -> None:
        snapshots.append(_clone_state(run.network))
        inodes.append((tmp_path / BEST_NAME).stat().st_ino)
        saved = torch.load(tmp_path / BEST_NAME, weights_only=True)
        best_epoch = max(e for e in (1, 2, 4) if e <= engine.state.epoch)
        assert _same_state(saved, snapshots[best_epoch - 1]), engine.state.epoch

    run.trainer.add_event_handler(Events.EPOCH_COMPLETED, track)
    run.run()
    rewritten = [epoch for epoch in range(2, 7) if inodes[epoch - 1] != inodes[epoch - 2]]
    assert rewritten == [2, 4]
    assert not _same_state(snapshots[3], snapshots[5])  # the weights moved on after the best epoch
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(torch.load(tmp_path / BEST_NAME, weights_only=True))
    assert _same_state(fresh.state_dict(), snapshots[3])
    assert (run.checkpoint.best_metric, run.checkpoint.best_epoch, run.checkpoint.stale_rounds) == (0.6, 4, 2)
    assert sorted(os.listdir(tmp_path)) == [LAST_NAME, BEST_NAME]


def test_last_checkpoint_holds_the_resumable_state(tmp_path: Path) -> None:
    run = _Run(tmp_path, [0.3, 0.5, 0.4], max_epochs=3).run()
    state = torch.load(tmp_path / LAST_NAME, weights_only=True)
    assert set(state) == {
        "model",
        "optimizer",
        "lr_scheduler",
        "trainer",
        "best_metric",
        "best_epoch",
        "stale_rounds",
        "rng",
    }
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    assert _same_state(state["model"], run.network.state_dict())
    assert state["trainer"] == {"epoch": 3, "iteration": 3 * ITERATIONS}
    assert (state["best_metric"], state["best_epoch"], state["stale_rounds"]) == (0.5, 2, 1)
    assert state["lr_scheduler"]["last_epoch"] == 3 * ITERATIONS
    assert state["lr_scheduler"]["t_total"] == 3 * ITERATIONS
    own = run.optimizer.state_dict()
    assert state["optimizer"]["param_groups"][0]["lr"] == own["param_groups"][0]["lr"]
    for index, values in own["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(state["optimizer"]["state"][index][key], values[key])


@pytest.mark.parametrize(("patience", "last_epoch"), [(1, 3), (3, 5), (4, 8), (0, 8)])
def test_early_stopping_after_patience_rounds(tmp_path: Path, patience: int, last_epoch: int) -> None:
    # improvements at epochs 1, 2 and 6; an equal score (epochs 7, 8) is no improvement
    run = _Run(tmp_path, [0.5, 0.6, 0.55, 0.58, 0.59, 0.9, 0.9, 0.9], max_epochs=8, patience=patience).run()
    assert run.trainer.state.epoch == last_epoch
    assert run.epochs_run == list(range(1, last_epoch + 1))
    state = torch.load(tmp_path / LAST_NAME, weights_only=True)
    assert state["trainer"]["epoch"] == last_epoch
    assert state["stale_rounds"] == {1: 1, 3: 3, 4: 2, 0: 2}[patience]


def test_negative_patience_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="patience"):
        network = torch.nn.Linear(1, 1)
        RunCheckpoint(tmp_path, network, torch.optim.SGD(network.parameters(), lr=1.0), patience=-1)


def test_resume_restores_weights_optimizer_scores_and_schedule_position(tmp_path: Path) -> None:
    scores = [0.2, 0.5, 0.4, 0.45, 0.7, 0.3]
    first = _Run(tmp_path, scores, max_epochs=3).run()
    weights, optimizer = _clone_state(first.network), copy.deepcopy(first.optimizer.state_dict())

    second = _Run(tmp_path, scores, max_epochs=6, seed=1)
    assert not _same_state(second.network.state_dict(), weights)
    restored: dict[str, Any] = {}

    def capture(engine: Engine) -> None:
        restored.update(
            epoch=engine.state.epoch,
            iteration=engine.state.iteration,
            weights=_clone_state(second.network),
            optimizer=copy.deepcopy(second.optimizer.state_dict()),
            scores=(second.checkpoint.best_metric, second.checkpoint.best_epoch, second.checkpoint.stale_rounds),
            schedule=(second.scheduler.last_epoch, second.scheduler.t_total, second.scheduler.warmup_steps),
        )

    second.trainer.add_event_handler(Events.STARTED, capture)
    second.run()
    assert (restored["epoch"], restored["iteration"]) == (3, 3 * ITERATIONS)
    assert _same_state(restored["weights"], weights)
    for index, values in optimizer["state"].items():
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(restored["optimizer"]["state"][index][key], values[key])
    assert restored["scores"] == (0.5, 2, 1)
    assert restored["schedule"] == (3 * ITERATIONS, 6 * ITERATIONS, WARMUP)  # position kept, length from config
    assert second.epochs_run == [4, 5, 6]
    assert (second.checkpoint.best_metric, second.checkpoint.best_epoch) == (0.7, 5)
    # from the second resumed iteration on, and at the end, the lr is the one the new 6-epoch schedule predicts
    expected = _schedule_lrs(6 * ITERATIONS, 6 * ITERATIONS + 1)
    for iteration in range(3 * ITERATIONS + 2, 6 * ITERATIONS + 1):
        assert second.lr_used[iteration] == pytest.approx(expected[iteration - 1], abs=1e-12), iteration
    assert second.optimizer.param_groups[0]["lr"] == pytest.approx(expected[-1], abs=1e-12)
    assert expected[3 * ITERATIONS + 1] != pytest.approx(_schedule_lrs(3 * ITERATIONS, 3 * ITERATIONS + 2)[-1])


def test_first_resumed_iteration_uses_the_new_schedule_lr(tmp_path: Path) -> None:
    scores = [0.2, 0.5, 0.4, 0.45, 0.7, 0.3]
    _Run(tmp_path, scores, max_epochs=3).run()
    second = _Run(tmp_path, scores, max_epochs=6, seed=1).run()
    expected = _schedule_lrs(6 * ITERATIONS, 6 * ITERATIONS)
    first_resumed = 3 * ITERATIONS + 1
    assert second.lr_used[first_resumed] == pytest.approx(expected[first_resumed - 1], abs=1e-12)


def test_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    scores = [0.2, 0.5, 0.4, 0.45, 0.7, 0.3]
    whole = _Run(tmp_path / "whole", scores, max_epochs=6).run()
    _Run(tmp_path / "parts", scores, max_epochs=6, stop_after=3).run()
    assert torch.load(tmp_path / "parts" / LAST_NAME, weights_only=True)["trainer"]["epoch"] == 3
    resumed = _Run(tmp_path / "parts", scores, max_epochs=6, seed=7).run()
    assert resumed.epochs_run == [4, 5, 6]
    assert resumed.lr_used == {i: whole.lr_used[i] for i in range(7, 13)}
    torch.testing.assert_close(resumed.network.state_dict(), whole.network.state_dict(), rtol=0, atol=1e-7)
    assert resumed.checkpoint.best_metric == whole.checkpoint.best_metric == 0.7
    for folder in ("whole", "parts"):
        assert sorted(os.listdir(tmp_path / folder)) == [LAST_NAME, BEST_NAME]


def test_best_score_is_in_the_trainer_state_also_after_a_resume(tmp_path: Path) -> None:
    run = _Run(tmp_path, [0.3, 0.5, 0.4], max_epochs=3).run()
    assert (run.trainer.state.best_metric, run.trainer.state.best_metric_epoch) == (0.5, 2)
    resumed = _Run(tmp_path, [0.3, 0.5, 0.4, 0.1], max_epochs=4, seed=1).run()
    assert (resumed.trainer.state.best_metric, resumed.trainer.state.best_metric_epoch) == (0.5, 2)


def test_resume_false_starts_from_scratch(tmp_path: Path) -> None:
    _Run(tmp_path, [0.9, 0.95], max_epochs=2).run()
    fresh = _Run(tmp_path, [0.1, 0.2, 0.3], max_epochs=3, seed=1, resume=False)
    initial = _clone_state(fresh.network)
    started: list[tuple[int, bool]] = []
    fresh.trainer.add_event_handler(
        Events.STARTED,
        lambda e: started.append((e.state.epoch, _same_state(fresh.network.state_dict(), initial))),
    )
    fresh.run()
    assert started == [(0, True)]
    assert fresh.epochs_run == [1, 2, 3]
    state = torch.load(tmp_path / LAST_NAME, weights_only=True)
    assert (state["best_metric"], state["best_epoch"], state["trainer"]["epoch"]) == (0.3, 3, 3)


def test_resume_with_another_architecture_names_the_checkpoint(tmp_path: Path) -> None:
    _Run(tmp_path, [0.5], max_epochs=1).run()
    other = _Run(tmp_path, [0.5, 0.6], max_epochs=2, out_features=4)
    with pytest.raises(InputError) as err:
        other.run()
    message = _one_line(err)
    assert str(tmp_path / LAST_NAME) in message and "another network" in message
    assert sorted(os.listdir(tmp_path)) == [LAST_NAME, BEST_NAME]


# ------------------------------------------------------------------------------------------------ EpochCSVLogger


def test_epoch_csv_logger_rows_and_merged_header(tmp_path: Path) -> None:
    network = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(network.parameters(), lr=1.0)
    trainer = Engine(lambda engine, batch: {"loss": torch.tensor(10.0 * engine.state.epoch + batch)})
    evaluator = Engine(lambda engine, batch: None)
    metrics = {
        2: {"val_mean_dice": torch.tensor(0.25), "val_liver_dice": 0.5},
        4: {"val_mean_dice": 0.75, "val_liver_dice": torch.tensor(0.5), "val_tumour_dice": torch.tensor([0.1, 0.3])},
    }

    def set_lr(engine: Engine) -> None:
        optimizer.param_groups[0]["lr"] = 0.001 * engine.state.epoch

    def validate(engine: Engine) -> None:
        if engine.state.epoch in metrics:
            evaluator.run([0])

    def score(engine: Engine) -> None:
        engine.state.metrics = dict(metrics[trainer.state.epoch])

    trainer.add_event_handler(Events.EPOCH_STARTED, set_lr)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, validate)
    evaluator.add_event_handler(Events.COMPLETED, score)
    EpochCSVLogger(tmp_path, optimizer, evaluator).attach(trainer)
    trainer.run([0.0, 1.0, 2.0], max_epochs=5)

    with (tmp_path / "training_log.csv").open(newline="") as stream:
        header = next(csv.reader(stream))
        stream.seek(0)
        rows = list(csv.DictReader(stream))
    assert header == ["epoch", "train_loss", "learning_rate", "val_mean_dice", "val_liver_dice", "val_tumour_dice"]
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5]
    for epoch, row in enumerate(rows, start=1):
        assert float(row["train_loss"]) == pytest.approx(10.0 * epoch + 1.0)
        assert float(row["learning_rate"]) == pytest.approx(0.001 * epoch)
    assert [row["val_mean_dice"] for row in rows] == ["", "0.25", "", "0.75", ""]
    assert [row["val_liver_dice"] for row in rows] == ["", "0.5", "", "0.5", ""]
    assert [row["val_tumour_dice"] for row in rows[:3] + rows[4:]] == ["", "", "", ""]
    assert float(rows[3]["val_tumour_dice"]) == pytest.approx(0.2)


def test_epoch_csv_logger_reads_the_loss_of_decollated_output(tmp_path: Path) -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5)
    trainer = Engine(lambda engine, batch: [{"loss": batch, "pred": 0}, {"loss": batch, "pred": 1}])
    EpochCSVLogger(tmp_path, optimizer).attach(trainer)
    trainer.run([1.0, 2.0, 6.0], max_epochs=2)
    with (tmp_path / "training_log.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["epoch"], float(row["train_loss"]), float(row["learning_rate"])) for row in rows] == [
        ("1", 3.0, 0.5),
        ("2", 3.0, 0.5),
    ]
    assert list(rows[0]) == ["epoch", "train_loss", "learning_rate"]


def test_epoch_csv_logger_closes_the_log_when_merging_columns(tmp_path: Path) -> None:
    optimizer = torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.5)
    trainer = Engine(lambda engine, batch: {"loss": 1.0})
    evaluator = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(once=2), lambda engine: evaluator.run([0]))
    evaluator.add_event_handler(Events.COMPLETED, lambda engine: engine.state.metrics.update(val_mean_dice=0.5))
    EpochCSVLogger(tmp_path, optimizer, evaluator).attach(trainer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        trainer.run([0], max_epochs=2)
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


# ------------------------------------------------------------------------------------------------ load_pretrained


class _NotAWeight:
    def __init__(self) -> None:
        self.payload = "arbitrary pickled object"


def test_load_pretrained_plain_state_dict(tmp_path: Path) -> None:
    source, target = _tiny_net(0), _tiny_net(1)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    report = load_pretrained(target, tmp_path / "model.pt")
    assert sorted(report.loaded) == sorted(source.state_dict())
    assert report.skipped_shape == report.missing == report.unexpected == []
    assert _same_state(target.state_dict(), source.state_dict())


@pytest.mark.parametrize("wrap", ["model", "module"])
def test_load_pretrained_checkpoint_and_ddp_names(tmp_path: Path, wrap: str) -> None:
    source, target = _tiny_net(0), _tiny_net(1)
    state = source.state_dict()
    payload = {"model": state, "epoch": 3} if wrap == "model" else {f"module.{k}": v for k, v in state.items()}
    torch.save(payload, tmp_path / "checkpoint.pt")
    report = load_pretrained(target, str(tmp_path / "checkpoint.pt"))
    assert report.missing == report.unexpected == report.skipped_shape == []
    assert _same_state(target.state_dict(), state)


def test_load_pretrained_into_a_wrapped_network(tmp_path: Path) -> None:
    source, target = _tiny_net(0), _tiny_net(1)
    wrapper = torch.nn.Module()
    wrapper.module = target  # as DistributedDataParallel holds it
    torch.save(source.state_dict(), tmp_path / "model.pt")
    load_pretrained(wrapper, tmp_path / "model.pt")
    assert _same_state(target.state_dict(), source.state_dict())


def test_load_pretrained_skips_a_head_of_another_shape(tmp_path: Path) -> None:
    source, target = _tiny_net(0, out_channels=2), _tiny_net(1, out_channels=3)
    head_before = _clone_state(target.output_block)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    report = load_pretrained(target, tmp_path / "model.pt")
    assert sorted(report.skipped_shape) == ["output_block.conv.conv.bias", "output_block.conv.conv.weight"]
    assert report.missing == report.unexpected == []
    own, theirs = target.state_dict(), source.state_dict()
    assert sorted(report.loaded) == sorted(k for k in own if not k.startswith("output_block."))
    assert all(torch.equal(own[k], theirs[k]) for k in report.loaded)
    assert _same_state(target.output_block.state_dict(), head_before)


def test_load_pretrained_reports_extra_and_missing_keys(tmp_path: Path) -> None:
    source, target = _tiny_net(0), _tiny_net(1)
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("output_block.")}
    state["extra.weight"] = torch.ones(2)
    state["note"] = 7  # not a tensor: ignored
    torch.save(state, tmp_path / "model.pt")
    report = load_pretrained(target, tmp_path / "model.pt")
    assert report.unexpected == ["extra.weight"]
    assert sorted(report.missing) == ["output_block.conv.conv.bias", "output_block.conv.conv.weight"]
    assert torch.equal(target.state_dict()["input_block.conv1.conv.weight"], state["input_block.conv1.conv.weight"])


def test_load_pretrained_with_nothing_matching(tmp_path: Path) -> None:
    torch.save(torch.nn.Linear(3, 2).state_dict(), tmp_path / "linear.pt")
    target = _tiny_net(1)
    before = _clone_state(target)
    with pytest.raises(InputError) as err:
        load_pretrained(target, tmp_path / "linear.pt")
    assert str(tmp_path / "linear.pt") in _one_line(err)
    assert _same_state(target.state_dict(), before)


@pytest.mark.parametrize("content", [b"not a checkpoint\nat all\n", b""])
def test_load_pretrained_refuses_a_non_checkpoint(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "notes.pt").write_bytes(content)
    with pytest.raises(InputError) as err:
        load_pretrained(_tiny_net(0), tmp_path / "notes.pt")
    message = _one_line(err)
    assert message.startswith(str(tmp_path / "notes.pt")) and "checkpoint" in message


def test_load_pretrained_refuses_pickled_objects(tmp_path: Path) -> None:
    source, target = _tiny_net(0), _tiny_net(1)
    before = _clone_state(target)
    torch.save({"model": source.state_dict(), "extra": _NotAWeight()}, tmp_path / "unsafe.pt")
    with pytest.raises(InputError, match="cannot be loaded safely") as err:
        load_pretrained(target, tmp_path / "unsafe.pt")
    _one_line(err)
    assert _same_state(target.state_dict(), before)


def test_load_pretrained_refuses_non_dict_and_missing_files(tmp_path: Path) -> None:
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(InputError, match="no state dict"):
        load_pretrained(_tiny_net(0), tmp_path / "list.pt")
    with pytest.raises(InputError, match="no such checkpoint"):
        load_pretrained(_tiny_net(0), tmp_path / "absent.pt")


@pytest.mark.parametrize("path", ["", None])
def test_load_pretrained_without_a_path_does_nothing(path: str | None) -> None:
    network = _tiny_net(0)
    before = _clone_state(network)
    assert load_pretrained(network, path) is None
    assert _same_state(network.state_dict(), before)


# ------------------------------------------------------------------------------------------------ FreezeEncoder


def _split_parameters(network: torch.nn.Module) -> tuple[dict[str, torch.nn.Parameter], dict[str, torch.nn.Parameter]]:
    named = dict(network.named_parameters())
    encoder = {n: p for n, p in named.items() if n.startswith(DYNUNET_ENCODER)}
    decoder = {n: p for n, p in named.items() if not n.startswith(DYNUNET_ENCODER)}
    return encoder, decoder


def test_freeze_encoder_for_the_first_epochs(tmp_path: Path) -> None:
    network = _tiny_net(0)
    encoder, decoder = _split_parameters(network)
    assert encoder and decoder
    assert {n.split(".")[0] for n in decoder} == {"upsamples", "output_block"}
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 1, 8, 8, generator=generator)
    labels = torch.randint(0, 3, (2, 8, 8), generator=generator)
    seen: dict[int, tuple[set[bool], set[bool]]] = {}
    weights: dict[int, dict[str, torch.Tensor]] = {0: _clone_state(network)}

    def step(engine: Engine, batch: Any) -> dict[str, float]:
        seen[engine.state.epoch] = (
            {p.requires_grad for p in encoder.values()},
            {p.requires_grad for p in decoder.values()},
        )
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(network(images), labels)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    trainer = Engine(step)
    FreezeEncoder(network, epochs=2).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: weights.update({e.state.epoch: _clone_state(network)}))
    trainer.run([0], max_epochs=4)
    assert seen == {1: ({False}, {True}), 2: ({False}, {True}), 3: ({True}, {True}), 4: ({True}, {True})}

    def moved(names: dict[str, Any], a: int, b: int) -> bool:
        return any(not torch.equal(weights[a][n], weights[b][n]) for n in names)

    assert not moved(encoder, 0, 2) and moved(decoder, 0, 1) and moved(decoder, 1, 2)
    assert moved(encoder, 2, 3)


def test_freeze_encoder_zero_epochs_does_nothing() -> None:
    network = _tiny_net(0)
    freeze = FreezeEncoder(network, epochs=0, prefixes=("no_such_block",))
    trainer = Engine(lambda engine, batch: None)
    freeze.attach(trainer)
    trainer.run([0], max_epochs=1)
    assert not trainer.has_event_handler(freeze._update, Events.EPOCH_STARTED)
    assert all(p.requires_grad for p in network.parameters())


def test_freeze_encoder_prefixes_matching_nothing() -> None:
    with pytest.raises(ValueError, match="no_such_block"):
        FreezeEncoder(_tiny_net(0), epochs=2, prefixes=("no_such_block",))


def test_freeze_encoder_unwraps_ddp_and_takes_custom_prefixes() -> None:
    network = _tiny_net(0)
    wrapper = torch.nn.Module()
    wrapper.module = network
    freeze = FreezeEncoder(wrapper, epochs=1, prefixes=("input_block",))
    assert {id(p) for p in freeze.encoder} == {id(p) for p in network.input_block.parameters()}


# ------------------------------------------------------------------------------------------------ small helpers


def test_enabled_drops_disabled_handlers() -> None:
    first, second = object(), object()
    assert enabled([first, None, second, None]) == [first, second]
    assert enabled([]) == []
    assert enabled(None) is None


def test_is_rank_zero_without_a_process_group() -> None:
    assert not torch.distributed.is_initialized()
    assert is_rank_zero() is True


def test_run_record_round_trip(tmp_path: Path) -> None:
    network = {"spatial_dims": 2, "in_channels": 5, "out_channels": 3, "filters": [32, 64, 128], "res_block": True}
    inference = {"spatial_dims": 2, "roi_size": [224, 224], "context": 5, "overlap": 0.25}
    path = write_run_record(tmp_path / "run", network, inference, fold=1, dataset_dir=tmp_path / "prep")
    assert path == tmp_path / "run" / RUN_RECORD
    record = read_run_record(tmp_path / "run")
    assert record == {
        "monai_pipeline_version": __version__,
        "network": network,
        "inference": inference,
        "fold": 1,
        "dataset_dir": str(tmp_path / "prep"),
    }
    assert build_network(**{**record["network"], "filters": TINY_FILTERS}).input_block.conv1.conv.weight.shape[1] == 5
    assert os.listdir(tmp_path / "run") == [RUN_RECORD]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1", ("a", 1)),
        ("b=[1,2]", ("b", [1, 2])),
        ("c=true", ("c", True)),
        ("d=text", ("d", "text")),
        ("lr=3e-4", ("lr", 3e-4)),
        ("e=x=y", ("e", "x=y")),
        ("f=", ("f", "")),
    ],
)
def test_parse_override(text: str, expected: tuple[str, Any]) -> None:
    key, value = parse_override(text)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


@pytest.mark.parametrize("text", ["bad", "=1"])
def test_parse_override_rejects_text_without_key_and_value(text: str) -> None:
    with pytest.raises(PipelineError, match="KEY=VALUE") as err:
        parse_override(text)
    _one_line(err)


def test_region_output_picks_one_channel() -> None:
    pred = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0]]])  # liver, tumour
    label = torch.tensor([[[1.0, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]]])
    output = [{"pred": pred, "label": label}, {"pred": pred.flip(-1), "label": label.flip(-1)}]
    preds, labels = region_output(1)(output)
    assert [p.shape for p in preds] == [(1, 2, 2), (1, 2, 2)]
    assert torch.equal(preds[0], pred[1:2]) and torch.equal(labels[1], label.flip(-1)[1:2])
    preds, labels = region_output(0)(output)
    assert torch.equal(preds[1], pred.flip(-1)[0:1]) and torch.equal(labels[0], label[0:1])


@pytest.mark.parametrize(("channel", "dice"), [(0, 2 * 2 / (2 + 3)), (1, 2 * 1 / (1 + 2))])
def test_region_output_gives_the_region_dice(channel: int, dice: float) -> None:
    pred = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 0.0]]]])  # (2, 1, 2, 2)
    label = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]], [[[1.0, 1.0], [0.0, 0.0]]]])
    evaluator = Engine(lambda engine, batch: [{"pred": pred, "label": label}])
    MeanDice(include_background=True, output_transform=region_output(channel)).attach(evaluator, "dice")
    evaluator.run([0])
    assert evaluator.state.metrics["dice"] == pytest.approx(dice)
