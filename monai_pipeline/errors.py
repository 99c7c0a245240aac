"""Errors a user can act on: each prints as one line that names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["PipelineError", "InputError", "Interrupted"]


class PipelineError(Exception):
    """A problem with the user's input or request, reported by the CLI as one line without a traceback."""


class InputError(PipelineError):
    """A bad input file or folder.

    Args:
        path: the file or folder at fault.
        problem: what is wrong with it, as a short phrase.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a line that says what was kept and how to go on; the CLI prints it and exits with 130."""
