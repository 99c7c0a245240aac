"""A Ctrl-C (or any error) leaves the training engines without the reports Ignite and MONAI log on the way out: the
caller says once what happened (the CLI in one line, what was kept included; ``--debug`` shows the traceback)."""

from __future__ import annotations

import logging
import os
import sys

from ignite.engine import Engine, Events

from monai_pipeline.errors import Interrupted

__all__ = ["QuietExit", "run_training"]


def run_training(trainer: Engine, output_dir: str | os.PathLike[str]) -> None:
    """Run the trainer; a Ctrl-C becomes :class:`~monai_pipeline.errors.Interrupted`, saying what ``output_dir``
    kept. (The bundle runs this inside a ``$`` expression, which Python evaluates from text: a plain
    ``KeyboardInterrupt`` passing through such an evaluation makes the interpreter end by SIGINT whatever its
    caller does, so the CLI could not exit with its own code.)"""
    from monai_pipeline.training.checkpoint import kept_state

    try:
        trainer.run()
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {kept_state(output_dir)}") from None


class _NoInterruptReports(logging.Filter):
    """Drops the error lines an engine logs for a Ctrl-C ("Engine run is terminating due to exception: ")."""

    def filter(self, record: logging.LogRecord) -> bool:
        kind = record.exc_info[0] if record.exc_info else sys.exc_info()[0]
        return not (record.levelno >= logging.ERROR and kind is not None and issubclass(kind, KeyboardInterrupt))


class QuietExit:
    """Pass an engine's exception straight to its caller. Listed first among an engine's handlers, it runs before
    MONAI's ``StatsHandler``, which would log the whole traceback first (Ignite runs the ``EXCEPTION_RAISED``
    handlers in order, and the first that raises ends them); a Ctrl-C also loses Ignite's error line."""

    def attach(self, engine: Engine) -> None:
        """Register with an engine (the trainer, or the evaluator among its ``val_handlers``)."""
        engine.add_event_handler(Events.EXCEPTION_RAISED, self._raise)
        engine.logger.addFilter(_NoInterruptReports())

    @staticmethod
    def _raise(engine: Engine, error: BaseException) -> None:
        raise error
