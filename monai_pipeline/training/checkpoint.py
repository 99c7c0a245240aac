"""Checkpoints of a training run: the best model, the last state for resuming, and early stopping, kept together so
that a resumed run continues exactly where it stopped (epoch, optimizer, schedule, best score, patience)."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_pipeline.errors import InputError
from monai_pipeline.io.writer import atomic_path
from monai_pipeline.training.distributed import is_rank_zero
from monai_pipeline.training.rng import capture_rng, restore_rng

__all__ = ["RunCheckpoint", "check_resume", "kept_state", "load_weights", "BEST_NAME", "LAST_NAME"]

BEST_NAME = "model.pt"
"""Weights (a plain state dict) of the network at its best validation score, as the model zoo names them."""
LAST_NAME = "checkpoint_last.pt"
"""Everything needed to resume: network, optimizer, scheduler, trainer state, best score, patience, random state."""

_SCHEDULE_POSITION = ("last_epoch", "_step_count")

logger = logging.getLogger(__name__)


class RunCheckpoint:
    """Save the best model and the last state, resume from the last state, and stop early.

    Attach it to the trainer (as a train handler); it attaches itself to ``evaluator`` to watch ``metric_name``.
    Only rank 0 writes; every rank resumes from the same file and takes the same early-stopping decision, since
    validation metrics are reduced across ranks.

    Args:
        output_dir: the run folder.
        network: the network (or its DistributedDataParallel wrapper).
        optimizer: the optimizer.
        evaluator: the validation engine whose ``metric_name`` decides the best model.
        lr_scheduler: the learning-rate scheduler, saved and restored with the rest.
        metric_name: the validation metric to maximise.
        patience: validation rounds without improvement before training stops; 0 never stops early.
        resume: continue from ``checkpoint_last.pt`` in ``output_dir`` when it exists.
        data_loader: the training data loader, whose transforms' and own random state are saved and restored
            with the global generators (so that a resumed run draws the patches an uninterrupted one would).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        evaluator: Engine | None = None,
        lr_scheduler: Any = None,
        metric_name: str = "val_mean_dice",
        patience: int = 0,
        resume: bool = True,
        data_loader: Any = None,
    ) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}.")
        self.output_dir = Path(output_dir)
        self.network, self.optimizer, self.lr_scheduler = network, optimizer, lr_scheduler
        self.evaluator, self.metric_name = evaluator, metric_name
        self.patience, self.resume = int(patience), bool(resume)
        self.data_loader = data_loader
        self.best_metric, self.best_epoch, self.stale_rounds = -1.0, 0, 0
        self.trainer: Engine | None = None

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer (and the evaluator)."""
        self.trainer = trainer
        trainer.add_event_handler(Events.STARTED, self._load_last)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._save_last)
        trainer.add_event_handler(Events.COMPLETED, self._ensure_best)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self._on_validation)

    @property
    def module(self) -> torch.nn.Module:
        """The bare network, unwrapped from DistributedDataParallel."""
        return getattr(self.network, "module", self.network)

    def state_dict(self) -> dict[str, Any]:
        """The resumable state of the run."""
        state = {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trainer": {"epoch": self.trainer.state.epoch, "iteration": self.trainer.state.iteration},
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "stale_rounds": self.stale_rounds,
            "rng": capture_rng(self.data_loader),
        }
        if self.lr_scheduler is not None:
            state["lr_scheduler"] = self.lr_scheduler.state_dict()
        return state

    def _load_last(self, engine: Engine) -> None:
        path = self.output_dir / LAST_NAME
        if not (self.resume and path.is_file()):
            return
        state = _load_checked(path, self.module)
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.lr_scheduler is not None and "lr_scheduler" in state:
            # the position in the schedule comes from the checkpoint, its shape (length, warm-up) from the current
            # configuration, so that a run resumed with more epochs stretches the schedule instead of ending it
            current = self.lr_scheduler.state_dict()
            current.update({k: v for k, v in state["lr_scheduler"].items() if k in _SCHEDULE_POSITION})
            self.lr_scheduler.load_state_dict(current)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # get_lr() outside step() warns; here it is the closed form we need
                rates = self.lr_scheduler.get_lr()
            for group, rate in zip(self.optimizer.param_groups, rates):
                group["lr"] = rate
            self.lr_scheduler._last_lr = list(rates)
        engine.state.epoch = int(state["trainer"]["epoch"])
        engine.state.iteration = int(state["trainer"]["iteration"])
        self.best_metric, self.best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        self.stale_rounds = int(state["stale_rounds"])
        self._publish_best()
        if "rng" in state:  # absent from checkpoints of older versions
            restore_rng(state["rng"], self.data_loader)
        if engine.state.epoch >= engine.state.max_epochs:
            logger.info("run in %s already finished %d epochs", self.output_dir, engine.state.epoch)
        logger.info("resumed from %s at epoch %d", path, engine.state.epoch)

    def _publish_best(self) -> None:
        """Put the best score so far in the trainer's state (``best_metric``, ``best_metric_epoch``, as MONAI names
        them), where progress reports read it, also after a resume."""
        if self.trainer is not None:
            self.trainer.state.best_metric, self.trainer.state.best_metric_epoch = self.best_metric, self.best_epoch

    def _save_last(self, engine: Engine) -> None:
        if is_rank_zero():
            _save(self.state_dict(), self.output_dir / LAST_NAME)

    def _ensure_best(self, engine: Engine) -> None:
        """A run that ended before its first validation still leaves a ``model.pt``: its last weights."""
        path = self.output_dir / BEST_NAME
        if is_rank_zero() and not path.is_file():
            logger.warning("no validation ran; %s holds the weights of the last epoch", path)
            _save(self.module.state_dict(), path)

    def _on_validation(self, evaluator: Engine) -> None:
        score = float(evaluator.state.metrics[self.metric_name])
        epoch = self.trainer.state.epoch if self.trainer is not None else 0
        if score > self.best_metric:
            self.best_metric, self.best_epoch, self.stale_rounds = score, epoch, 0
            self._publish_best()
            if is_rank_zero():
                _save(self.module.state_dict(), self.output_dir / BEST_NAME)
            logger.info("new best %s %.4f at epoch %d", self.metric_name, score, epoch)
            return
        self.stale_rounds += 1
        if self.patience and self.stale_rounds >= self.patience and self.trainer is not None:
            logger.info(
                "early stop: %s has not improved on %.4f (epoch %d) for %d validation rounds",
                self.metric_name,
                self.best_metric,
                self.best_epoch,
                self.stale_rounds,
            )
            self.trainer.terminate()


def check_resume(output_dir: str | os.PathLike[str], network: torch.nn.Module, resume: bool = True) -> None:
    """Before a run writes anything: when it will resume, check that ``checkpoint_last.pt`` fits ``network``.

    Raises:
        InputError: the checkpoint holds another network's weights, or is not a checkpoint of this pipeline.
    """
    path = Path(output_dir) / LAST_NAME
    if resume and path.is_file():
        _load_checked(path, getattr(network, "module", network))


def kept_state(output_dir: str | os.PathLike[str]) -> str:
    """What a run folder holds to go on from, in a few words: the epoch of ``checkpoint_last.pt`` and of the best
    ``model.pt``, or that no epoch finished yet (what an interrupted run tells its user)."""
    folder = Path(output_dir)
    try:
        state = torch.load(folder / LAST_NAME, map_location="cpu", weights_only=True)
        epoch, best_epoch, best = int(state["trainer"]["epoch"]), int(state["best_epoch"]), float(state["best_metric"])
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, EOFError):
        return f"no epoch had finished, so {folder} holds no checkpoint yet; a re-run starts from the beginning"
    best_text = ""
    if best_epoch and (folder / BEST_NAME).is_file():
        best_text = f" and {BEST_NAME} (best validation, epoch {best_epoch}, mean Dice {best:.4f})"
    return f"kept {LAST_NAME} (epoch {epoch}){best_text} in {folder}; the same command resumes from epoch {epoch + 1}"


def load_weights(path: str | os.PathLike[str], hint: str = "") -> Any:
    """Load a checkpoint with ``torch.load(..., weights_only=True)`` onto the CPU: the one door for weights.

    A file that is not a checkpoint of plain weights (a text file, a pickle of other objects) is refused with one
    line; the safe loader is never turned off.

    Args:
        path: the checkpoint file.
        hint: what the user can do, appended to the message (e.g. "delete it or use a new --output-dir").

    Raises:
        InputError: the file cannot be read, or is not a checkpoint of plain weights.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are no news to the user
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as err:
        raise InputError(path, f"cannot be read ({err.strerror or err})") from err
    except Exception as err:  # noqa: BLE001 - whatever the unpickler says, the file is not plain weights
        reason = next((line for line in str(err).splitlines() if "Unsupported global" in line), type(err).__name__)
        logger.debug("%s: refused by the safe loader: %s", path, reason.strip())
        problem = "not a checkpoint of plain weights (a PyTorch state dict), so it cannot be loaded safely"
        raise InputError(path, f"{problem}; {hint}" if hint else problem) from None


def _load_checked(path: Path, module: torch.nn.Module) -> dict[str, Any]:
    state = load_weights(path, "delete it or use a new --output-dir")
    own = module.state_dict()
    weights = state.get("model") if isinstance(state, dict) else None
    if (
        not isinstance(weights, dict)
        or set(weights) != set(own)
        or any(weights[name].shape != own[name].shape for name in own)
    ):
        raise InputError(path, "holds another network's weights; use a new --output-dir or delete it")
    return state


def _save(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
