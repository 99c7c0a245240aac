"""Errors a user can act on: each prints as one line that names the file and the problem."""

from __future__ import annotations

import os
import re

__all__ = ["PipelineError", "InputError", "OutputError", "Interrupted", "root_cause", "reason", "case_failure"]


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


_LIBRARY_ERROR = re.compile(r"(ITK ERROR:|sitk::ERROR:|itk::ERROR:)\s*(.*)")
_ADDRESS = re.compile(r"\(0x[0-9a-fA-F]+\)")


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception behind ``err``, following ``raise ... from`` (as MONAI wraps a transform's error)."""
    seen = {id(err)}
    while err.__cause__ is not None and id(err.__cause__) not in seen:
        err = err.__cause__
        seen.add(id(err))
    return err


def reason(err: BaseException) -> str:
    """What went wrong in ``err``, in one line: an ITK or SimpleITK error's ``ITK ERROR:`` line (the first lines only
    name the C++ source), else the first line of its message; ``""`` when it has none."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        found = _LIBRARY_ERROR.search(line)
        if found:
            return f"{found.group(1)} {_ADDRESS.sub('', found.group(2)).strip()}"[:300]
    return lines[0][:300] if lines else ""


def case_failure(err: BaseException, source: str | os.PathLike[str]) -> str:
    """The one line that reports a case that failed with ``err``: an :class:`InputError` or :class:`OutputError` as
    it is (it names its file), another :class:`PipelineError` after ``source``, any other error as
    ``source: Type: root cause``."""
    if isinstance(err, (InputError, OutputError)):
        return str(err).splitlines()[0]
    if isinstance(err, PipelineError):
        return f"{os.fspath(source)}: {str(err).splitlines()[0]}"
    cause = root_cause(err)
    return ": ".join(part for part in (os.fspath(source), type(cause).__name__, reason(cause)) if part)


class OutputError(PipelineError):
    """A file or folder that cannot be written (no space left, a read-only file system, no permission).

    Args:
        path: the file or folder that could not be written.
        message: the whole line shown to the user; it names ``path``.
    """

    def __init__(self, path: str | os.PathLike[str], message: str) -> None:
        self.path = os.fspath(path)
        super().__init__(message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with a line that says what was kept and how to go on; the CLI prints it and exits with 130."""
