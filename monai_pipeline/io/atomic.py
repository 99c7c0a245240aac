"""Whole files or none: temporary names, flush and fsync, rename, and one clear line when writing fails.

Every file the pipeline writes goes through :func:`atomic_path`: the writer (ours, SimpleITK's, nibabel's, torch's)
gets a hidden temporary name in the same folder (``.<stem>.tmp-<8 hex><endings>``); when it returns, the file is
checked to be whole (a ``.gz`` stream is read to its end, since ITK's NIfTI writer reports a full disk only on
stderr), flushed to disk and renamed. Inside :func:`atomic_group` the renames wait until every file of the group is
written, so a case that fails leaves none of its outputs. Failures caused by the file system (no space, read-only,
no permission) become an :class:`~monai_pipeline.errors.OutputError` of one line.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import re
import sys
import tempfile
import uuid
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from monai_pipeline.errors import OutputError

__all__ = [
    "atomic_group",
    "atomic_path",
    "check_writable",
    "discard",
    "native_stderr",
    "remove_stale_temporaries",
    "temporary_name",
    "write_failure",
]

logger = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\.[^.]*\.tmp-[0-9a-f]{8}(\.|$)")
_GROUP: ContextVar[list[tuple[Path, Path]] | None] = ContextVar("atomic_group", default=None)
_LOW_SPACE = 1 << 20
"""A folder with less free space than this (bytes) after a failed write is taken to be full."""
_PHRASES = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
    "File too large": errno.EFBIG,
}


class _Incomplete(OSError):
    """A writer returned without error but left a file that is not whole."""


def temporary_name(path: str | os.PathLike[str]) -> Path:
    """The hidden temporary name a file is written under before it is renamed to ``path`` (same endings)."""
    path = Path(path)
    stem, dot, endings = path.name.lstrip(".").partition(".")
    return path.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{dot}{endings}")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Remove the temporary files (see :func:`temporary_name`) a killed run left in ``folder``; return how many.

    Call it only while holding the folder's lock (:func:`~monai_pipeline.io.lock.folder_lock`), so that no running
    writer owns them.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    stale = [path for path in folder.iterdir() if _TEMPORARY.match(path.name) and path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        logger.info("removed %d unfinished temporary file(s) of an interrupted run from %s", len(stale), folder)
    return len(stale)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary name beside ``path`` (same endings) for a writer; when the block succeeds, check that the
    file is whole, flush it to disk and rename it to ``path`` (inside :func:`atomic_group`, when the group ends).

    On any error the temporary file is removed and ``path`` is left as it was.

    Raises:
        OutputError: the file system refused the file (no space, read-only, no permission, too large).
    """
    path = Path(path)
    _make_folder(path.parent)
    tmp = temporary_name(path)
    group = _GROUP.get()
    staged = False
    try:
        yield tmp
        _check_whole(tmp)
        _fsync(tmp)
        if group is None:
            os.replace(tmp, path)
            _fsync_folder(path.parent)
        else:
            group.append((tmp, path))
            staged = True
    except (OSError, RuntimeError) as err:
        failure = write_failure(path, err)
        if failure is None:
            raise
        raise failure from err
    finally:
        if not staged:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_group() -> Iterator[None]:
    """Write several files as one: the files of every :func:`atomic_path` in the block get their final names only
    when the whole block succeeds; otherwise none of them appears."""
    staged: list[tuple[Path, Path]] = []
    token = _GROUP.set(staged)
    try:
        yield
        _GROUP.reset(token)
        for tmp, path in staged:
            os.replace(tmp, path)
        for folder in {path.parent for _, path in staged}:
            _fsync_folder(folder)
    finally:
        if _GROUP.get() is staged:
            _GROUP.reset(token)
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def discard(paths: Iterable[Path]) -> None:
    """Remove the outputs of a failed case left by an earlier run, so that no file outlives its case's failure;
    a file that cannot be removed is named in a warning."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as err:
            logger.warning("%s: could not remove this output of a failed case: %s", path, err.strerror)


def check_writable(folder: str | os.PathLike[str], *, create: bool = False) -> Path:
    """Check, before any work is done, that files can be written in ``folder`` (or, while it does not exist, in
    its nearest existing parent, where it would be made).

    Args:
        folder: the output folder.
        create: make ``folder`` (with its parents) now.

    Raises:
        OutputError: ``folder`` cannot be made or written (read-only file system, no permission, no space).
    """
    folder = Path(folder)
    if create:
        _make_folder(folder)
    probe = _existing(folder)
    if not probe.is_dir():
        raise OutputError(probe, f"{probe}: exists and is not a folder")
    try:
        handle, name = tempfile.mkstemp(prefix=".write-check-", dir=probe)
        os.close(handle)
        os.unlink(name)
    except OSError as err:
        raise write_failure(folder, err) or OutputError(folder, f"cannot write to {folder} ({err.strerror})") from err
    return folder


def write_failure(path: str | os.PathLike[str], err: BaseException, output: str = "") -> OutputError | None:
    """The one-line error for a write of ``path`` that failed with ``err`` (and printed ``output``), when the file
    system is the cause; ``None`` when it is not (the error is then not about writing)."""
    path = Path(path)
    text = f"{err}\n{output}"
    number = err.errno if isinstance(err, OSError) and err.errno else None
    number = number or next((code for phrase, code in _PHRASES.items() if phrase in text), None)
    number = number or _folder_state(path)
    if number in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if number == errno.ENOSPC else "disk quota exceeded on"
        return OutputError(path, f"{what} {_mount_point(path)} for {path}")
    if number == errno.EROFS:
        return OutputError(path, f"cannot write to {path} (read-only file system)")
    if number in (errno.EACCES, errno.EPERM):
        return OutputError(path, f"cannot write to {path} (permission denied)")
    if number == errno.EFBIG:
        return OutputError(path, f"cannot write {path}: file too large for the file system or the process's limit")
    if isinstance(err, _Incomplete):
        return OutputError(path, f"cannot write {path}: the writer left it incomplete ({err})")
    return None


@contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture what C libraries print to the process's stderr during the block (e.g. niftilib's ``** ERROR: NWAD``
    when a disk is full); the list holds the lines once the block ends."""
    lines: list[str] = []
    sys.stderr.flush()
    try:
        sink = tempfile.TemporaryFile()
    except OSError:  # no room even for the capture: the writer's own error still surfaces
        yield lines
        return
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())
    finally:
        os.close(saved)
        sink.close()


