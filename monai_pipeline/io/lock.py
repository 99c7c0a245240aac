"""One run per output folder: a lock file that names its holder, released by the system when the holder dies."""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monai_pipeline.errors import PipelineError
from monai_pipeline.io.atomic import remove_stale_temporaries, write_failure

__all__ = ["LOCK_NAME", "folder_lock"]

LOCK_NAME = ".monai-pipeline.lock"
"""The lock file in an output folder; it holds a line naming the run that holds (or last held) it."""


@contextmanager
def folder_lock(folder: str | os.PathLike[str], command: str, *, clean: tuple[str, ...] = ("",)) -> Iterator[Path]:
    """Hold ``folder``'s lock for the block; a second run into the same folder is refused, never interleaved.

    The lock is an advisory ``flock`` on :data:`LOCK_NAME`, so a run killed with ``kill -9`` releases it. Once it
    is held, the temporary files an interrupted run left in ``folder`` (and in its sub-folders ``clean``) are
    removed.

    Args:
        folder: the output folder (it must exist).
        command: what holds the lock, e.g. ``"prepare"``, for the message another run shows.
        clean: sub-folders (relative to ``folder``; ``""`` is the folder itself) to clear of stale temporaries.

    Raises:
        PipelineError: another run holds the lock; the message names it.
        OutputError: the lock file cannot be written.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    handle = _acquire(folder, path)
    try:
        os.ftruncate(handle, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(handle, f"{command} (pid {os.getpid()} on {socket.gethostname()}, since {started})\n".encode(), 0)
        for sub in clean:
            remove_stale_temporaries(folder / sub)
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still locked: a run waiting on the old file notices and retries
        os.close(handle)


def _acquire(folder: Path, path: Path) -> int:
    """Open and lock ``path``; retry when the holder removed it between our open and our lock."""
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise write_failure(folder, err) or err from err
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 500, 0).decode(errors="replace").strip() or "another run"
            os.close(handle)
            raise PipelineError(
                f"{folder}: in use by {holder}; wait for it to finish or choose another folder "
                f"(two runs into one folder would mix their files)"
            ) from None
        if _still_named(path, handle):
            return handle
        os.close(handle)


def _still_named(path: Path, handle: int) -> bool:
    """True when ``path`` still names the file open as ``handle`` (its holder did not remove it meanwhile)."""
    try:
        return os.stat(path).st_ino == os.fstat(handle).st_ino
    except FileNotFoundError:
        return False
