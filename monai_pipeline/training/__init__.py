"""Training with the MONAI bundle: the code its configs reference with ``_target_`` and ``$`` expressions."""

from __future__ import annotations

from monai_pipeline._lazy import lazy_exports

_EXPORTS = {
    "RandGridAffined": "augment",
    "mirror_transforms": "augment",
    "BEST_NAME": "checkpoint",
    "LAST_NAME": "checkpoint",
    "RunCheckpoint": "checkpoint",
    "check_resume": "checkpoint",
    "EpochCSVLogger": "csv_log",
    "copy_preprocessing": "data",
    "fold_files": "data",
    "load_datalist": "data",
    "distributed_device": "distributed",
    "enabled": "distributed",
    "init_distributed": "distributed",
    "is_rank_zero": "distributed",
    "FreezeEncoder": "finetune",
    "LoadReport": "finetune",
    "QuietExit": "interrupt",
    "run_training": "interrupt",
    "load_pretrained": "finetune",
    "SliceStackInferer": "inferers",
    "region_output": "metrics",
    "build_network": "network",
    "RUN_RECORD": "record",
    "read_run_record": "record",
    "write_run_record": "record",
    "TimeLimit": "time_limit",
    "TrainingProgress": "progress",
    "warn_if_slow_on_cpu": "progress",
    "LiTSRegionsd": "transforms",
    "SlicesToChannelsd": "transforms",
}
"""Each public name and the submodule defining it; a submodule (and torch or MONAI behind it) loads on first use."""

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