def check_output(lines: list[str]) -> None:
    """Raise when a writer's captured stderr says that it failed to write everything.

    Raises:
        OSError: naming the first error line (the caller turns it into an :class:`OutputError`).
    """
    errors = [line for line in lines if "ERROR" in line or "fail" in line]
    for line in lines:
        if line not in errors:
            logger.debug("writer: %s", line)
    if errors:
        raise _Incomplete(errors[0].strip("* ").strip())


def _check_whole(tmp: Path) -> None:
    """Read a ``.gz`` file to its end: a stream cut short (a full disk that the writer did not report) raises."""
    if not tmp.name.endswith(".gz"):
        return
    try:
        with gzip.open(tmp, "rb") as stream:
            while stream.read(1 << 24):
                continue
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise _Incomplete(f"compressed stream cut short: {err}") from err


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise OutputError(folder, f"{folder}: exists and is not a folder") from err
    except OSError as err:
        raise write_failure(folder, err) or OutputError(folder, f"cannot write to {folder} ({err.strerror})") from err


def _fsync(path: Path) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def _fsync_folder(folder: Path) -> None:
    """Make renames in ``folder`` durable; file systems that cannot sync a folder are left as they are."""
    try:
        _fsync(folder)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _folder_state(path: Path) -> int | None:
    """``EROFS`` or ``ENOSPC`` when the file system of ``path`` is read-only or (nearly) full, else ``None``."""
    try:
        stats = os.statvfs(_existing(path))
    except OSError:
        return None
    if stats.f_flag & os.ST_RDONLY:
        return errno.EROFS
    if stats.f_bavail * stats.f_frsize < _LOW_SPACE:
        return errno.ENOSPC
    return None


def _mount_point(path: Path) -> Path:
    path = _existing(path.resolve())
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path
