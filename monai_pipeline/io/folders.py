"""Listing input folders: symbolic-link loops and broken links are skipped with a warning, never fatal."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["folder_entries", "usable"]

logger = logging.getLogger(__name__)


def usable(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without symbolic-link loops and broken links; each one left out is named in a warning."""
    kept = []
    for path in paths:
        try:
            path.stat()
        except OSError as err:
            if err.errno == errno.ELOOP:
                logger.warning("skipped %s: a symbolic link loop", path)
                continue
            if path.is_symlink():
                logger.warning("skipped %s: a broken symbolic link", path)
                continue
            raise
        kept.append(path)
    return kept


def folder_entries(folder: str | os.PathLike[str]) -> list[Path]:
    """The visible entries of ``folder`` (names not starting with a dot), sorted, without links that lead nowhere
    (see :func:`usable`)."""
    return usable(sorted(path for path in Path(folder).iterdir() if not path.name.startswith(".")))
