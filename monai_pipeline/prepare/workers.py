"""Worker processes that never outlive the run that started them."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 1.0


def die_with_parent(parent: int) -> None:
    """Make the calling (worker) process end as soon as ``parent`` ends, even when ``parent`` is killed with
    ``kill -9``: on Linux the kernel sends it SIGKILL (``PR_SET_PDEATHSIG``); everywhere a watchdog thread ends it
    when it is re-parented. Call it first thing in a worker, with the parent's pid taken before the worker started.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    adopted_by = os.getppid()
    if adopted_by != parent and not _alive(parent):  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch, args=(adopted_by,), name="parent-watchdog", daemon=True).start()


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(_POLL_SECONDS)
    os._exit(1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
