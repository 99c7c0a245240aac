"""Fine-tuning: start from pretrained weights (ours or another MONAI bundle's ``model.pt``), optionally with a frozen
encoder for the first epochs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monai_pipeline.errors import InputError
from monai_pipeline.training.checkpoint import load_weights

__all__ = ["LoadReport", "load_pretrained", "FreezeEncoder", "DYNUNET_ENCODER"]

DYNUNET_ENCODER: tuple[str, ...] = ("input_block", "downsamples", "bottleneck")
"""Parameter-name prefixes of MONAI DynUNet's encoder."""

logger = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """Which weights of a checkpoint went into the network."""

    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def load_pretrained(network: torch.nn.Module, path: str | os.PathLike[str] | None) -> LoadReport | None:
    """Load the weights of ``path`` whose names and shapes match ``network``; report and log the others.

    Accepts a plain state dict (a bundle's ``model.pt``), a dict with a ``"model"`` entry (our
    ``checkpoint_last.pt``), and names prefixed ``module.`` (saved from DistributedDataParallel). Loading uses
    ``torch.load(..., weights_only=True)``. Does nothing when ``path`` is empty.

    Raises:
        InputError: the file is missing, not a checkpoint, or no weight in it fits the network.
    """
    if not path:
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint")
    state = load_weights(path)
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise InputError(path, "holds no state dict of weights")
    state = {_strip(name): value for name, value in state.items() if isinstance(value, torch.Tensor)}
    module = getattr(network, "module", network)
    own = module.state_dict()
    report = LoadReport()
    usable = {}
    for name, value in state.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != value.shape:
            report.skipped_shape.append(name)
        else:
            usable[name] = value
            report.loaded.append(name)
    report.missing = [name for name in own if name not in state]
    if not usable:
        raise InputError(path, f"no weight fits this network ({len(state)} in the file): another architecture?")
    module.load_state_dict(usable, strict=False)
    logger.info("pretrained %s: loaded %d of %d tensors", path, len(report.loaded), len(own))
    for kind, names in (("shape mismatch", report.skipped_shape), ("not in file", report.missing)):
        if names:
            logger.warning("pretrained: %d tensor(s) skipped (%s): %s", len(names), kind, ", ".join(names))
    return report


def _strip(name: str) -> str:
    return name[len("module.") :] if name.startswith("module.") else name


class FreezeEncoder:
    """Keep the encoder's weights fixed for the first ``epochs`` epochs of fine-tuning, then train everything.

    Args:
        network: the network (or its DistributedDataParallel wrapper).
        epochs: epochs to keep the encoder frozen; 0 does nothing.
        prefixes: parameter-name prefixes that make up the encoder (default: DynUNet's).
    """

    def __init__(self, network: torch.nn.Module, epochs: int = 0, prefixes: Sequence[str] = DYNUNET_ENCODER) -> None:
        self.module = getattr(network, "module", network)
        self.epochs, self.prefixes = int(epochs), tuple(prefixes)
        encoder = [p for name, p in self.module.named_parameters() if name.startswith(self.prefixes)]
        if self.epochs and not encoder:
            raise ValueError(f"no parameter of the network starts with {self.prefixes}.")
        self.encoder = encoder
        self.frozen: bool | None = None

    def attach(self, trainer: Engine) -> None:
        """Register with the trainer."""
        if self.epochs:
            trainer.add_event_handler(Events.EPOCH_STARTED, self._update)

    def _update(self, engine: Engine) -> None:
        frozen = engine.state.epoch <= self.epochs
        if frozen != self.frozen:
            if frozen:
                logger.info(
                    "encoder frozen for epochs %d to %d: only the decoder trains", engine.state.epoch, self.epochs
                )
            else:
                logger.info("encoder unfrozen from epoch %d: every layer trains", engine.state.epoch)
        self.frozen = frozen
        for parameter in self.encoder:
            parameter.requires_grad_(not frozen)
