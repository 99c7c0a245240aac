"""Run the bundle's training from Python: the API behind ``monai-pipeline train``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_pipeline.errors import InputError, Interrupted, PipelineError
from monai_pipeline.training.data import fold_files
from monai_pipeline.training.settings import CHECKED_SETTINGS, check_override, check_settings

__all__ = ["DEFAULT_BUNDLE", "bundle_config_files", "bundle_defaults", "default_bundle", "train"]

DEFAULT_BUNDLE = Path("bundles") / "liver_tumor_ct"


def default_bundle() -> Path:
    """The bundle of this checkout (beside the package), or ``bundles/liver_tumor_ct`` under the working folder."""
    beside = Path(__file__).resolve().parents[2] / DEFAULT_BUNDLE
    return beside if (beside / "configs" / "train.json").is_file() else DEFAULT_BUNDLE


def bundle_defaults(bundle: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings of a bundle's ``train.json`` that hold plain values (numbers, flags, lists of numbers), the
    ones ``--set KEY=VALUE`` changes; empty when the bundle has no readable ``train.json``."""
    try:
        config = json.loads((Path(bundle) / "configs" / "train.json").read_text())
    except (OSError, ValueError):
        return {}
    return {
        key: value
        for key, value in config.items()
        if isinstance(value, (int, float, bool))
        or (isinstance(value, list) and all(isinstance(item, (int, float)) for item in value))
    }


def bundle_config_files(
    bundle: str | os.PathLike[str], dim: int = 3, distributed: bool = False, extra: Sequence[str] = ()
) -> list[Path]:
    """The config files of a training run: ``train.json``, plus ``2d.json`` for 2D, ``multi_gpu_train.json``
    under ``torchrun``, and ``extra`` overlays named by file or stem (e.g. ``"cpu"`` for ``configs/cpu.json``).

    Raises:
        InputError: the bundle or one of its configs is missing.
    """
    if dim not in (2, 3):
        raise PipelineError(f"--dim must be 2 or 3, got {dim}")
    configs = Path(bundle) / "configs"
    files = [configs / "train.json"]
    if dim == 2:
        files.append(configs / "2d.json")
    if distributed:
        files.append(configs / "multi_gpu_train.json")
    for path in files:
        if not path.is_file():
            raise InputError(path, "missing: --bundle must be a bundle folder such as bundles/liver_tumor_ct")
    for name in extra:
        path = configs / (name if name.endswith(".json") else f"{name}.json")
        if not path.is_file():
            available = sorted(p.stem for p in configs.glob("*.json"))
            raise InputError(path, f"no such overlay config; the bundle has: {', '.join(available)}")
        files.append(path)
    return files


def train(
    bundle: str | os.PathLike[str],
    dataset_dir: str | os.PathLike[str],
    *,
    dim: int = 3,
    fold: int = 0,
    epochs: int | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    pretrained: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    configs: Sequence[str] = (),
    quiet: bool = False,
) -> Path:
    """Train the bundle on a prepared dataset and return the run folder.

    The run goes through MONAI's own ``ConfigWorkflow``, exactly as ``python -m monai.bundle run`` would; under
    ``torchrun`` (``WORLD_SIZE`` > 1) the multi-GPU config is added. Re-running into the same ``output_dir``
    resumes from its ``checkpoint_last.pt``.

    Args:
        bundle: the bundle folder (holding ``configs/``).
        dataset_dir: a dataset prepared by ``monai-pipeline prepare``.
        dim: 3 for the 3D network, 2 for the 2.5D network on axial slices.
        fold: the validation fold.
        epochs: maximum epochs (default: the config's).
        output_dir: the run folder (default: ``<bundle>/models``).
        pretrained: weights to start from (fine-tuning).
        overrides: further config values by id, e.g. ``{"roi_size": [64, 64, 64], "learning_rate": 1e-4}``.
        configs: overlay configs of the bundle applied after the others, e.g. ``["cpu"]`` for a small network.
        quiet: keep the current logging (no bundle logging configuration) and show no progress bars.

    Raises:
        PipelineError: a missing dataset or fold, or an override naming no key of the config.
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    bundle = Path(bundle).resolve()
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    files = bundle_config_files(bundle, dim, distributed, configs)
    fold_files(dataset_dir, fold, "train")
    fold_files(dataset_dir, fold, "val")
    run_dir = Path(output_dir).resolve() if output_dir else bundle / "models"
    values: dict[str, Any] = {
        "bundle_root": str(bundle),
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "fold": int(fold),
        "output_dir": str(run_dir),
    }
    if epochs is not None:
        if epochs < 1:
            raise PipelineError(f"--epochs must be at least 1, got {epochs}")
        values["max_epochs"] = int(epochs)
    if pretrained:
        values["pretrained"] = str(Path(pretrained).resolve())
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    for key, value in (overrides or {}).items():
        if key not in parser:
            raise PipelineError(f"unknown config key '{key}': not in {', '.join(f.name for f in files)}")
        current = parser.get(key)
        if isinstance(current, str) and current.startswith("$") and "@" not in current:
            current = parser.get_parsed_content(key)  # a self-contained expression such as amp's: its value's kind
        check_override(key, value, current)
    if quiet:
        values.update(progress=False, print_stats=False)
    values.update(overrides or {})
    _check_resolved(parser, values)
    configs = bundle / "configs"
    if quiet:  # MONAI warns that it skips its logging configuration, which is what quiet asks for
        logging.getLogger("monai.bundle.workflows").setLevel(logging.ERROR)
    workflow = ConfigWorkflow(
        config_file=[str(f) for f in files],
        meta_file=str(configs / "metadata.json"),
        logging_file=False if quiet else str(configs / "logging.conf"),
        workflow_type="train",
        **values,
    )
    try:
        workflow.initialize()
        workflow.run()
    except Interrupted:
        raise
    except KeyboardInterrupt:  # while the datasets load, before training runs
        from monai_pipeline.training.checkpoint import kept_state

        raise Interrupted(f"interrupted: {kept_state(run_dir)}") from None
    workflow.finalize()
    return run_dir


def _check_resolved(parser: Any, values: Mapping[str, Any]) -> None:
    """Check the settings the run will use (the configs with ``values`` applied) before anything is built."""
    for key, value in values.items():
        parser[key] = value
    settings = {}
    for key in CHECKED_SETTINGS:
        if key in parser:
            try:
                settings[key] = parser.get_parsed_content(key)
            except Exception as err:  # noqa: BLE001 - an expression the user wrote; say which and why
                raise PipelineError(f"setting {key}: cannot be evaluated: {err}") from err
    check_settings(settings)


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, lists, true/false), else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise PipelineError(f"--set expects KEY=VALUE, got '{text}'")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value
