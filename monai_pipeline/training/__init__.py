"""Training with the MONAI bundle: the code its configs reference with ``_target_`` and ``$`` expressions."""

from __future__ import annotations

from monai_pipeline.training.augment import RandGridAffined, mirror_transforms
from monai_pipeline.training.checkpoint import BEST_NAME, LAST_NAME, RunCheckpoint, check_resume
from monai_pipeline.training.csv_log import EpochCSVLogger
from monai_pipeline.training.data import copy_preprocessing, fold_files, load_datalist
from monai_pipeline.training.distributed import distributed_device, enabled, init_distributed, is_rank_zero
from monai_pipeline.training.finetune import FreezeEncoder, LoadReport, load_pretrained
from monai_pipeline.training.inferers import SliceStackInferer
from monai_pipeline.training.metrics import region_output
from monai_pipeline.training.network import build_network
from monai_pipeline.training.record import RUN_RECORD, read_run_record, write_run_record
from monai_pipeline.training.time_limit import TimeLimit
from monai_pipeline.training.transforms import LiTSRegionsd, SlicesToChannelsd

__all__ = [
    "BEST_NAME",
    "LAST_NAME",
    "RUN_RECORD",
    "EpochCSVLogger",
    "FreezeEncoder",
    "LiTSRegionsd",
    "LoadReport",
    "RandGridAffined",
    "RunCheckpoint",
    "SliceStackInferer",
    "SlicesToChannelsd",
    "TimeLimit",
    "build_network",
    "check_resume",
    "copy_preprocessing",
    "distributed_device",
    "enabled",
    "fold_files",
    "init_distributed",
    "is_rank_zero",
    "load_datalist",
    "load_pretrained",
    "mirror_transforms",
    "read_run_record",
    "region_output",
    "write_run_record",
]
