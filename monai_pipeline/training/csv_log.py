"""A CSV of the training curve: one row per epoch with loss, learning rate and the validation metrics."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_pipeline.training.distributed import is_rank_zero

__all__ = ["EpochCSVLogger"]


class EpochCSVLogger:
    """Append a row per epoch to ``<output_dir>/training_log.csv``: epoch, mean training loss, learning rate, and
    the evaluator's metrics of that epoch (empty where the epoch had no validation).

    Args:
        output_dir: the run folder.
        optimizer: whose first parameter group's learning rate is logged.
        evaluator: the validation engine whose metrics are logged.
        loss_key: key of the loss in the trainer's output.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        optimizer: torch.optim.Optimizer,
        evaluator: Engine | None = None,
        loss_key: str = "loss",
    ) -> None:
        self.path = Path(output_dir) / "training_log.csv"
        self.optimizer, self.evaluator, self.loss_key = optimizer, evaluator, loss_key
        self._losses: list[float] = []
        self._metrics: dict[str, float] = {}

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer (and the evaluator)."""
        trainer.add_event_handler(Events.EPOCH_STARTED, self._start_epoch)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._collect_loss)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._collect_metrics)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._write_row)

    def _start_epoch(self, engine: Engine) -> None:
        self._losses, self._metrics = [], {}

    def _collect_loss(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            if isinstance(item, dict) and self.loss_key in item:
                self._losses.append(float(item[self.loss_key]))
                break

    def _collect_metrics(self, evaluator: Engine) -> None:
        self._metrics = {name: _scalar(value) for name, value in evaluator.state.metrics.items()}

    def _write_row(self, engine: Engine) -> None:
        if not is_rank_zero():
            return
        row: dict[str, Any] = {
            "epoch": engine.state.epoch,
            "train_loss": sum(self._losses) / len(self._losses) if self._losses else math.nan,
            "learning_rate": self.optimizer.param_groups[0]["lr"],
            **self._metrics,
        }
        fields = list(row)
        existing = self.path.is_file() and self.path.stat().st_size > 0
        if existing:
            with self.path.open(newline="") as stream:
                header = next(csv.reader(stream), [])
            fields = header + [name for name in fields if name not in header]
            if fields != header:
                with self.path.open(newline="") as stream:
                    rows = list(csv.DictReader(stream))
                self._rewrite(fields, rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields, restval="")
            if not existing:
                writer.writeheader()
            writer.writerow(row)

    def _rewrite(self, fields: list[str], rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields, restval="")
            writer.writeheader()
            writer.writerows(rows)


def _scalar(value: Any) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.float().mean())
    return float(value)
