"""Errors a user can act on: each prints as one line that names the file and the problem."""

from __future__ import annotations

import os

__all__ = ["PipelineError", "InputError", "OutputError"]


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


class OutputError(PipelineError):
    """A file or folder that cannot be written (no space left, a read-only file system, no permission).

    Args:
        path: the file or folder that could not be written.
        message: the whole line shown to the user; it names ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(message)
