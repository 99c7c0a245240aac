"""Helpers for runs on several processes (``torchrun``): who writes, which handlers each rank keeps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["is_rank_zero", "enabled", "init_distributed", "distributed_device"]


def is_rank_zero() -> bool:
    """True in a single-process run and on rank 0 of a distributed one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def enabled(handlers: Sequence[Any] | None) -> list[Any] | None:
    """The handlers a bundle config instantiated: those switched off with ``_disabled_`` (e.g. the writers on ranks
    other than 0) come through as ``None`` and are dropped."""
    return None if handlers is None else [handler for handler in handlers if handler is not None]


def init_distributed() -> None:
    """Join the ``torchrun`` process group: NCCL on GPUs, gloo on CPUs (one GPU per process when there are GPUs)."""
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.get_rank() % torch.cuda.device_count())


def distributed_device() -> torch.device:
    """This rank's device: its GPU, or the CPU."""
    if torch.cuda.is_available():
        return torch.device(f"cuda:{dist.get_rank() % torch.cuda.device_count()}")
    return torch.device("cpu")
