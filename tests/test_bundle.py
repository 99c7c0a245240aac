"""Tests of the ``liver_tumor_ct`` bundle as users run it: through MONAI's own runner (``python -m monai.bundle
run``), in 3D, 2.5D and under ``torchrun``, resumed, evaluated, fine-tuned, checked by MONAI's bundle tools, and
through ``monai-pipeline train`` with its one-line errors.

One small prepared dataset and one 3D run are shared by the module; tests that change a run work on a copy."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bundle_data import (
    BUNDLE,
    CONFIGS,
    DICE_COLUMNS,
    EVALUATE,
    LOG_COLUMNS,
    MULTI_GPU,
    REPO,
    SHRINK_SETTINGS,
    TRAIN,
    TWO_D,
    check_ok,
    config_arg,
    event_files,
    event_pid,
    in_process,
    load_weights,
    monai_bundle,
    prepare_small_dataset,
    read_log,
    restored_logging,
    run_record,
    scalars,
    shrink_args,
)

from monai_pipeline import cli
from monai_pipeline.training import build_network, fold_files, load_pretrained

ROI_3D, ROI_2D = [32, 32, 32], [32, 32]
ENCODER = ("input_block.", "downsamples.")
"""Encoder tensors of the 3-level network that keep their shape when only the bottleneck's width changes."""


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """``ConfigWorkflow`` applies the bundle's ``logging.conf`` to the root logger; undo that after each test."""
    with restored_logging():
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(RAW, PREP): six synthetic LiTS cases and their preparation at 4 mm in 3 folds."""
    return prepare_small_dataset(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def prep(data) -> Path:
    return data[1]


def _train(run: Path, prep: Path, *configs: str, nproc: int = 1, **changes):
    """``python -m monai.bundle run`` of 2 small epochs (a 32^3 patch unless ``changes`` say otherwise)."""
    args = ["--config_file", config_arg(*configs), "--dataset_dir", str(prep), "--output_dir", str(run)]
    result = monai_bundle("run", [*args, *shrink_args(**{"roi_size": ROI_3D, **changes})], nproc=nproc)
    check_ok(result)
    return result


@pytest.fixture(scope="module")
def run3d(prep, tmp_path_factory) -> Path:
    """A 3D run of 2 epochs through MONAI's runner; tests that change a run copy it first."""
    run = tmp_path_factory.mktemp("run3d") / "RUN"
    _train(run, prep, TRAIN)
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "RUN"))


def _check_log(run: Path, epochs: int, validated: tuple[int, ...] | None = None) -> list[dict[str, float]]:
    """The rows of the run's training log, checked: one an epoch, a loss each, Dice scores in [0, 1] for the
    ``validated`` epochs (default: all) and empty for the others."""
    header, rows = read_log(run)
    assert header == LOG_COLUMNS
    assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
    for row in rows:
        assert math.isfinite(row["train_loss"]) and row["train_loss"] > 0
        if validated is not None and row["epoch"] not in validated:
            assert all(math.isnan(row[column]) for column in DICE_COLUMNS), row
            continue
        for column in DICE_COLUMNS:
            assert math.isfinite(row[column]) and 0.0 <= row[column] <= 1.0, (column, row)
        # the mean Dice averages the two LiTS regions (every validation case here has both)
        assert row["val_mean_dice"] == pytest.approx((row["val_liver_dice"] + row["val_tumour_dice"]) / 2, rel=1e-5)
    return rows


# ------------------------------------------------------------------------------------------------- 3D and 2.5D


