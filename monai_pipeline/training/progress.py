"""What a training run tells its user as it goes: a line per epoch with the time left and the best score so far,
and, before it starts, a warning when a GPU-sized network is about to train on a CPU."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

__all__ = ["TrainingProgress", "warn_if_slow_on_cpu"]

logger = logging.getLogger(__name__)

CPU_SIZED_WORK = 48**3 * 16
"""Patch voxels times first-level filters of ``configs/cpu.json``, the network sized for a CPU."""


def warn_if_slow_on_cpu(device: Any, patch_size: Sequence[int], filters: Sequence[int]) -> bool:
    """Warn (and return True) when training is about to run on the CPU with a network several times the size of
    ``configs/cpu.json``'s, whose every step takes tens of seconds there."""
    if torch.device(device).type != "cpu":
        return False
    work = math.prod(int(side) for side in patch_size) * int(filters[0])
    if work <= 4 * CPU_SIZED_WORK:
        return False
    logger.warning(
        "training on the CPU with a network sized for GPUs (patch %s, %d first-level filters): a step can take "
        "about a minute; on a CPU add --config cpu (a 48^3 patch and a smaller network)",
        "x".join(str(side) for side in patch_size),
        int(filters[0]),
    )
    return True


class TrainingProgress:
    """Log after every epoch: ``epoch x of y``, the time left (by the epochs left, or the time budget when that
    ends first) and the best validation score so far; after the first step, how long a step takes.

    The best score is the trainer state's ``best_metric`` and ``best_metric_epoch``, which
    :class:`~monai_pipeline.training.checkpoint.RunCheckpoint` keeps (also across a resume).

    Args:
        max_minutes: the run's time budget; 0 for none.
    """

    def __init__(self, max_minutes: float = 0.0) -> None:
        self.budget = float(max_minutes) * 60.0
        self.start, self.epoch_start, self.first_epoch = 0.0, 0.0, 0
        self.durations: list[float] = []

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer."""
        trainer.add_event_handler(Events.STARTED, self._start)
        trainer.add_event_handler(Events.EPOCH_STARTED, self._epoch_start)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._first_step)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._report)

    def _start(self, engine: Engine) -> None:
        self.start, self.durations, self.first_epoch = time.perf_counter(), [], engine.state.epoch + 1

    def _epoch_start(self, engine: Engine) -> None:
        self.epoch_start = time.perf_counter()

    def _first_step(self, engine: Engine) -> None:
        if engine.state.epoch == self.first_epoch and engine.state.iteration == (
            (self.first_epoch - 1) * (engine.state.epoch_length or 0) + 1
        ):
            step = time.perf_counter() - self.epoch_start
            logger.info(
                "first step: %.1f s, so an epoch of %d steps takes about %s",
                step,
                engine.state.epoch_length or 0,
                _duration(step * (engine.state.epoch_length or 0)),
            )

    def _report(self, engine: Engine) -> None:
        now = time.perf_counter()
        self.durations.append(now - self.epoch_start)
        per_epoch = sum(self.durations) / len(self.durations)
        left = per_epoch * max(0, (engine.state.max_epochs or 0) - engine.state.epoch)
        budget_ends = bool(self.budget) and self.budget - (now - self.start) < left
        if budget_ends:
            left = max(0.0, self.budget - (now - self.start))
        best = ""
        best_epoch = getattr(engine.state, "best_metric_epoch", 0)
        if isinstance(best_epoch, int) and best_epoch > 0:
            best = f"; best mean Dice {engine.state.best_metric:.4f} (epoch {best_epoch})"
        logger.info(
            "epoch %d of %d: %s per epoch, about %s left%s%s",
            engine.state.epoch,
            engine.state.max_epochs,
            _duration(per_epoch),
            _duration(left),
            " (the time budget ends first)" if budget_ends else "",
            best,
        )


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
