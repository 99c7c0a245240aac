"""Fault injection for tests: a small or read-only file system, and writers that run out of space after N bytes."""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=256k`` or ``ro``) on ``folder``; skips the test where mounting
    needs privileges the test does not have."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


@contextmanager
def read_only_folder(folder: Path) -> Iterator[str]:
    """Make ``folder`` unwritable: a read-only mount as root (which file permissions do not stop), else a folder
    without write permission. Yields the reason the message must give."""
    if os.geteuid() == 0:
        with mounted_tmpfs(folder, "ro,size=64k"):
            yield "read-only file system"
        return
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    try:
        yield "permission denied"
    finally:
        folder.chmod(0o755)


class _FullDisk(io.RawIOBase):
    """A file that accepts ``room`` bytes and then fails as a full disk does."""

    def __init__(self, path: Path, room: list[int]) -> None:
        self._file = open(path, "wb")  # noqa: SIM115 - closed with this object
        self._room = room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self._room[0]:
            self._file.write(data[: self._room[0]])
            self._room[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room[0] -= len(data)
        return self._file.write(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def disk_full_after(monkeypatch: pytest.MonkeyPatch, room: int) -> None:
    """From now on, files opened for writing through ``pathlib.Path.open`` share ``room`` bytes; the write that
    exceeds them raises ``ENOSPC`` (after writing what fits, as a real full disk does)."""
    left = [room]
    real_open = Path.open

    def open_(self, mode="r", buffering=-1, encoding=None, errors=None, newline=None):
        if "w" not in mode and "a" not in mode:
            return real_open(self, mode, buffering, encoding, errors, newline)
        raw = io.BufferedWriter(_FullDisk(self, left))
        return raw if "b" in mode else io.TextIOWrapper(raw, encoding=encoding or "utf-8", newline=newline)

    monkeypatch.setattr(Path, "open", open_)
