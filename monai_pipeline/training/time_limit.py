"""Stop training after a wall-clock budget, at the end of an epoch (so the last checkpoint is whole), and validate
the last epoch whenever training ends on one that was not validated, so that ``model.pt`` is not many epochs old."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events

__all__ = ["TimeLimit"]

logger = logging.getLogger(__name__)


class TimeLimit:
    """End the run at the first epoch end after ``minutes`` of training; 0 means no limit.

    With a ``validator``, the epoch training ends on (the budget's, or the last of ``max_epochs``) is validated
    when the validation interval skipped it. List it after the ``ValidationHandler`` and before the checkpoint
    handler among the trainer's handlers, so that the checkpoint saved at that epoch knows the final score. In a
    distributed run the ranks agree (the decision is reduced across them), so they all stop at the same epoch.

    Args:
        minutes: the training budget; 0 for none.
        validator: the validation engine (a MONAI evaluator), or ``None`` not to add a final validation.
    """

    def __init__(self, minutes: float = 0.0, validator: Any = None) -> None:
        if minutes < 0:
            raise ValueError(f"minutes must be >= 0, got {minutes}.")
        self.seconds = float(minutes) * 60.0
        self.validator = validator
        self.start = 0.0
        self.validated_epoch = -1
        self.stopped_by_budget = False

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer (and the validator)."""
        trainer.add_event_handler(Events.STARTED, self._start)
        if self.seconds or self.validator is not None:
            trainer.add_event_handler(Events.EPOCH_COMPLETED, self._check)
        if self.validator is not None:
            self.validator.add_event_handler(
                Events.COMPLETED, lambda _: setattr(self, "validated_epoch", trainer.state.epoch)
            )

    def _start(self, engine: Engine) -> None:
        self.start = time.perf_counter()

    def _check(self, engine: Engine) -> None:
        elapsed = time.perf_counter() - self.start
        over = bool(self.seconds) and _any_rank(elapsed >= self.seconds)
        last = over or engine.state.epoch >= (engine.state.max_epochs or 0)
        if last and self.validator is not None and self.validated_epoch != engine.state.epoch:
            logger.info("validating the last epoch (%d) so that the saved model is scored on it", engine.state.epoch)
            self.validator.run(engine.state.epoch)
        if over:
            self.stopped_by_budget = True
            logger.info("time limit: stopping after epoch %d (%.0f s)", engine.state.epoch, elapsed)
            engine.terminate()


def _any_rank(flag: bool) -> bool:
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
