"""Stop training after a wall-clock budget, at the end of an epoch (so the last checkpoint is whole)."""

from __future__ import annotations

import logging
import time

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

__all__ = ["TimeLimit"]

logger = logging.getLogger(__name__)


class TimeLimit:
    """End the run at the first epoch end after ``minutes`` of training; 0 means no limit.

    In a distributed run the ranks agree (the decision is reduced across them), so they all stop at the same epoch.
    """

    def __init__(self, minutes: float = 0.0) -> None:
        if minutes < 0:
            raise ValueError(f"minutes must be >= 0, got {minutes}.")
        self.seconds = float(minutes) * 60.0
        self.start = 0.0

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer."""
        if self.seconds:
            trainer.add_event_handler(Events.STARTED, self._start)
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._check)

    def _start(self, engine: Engine) -> None:
        self.start = time.perf_counter()

    def _check(self, engine: Engine) -> None:
        elapsed = time.perf_counter() - self.start
        if _any_rank(elapsed >= self.seconds):
            logger.info("time limit: stopping after epoch %d (%.0f s)", engine.state.epoch, elapsed)
            engine.terminate()


def _any_rank(flag: bool) -> bool:
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