@pytest.mark.slow
def test_3d_run_writes_a_complete_run_folder(run3d, prep):
    names = {path.name for path in run3d.iterdir()}
    assert {"model.pt", "checkpoint_last.pt", "run.json", "preprocessing.json", "training_log.csv"} <= names
    assert (run3d / "preprocessing.json").read_bytes() == (prep / "preprocessing.json").read_bytes()

    record = run_record(run3d)
    assert record["network"] == {
        "spatial_dims": 3,
        "in_channels": 1,
        "out_channels": 3,
        "filters": [8, 16, 32],
        "norm": "instance",
        "res_block": True,
    }
    assert record["inference"] == {
        "spatial_dims": 3,
        "roi_size": [32, 32, 32],
        "context": 1,
        "sw_batch_size": 4,
        "overlap": 0.25,
        "mirror_axes": [],
    }
    assert (record["fold"], record["max_epochs"], record["dataset_dir"]) == (0, 2, str(prep))

    best = load_weights(run3d / "model.pt")
    build_network(**record["network"]).load_state_dict(best)  # strict: every tensor, every shape

    rows = _check_log(run3d, 2)
    # 2 iterations an epoch (4 training cases, batch 2): warm-up ends at step 2, the cosine reaches 0 at step 4
    assert [row["learning_rate"] for row in rows] == pytest.approx([3e-4, 0.0], abs=1e-12)

    last = torch.load(run3d / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert set(last) == {
        "model",
        "optimizer",
        "lr_scheduler",
        "trainer",
        "best_metric",
        "best_epoch",
        "stale_rounds",
        "rng",
    }
    assert set(last["rng"]) >= {"python", "numpy", "torch", "transforms"} and last["rng"]["transforms"]
    assert last["trainer"] == {"epoch": 2, "iteration": 4}
    best_row = max(rows, key=lambda row: row["val_mean_dice"])
    assert last["best_epoch"] == best_row["epoch"]
    assert last["best_metric"] == pytest.approx(best_row["val_mean_dice"], rel=1e-6)
    same = all(torch.equal(best[name], last["model"][name]) for name in best)
    assert same == (last["best_epoch"] == 2), "model.pt must hold the weights of the best epoch"


@pytest.mark.slow
def test_3d_run_tensorboard_matches_the_csv_log(run3d):
    files = event_files(run3d)
    assert len(files) == 2 and len({event_pid(path) for path in files}) == 1  # the trainer's and the evaluator's
    _, rows = read_log(run3d)
    found = scalars(run3d)
    for column in DICE_COLUMNS:
        assert [step for step, _ in found[column]] == [1, 2]
        assert [value for _, value in found[column]] == pytest.approx([row[column] for row in rows], rel=1e-6)
    losses = found["train_loss"]
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    per_epoch = [(losses[0][1] + losses[1][1]) / 2, (losses[2][1] + losses[3][1]) / 2]
    assert per_epoch == pytest.approx([row["train_loss"] for row in rows], rel=1e-5)


@pytest.mark.slow
def test_2d_run_records_the_slice_context(prep, tmp_path):
    run = tmp_path / "RUN"
    _train(run, prep, TRAIN, TWO_D, roi_size=ROI_2D, val_interval=2)  # slice by slice, validation is slow
    record = run_record(run)
    assert record["network"]["spatial_dims"] == 2 and record["network"]["in_channels"] == 5
    assert record["inference"] == {
        "spatial_dims": 2,
        "roi_size": [32, 32],
        "context": 5,
        "sw_batch_size": 16,
        "overlap": 0.25,
        "mirror_axes": [],
    }
    weights = load_weights(run / "model.pt")
    build_network(**record["network"]).load_state_dict(weights)
    assert tuple(weights["input_block.conv1.conv.weight"].shape) == (8, 5, 3, 3)  # 5 slices in, 2D kernels
    _check_log(run, 2, validated=(2,))
    assert torch.load(run / "checkpoint_last.pt", weights_only=True)["trainer"]["epoch"] == 2


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.slow
def test_resume_continues_from_the_last_epoch(run3d, prep, tmp_path):
    from monai_pipeline.training.workflow import train

    run = _copy(run3d, tmp_path)
    _, before = read_log(run)
    with in_process("monai_pipeline.training.checkpoint") as captured:
        train(BUNDLE, prep, epochs=3, output_dir=run, overrides={**SHRINK_SETTINGS, "roi_size": ROI_3D})
    assert f"INFO: resumed from {run / 'checkpoint_last.pt'} at epoch 2" in captured.logs
    _, after = read_log(run)
    assert after[:2] == before and [row["epoch"] for row in after] == [1, 2, 3]
    last = torch.load(run / "checkpoint_last.pt", weights_only=True)
    assert last["trainer"] == {"epoch": 3, "iteration": 6}
    assert run_record(run)["max_epochs"] == 3


# ------------------------------------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_two_processes_only_rank_zero_writes(prep, tmp_path):
    run = tmp_path / "RUN"
    result = _train(run, prep, TRAIN, MULTI_GPU, nproc=2)
    # both ranks trained ...
    assert len(re.findall(r"SupervisedTrainer - INFO - Engine run resuming from iteration 0", result.stdout)) == 2
    # ... on half of the cases each (2 of 4: one iteration an epoch) ...
    last = torch.load(run / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    assert last["trainer"] == {"epoch": 2, "iteration": 2}
    # ... and only rank 0 wrote: one process's TensorBoard files, one row an epoch
    files = event_files(run)
    assert len(files) == 2 and len({event_pid(path) for path in files}) == 1, [path.name for path in files]
    assert [step for step, _ in scalars(run)["train_loss"]] == [1, 2]
    _check_log(run, 2)
    weights = load_weights(run / "model.pt")
    assert not any(name.startswith("module.") for name in weights)  # unwrapped from DistributedDataParallel
    build_network(**run_record(run)["network"]).load_state_dict(weights)


# ------------------------------------------------------------------------------------------------- fine-tuning


def _network(filters: list[int]) -> torch.nn.Module:
    return build_network(spatial_dims=3, in_channels=1, out_channels=3, filters=filters)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model.pt", "checkpoint_last.pt"])
def test_pretrained_same_network_loads_every_tensor(run3d, name):
    network = _network([8, 16, 32])
    report = load_pretrained(network, run3d / name)
    source = load_weights(run3d / name)
    assert report.loaded == list(network.state_dict()) and len(report.loaded) == 32
    assert report.skipped_shape == report.missing == report.unexpected == []
    assert all(torch.equal(value, source[key]) for key, value in network.state_dict().items())


@pytest.mark.slow
def test_pretrained_other_bottleneck_skips_exactly_the_mismatched_tensors(run3d):
    network = _network([8, 16, 48])
    source = load_weights(run3d / "model.pt")
    own = network.state_dict()
    mismatched = [name for name in own if own[name].shape != source[name].shape]
    report = load_pretrained(network, run3d / "model.pt")
    assert report.skipped_shape == mismatched
    assert mismatched == [
        "bottleneck.conv1.conv.weight",
        "bottleneck.conv2.conv.weight",
        "bottleneck.conv3.conv.weight",
        "upsamples.0.transp_conv.conv.weight",
        "skip_layers.next_layer.next_layer.conv1.conv.weight",
        "skip_layers.next_layer.next_layer.conv2.conv.weight",
        "skip_layers.next_layer.next_layer.conv3.conv.weight",
        "skip_layers.next_layer.upsample.transp_conv.conv.weight",
    ]
    assert report.loaded == [name for name in own if name not in mismatched]
    assert report.missing == report.unexpected == []


@pytest.fixture(scope="module")
def finetuned(run3d, prep, tmp_path_factory):
    """``monai-pipeline train --quiet`` from the 3D run's weights into a wider bottleneck, encoder frozen for its one
    epoch: (exit code, run folder, captured output and fine-tuning log)."""
    run = tmp_path_factory.mktemp("finetune") / "RUN"
    args = ["train", "--bundle", str(BUNDLE), "--dataset-dir", str(prep), "--output-dir", str(run), "--quiet"]
    args += ["--pretrained", str(run3d / "model.pt"), "--freeze-encoder-epochs", "1", "--epochs", "1"]
    for key, value in {**SHRINK_SETTINGS, "filters": [8, 16, 48], "roi_size": ROI_3D}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    with in_process("monai_pipeline.training.finetune") as captured:
        code = cli.main(args)
    return code, run, captured


@pytest.mark.slow
def test_finetune_reports_skipped_tensors_and_keeps_the_encoder_frozen(finetuned, run3d):
    code, run, captured = finetuned
    assert code == 0, captured.err[-2000:]
    assert f"run folder: {run} (model.pt" in captured.out
    assert re.search(r"^best validation at epoch 1: mean Dice 0\.\d{4} \(liver", captured.out, re.MULTILINE)
    assert f"INFO: pretrained {run3d / 'model.pt'}: loaded 24 of 32 tensors" in captured.logs
    skipped = [line for line in captured.logs if line.startswith("WARNING: pretrained: 8 tensor(s) skipped")]
    assert len(skipped) == 1 and "(shape mismatch): bottleneck.conv1.conv.weight" in skipped[0]

    assert run_record(run)["network"]["filters"] == [8, 16, 48]
    pretrained = load_weights(run3d / "model.pt")
    tuned = load_weights(run / "checkpoint_last.pt")
    assert tuple(tuned["bottleneck.conv1.conv.weight"].shape)[:2] == (48, 16)
    encoder = [name for name in tuned if name.startswith(ENCODER)]
    assert len(encoder) == 6 and all(torch.equal(tuned[name], pretrained[name]) for name in encoder)  # frozen
    decoder = ["upsamples.1.conv_block.conv1.conv.weight", "output_block.conv.conv.weight"]
    assert all(not torch.equal(tuned[name], pretrained[name]) for name in decoder)  # loaded, then trained
    _check_log(run, 1)


@pytest.mark.slow
def test_finetune_quiet_prints_no_info_and_no_progress_bars(finetuned):
    _, _, captured = finetuned
    assert " - INFO - " not in captured.out
    assert "Loading dataset" not in captured.err


# ------------------------------------------------------------------------------------------------- evaluate


@pytest.mark.slow
def test_evaluate_config_scores_the_best_model(run3d, prep, tmp_path):
    run = _copy(run3d, tmp_path)
    args = ["--config_file", config_arg(TRAIN, EVALUATE), "--dataset_dir", str(prep), "--output_dir", str(run)]
    check_ok(monai_bundle("run", [*args, *shrink_args(roi_size=ROI_3D)]))
    _, rows = read_log(run3d)
    best = max(rows, key=lambda row: row["val_mean_dice"])

    metrics = dict(line.split(",") for line in (run / "eval" / "metrics.csv").read_text().splitlines())
    assert set(metrics) == set(DICE_COLUMNS)
    for column in DICE_COLUMNS:
        assert 0.0 <= float(metrics[column]) <= 1.0
        assert float(metrics[column]) == pytest.approx(best[column], abs=1e-5)  # the same score as in training

    lines = (run / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()
    assert lines[0] == "filename,class0,class1,mean"
    per_case = [line.split(",") for line in lines[1:]]
    assert [case[0] for case in per_case] == [entry["image"] for entry in fold_files(prep, 0, "val")]
    for _, liver, tumour, mean in per_case:
        assert 0.0 <= float(liver) <= 1.0 and 0.0 <= float(tumour) <= 1.0
        assert float(mean) == pytest.approx((float(liver) + float(tumour)) / 2, rel=1e-5)
    assert sum(float(case[1]) for case in per_case) / len(per_case) == pytest.approx(best["val_liver_dice"], abs=1e-5)
    for name in ("val_liver_dice", "val_tumour_dice"):
        assert (run / "eval" / f"{name}_raw.csv").is_file() and (run / "eval" / f"{name}_summary.csv").is_file()


# ------------------------------------------------------------------------------------------------- bundle checks


@pytest.mark.parametrize("configs", [["train.json"], ["train.json", "2d.json"]], ids=["3d", "2d"])
def test_bundle_train_properties(configs, prep, tmp_path):
    from monai.bundle import ConfigWorkflow

    files = [str(CONFIGS / name) for name in configs]
    workflow = ConfigWorkflow(config_file=files, workflow_type="train", dataset_dir=str(prep), output_dir=str(tmp_path))
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.max_epochs == 300 and workflow.bundle_root == "bundles/liver_tumor_ct"
    assert run_record(tmp_path)["inference"]["spatial_dims"] == (2 if "2d.json" in configs else 3)


def _metadata() -> dict:
    return json.loads((CONFIGS / "metadata.json").read_text())


@pytest.mark.slow
def test_verify_net_in_out_3d():
    args = ["network_def", "--meta_file", str(CONFIGS / "metadata.json"), "--config_file", TRAIN]
    result = monai_bundle("verify_net_in_out", [*args, "--filters", "[8,16,32]"])
    check_ok(result)
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_verify_net_in_out_2d(tmp_path):
    """metadata.json describes the 3D network's input; the 2.5D network is checked against the same description
    with its own input (5 neighbouring slices as channels, a 2D patch) and the same 3 output channels."""
    meta = _metadata()
    fmt = meta["network_data_format"]
    fmt["inputs"]["image"].update(num_channels=5, spatial_shape=[32, 32])
    fmt["inputs"]["image"]["channel_def"] = {str(i): f"slice {i - 2:+d}" for i in range(5)}
    fmt["outputs"]["pred"]["spatial_shape"] = [32, 32]
    meta_file = tmp_path / "metadata_2d.json"
    meta_file.write_text(json.dumps(meta))
    args = ["network_def", "--meta_file", str(meta_file), "--config_file", config_arg(TRAIN, TWO_D)]
    result = monai_bundle("verify_net_in_out", [*args, "--filters", "[8,16,32]", "--roi_size", "[32,32]"])
    check_ok(result)
    assert "data shape of network is verified with no error" in result.stdout + result.stderr


def test_metadata_has_the_model_zoo_keys():
    meta = _metadata()
    for key in ("version", "changelog", "monai_version", "pytorch_version", "numpy_version", "task", "description"):
        assert isinstance(meta[key], str | dict) and meta[key], key
    for key in ("authors", "copyright"):
        assert isinstance(meta[key], str) and meta[key].strip(), key
    assert meta["version"] in meta["changelog"]
    for key in ("version", "monai_version", "pytorch_version", "numpy_version"):
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", meta[key]), (key, meta[key])
    image = meta["network_data_format"]["inputs"]["image"]
    assert (image["format"], image["num_channels"]) == ("hounsfield", 1)
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 3
    assert pred["channel_def"] == {"0": "background", "1": "liver", "2": "tumour"}


def test_metadata_matches_the_3d_config():
    from monai.bundle import ConfigParser

    meta, parser = _metadata(), ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    image, pred = meta["network_data_format"]["inputs"]["image"], meta["network_data_format"]["outputs"]["pred"]
    assert image["num_channels"] == parser.get_parsed_content("in_channels")
    assert pred["num_channels"] == parser["network_args"]["out_channels"]
    assert image["spatial_shape"] == pred["spatial_shape"] == parser["roi_size"]


def _flat_keys(node, prefix: str = "") -> list[tuple[str, object]]:
    """Every (id, value) of a config, ids joined with ``#`` as MONAI does."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    found = []
    for key, value in items:
        ident = f"{prefix}#{key}" if prefix else str(key)
        found.append((ident, value))
        found.extend(_flat_keys(value, ident))
    return found


CONFIG_NAMES = ["train.json", "2d.json", "multi_gpu_train.json", "evaluate.json"]


def _config(name: str) -> dict:
    return json.loads((CONFIGS / name).read_text())


def test_network_is_defined_once():
    assert {"network_def", "network_args"} <= set(_config("train.json"))
    for name in CONFIG_NAMES[1:]:
        for ident, value in _flat_keys(_config(name)):
            assert not ident.startswith(("network_def", "network_args")), (name, ident)
            assert not (isinstance(value, str) and re.search(r"DynUNet|build_network", value)), (name, ident, value)
    # the multi-GPU config wraps the one definition
    assert _config("multi_gpu_train.json")["network"]["module"] == "$@network_def.to(@device)"


def test_roi_size_is_set_only_in_train_and_2d():
    for name in CONFIG_NAMES:
        top = _config(name)
        assert ("roi_size" in top) == (name in ("train.json", "2d.json")), name
        # everywhere else a patch size is a reference to the one key
        for ident, value in _flat_keys(top):
            leaf = ident.rsplit("#", 1)[-1]
            if "#" in ident and leaf in ("roi_size", "spatial_size", "filters", "spatial_dims", "context"):
                assert isinstance(value, str) and value.startswith("@"), (name, ident, value)


@pytest.mark.parametrize(
    ("name", "new"),
    [
        ("2d.json", set()),
        ("evaluate.json", set()),
        (
            "multi_gpu_train.json",
            {
                "train#sampler",
                "train#dataloader#sampler",
                "validate#sampler",
                "validate#dataloader#sampler",
                "finalize",
            },
        ),
    ],
)
def test_overlay_configs_override_existing_keys(name, new):
    """An overlay holds only the keys it overrides: a misspelt id would silently add a key nobody reads."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    added = {key for key in _config(name) if key not in parser}
    assert added == new
    for key in added:
        parent = key.rpartition("#")[0]
        assert not parent or parent in parser, key


# ------------------------------------------------------------------------------------------------- CLI errors


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _error_case(case: str, data: tuple[Path, Path], tmp_path: Path) -> tuple[list[str], list[str]]:
    """Arguments of a failing ``train`` and the phrases its error line must hold."""
    raw, prep = data
    if case == "missing dataset":
        missing = tmp_path / "nowhere"
        return ["--dataset-dir", str(missing)], [str(missing), "no such dataset folder", "monai-pipeline prepare"]
    if case == "raw folder":
        return ["--dataset-dir", str(raw)], [
            str(raw / "datalist.json"),
            "not a prepared dataset",
            "monai-pipeline prepare",
        ]
    if case == "fold 9":
        return ["--dataset-dir", str(prep), "--fold", "9"], ["fold 9 does not exist", "(folds: [0, 1, 2])"]
    if case == "unknown key":
        return ["--dataset-dir", str(prep), "--set", "nokey=1"], ["unknown config key 'nokey'", "train.json"]
    text = tmp_path / "weights.txt"
    text.write_text("not weights\n")
    return ["--dataset-dir", str(prep), "--pretrained", str(text)], [str(text), "not a checkpoint of plain weights"]


ERROR_CASES = ["missing dataset", "raw folder", "fold 9", "unknown key", "pretrained text file"]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_train_cli_errors_are_one_line(case, data, tmp_path, capsys):
    args, phrases = _error_case(case, data, tmp_path)
    code = cli.main(["train", "--bundle", str(BUNDLE), "--output-dir", str(tmp_path / "RUN"), *args])
    captured = capsys.readouterr()
    assert code == 1
    line = _one_error_line(captured.err)
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    assert "Traceback" not in captured.out


@pytest.mark.parametrize(
    "case",
    [
        *ERROR_CASES[:4],
        pytest.param("pretrained text file"),
    ],
)
def test_refused_start_leaves_no_run_folder(case, data, tmp_path):
    args, _ = _error_case(case, data, tmp_path)
    run = tmp_path / "RUN"
    assert cli.main(["train", "--bundle", str(BUNDLE), "--output-dir", str(run), *args]) == 1
    assert not run.exists() or not any(run.iterdir()), sorted(path.name for path in run.iterdir())


def test_train_cli_rejects_dim_4(prep, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--dataset-dir", str(prep), "--dim", "4"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("monai-pipeline train: error: argument --dim: invalid choice: 4")
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def other_network_into_run(run3d, prep, tmp_path_factory):
    """``monai-pipeline train`` into a copy of the 3D run with a wider bottleneck: (exit code, run folder, completed
    process, the run folder's files before, as bytes)."""
    run = Path(shutil.copytree(run3d, tmp_path_factory.mktemp("mismatch") / "RUN"))
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    args = ["train", "--bundle", str(BUNDLE), "--dataset-dir", str(prep), "--output-dir", str(run), "--epochs", "3"]
    for key, value in {**SHRINK_SETTINGS, "filters": [8, 16, 48], "roi_size": ROI_3D}.items():
        args += ["--set", f"{key}={json.dumps(value)}"]
    # a process of its own: what it prints depends on the logging state MONAI's handlers leave in a process
    result = subprocess.run(
        [sys.executable, "-m", "monai_pipeline", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    return result.returncode, run, result, before


@pytest.mark.slow
def test_resume_into_a_run_of_another_network_is_refused(other_network_into_run):
    code, run, captured, before = other_network_into_run
    assert code == 1
    errors = [line for line in captured.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {run / 'checkpoint_last.pt'}: holds another network's weights; use a new --output-dir or delete it"
    ]
    assert "Traceback" not in captured.stderr
    for name in ("model.pt", "checkpoint_last.pt", "training_log.csv", "preprocessing.json"):
        assert (run / name).read_bytes() == before[name], name


@pytest.mark.slow
def test_refused_resume_keeps_the_run_record(other_network_into_run):
    _, run, _, before = other_network_into_run
    assert (run / "run.json").read_bytes() == before["run.json"]


@pytest.mark.slow
def test_refused_resume_prints_no_traceback(other_network_into_run):
    _, _, captured, _ = other_network_into_run
    assert "Traceback" not in captured.stdout
