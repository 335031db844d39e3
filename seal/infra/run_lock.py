"""An exclusive lock on a run folder, so that two processes never write one run.

The lock is `fcntl.flock` on `<run folder>/.seal-lock`, which also holds the holder's pid, host and start
time for the refusal message. The kernel releases a flock when the last descriptor of its open file goes,
so a process that dies (even by SIGKILL) never leaves a lock behind; the file itself stays and means nothing
on its own.

The descriptor is close-on-exec, so programs the run starts (torchrun, Ray, engine workers) never hold it,
and a child made by `fork` (multiprocessing, DataLoader workers) closes its copy at once, so the lock ends
with the process that took it.
"""

from __future__ import annotations

import errno
import fcntl
import gc
import json
import os
import socket
import time
import warnings
import weakref
from pathlib import Path

LOCK_NAME = ".seal-lock"

_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


class FolderInUse(Exception):
    """Another process (or another RunLock in this one) holds the folder; the message names it."""


class RunLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.released = False
        self._fd: int | None = _acquire(self.path)
        self._finalizer: weakref.finalize | None = None
        if self._fd is None:
            return
        self._finalizer = weakref.finalize(self, os.close, self._fd)  # runs on collection and at exit
        _HELD.add(self)
        _write_holder(self._fd)

    def release(self) -> None:
        self.released = True
        if self._finalizer is not None:
            self._finalizer()  # closing the descriptor releases the lock

    def _forget_in_child(self) -> None:
        # the forked child's copy must not outlive the parent; closing it leaves the parent's lock as it is
        if self._finalizer is not None and self._finalizer.detach() is not None:
            os.close(self._fd)
        self._fd = None


def _acquire(path: Path) -> int | None:
    """A locked descriptor of `path`, or None where the filesystem cannot lock (with a warning)."""
    for attempt in range(2):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        os.set_inheritable(fd, False)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                warnings.warn(f"{path.parent}: the filesystem cannot lock files ({e.strerror}); a second process "
                              f"on this run folder would not be refused")
                return None
            raise
        holder = _read_holder(path)
        if attempt == 0 and holder.get("pid") == os.getpid():
            gc.collect()  # an unreachable RunDir of this process may still hold it until collected
            continue
        raise FolderInUse(_in_use_message(path.parent, holder))
    raise AssertionError("unreachable")


def _in_use_message(folder: Path, holder: dict) -> str:
    pid = holder.get("pid")
    if pid is None:
        return f"run folder {folder} is in use by another process (it has not recorded its pid yet)"
    if pid == os.getpid() and holder.get("host") == socket.gethostname():
        return (f"run folder {folder} is in use by this process (pid {pid}, since {holder.get('started_at')}): "
                f"close() the RunDir that holds it first")
    return (f"run folder {folder} is in use by pid {pid} on {holder.get('host')} (started at "
            f"{holder.get('started_at')}); wait for it to end or stop it: two processes on one run folder "
            f"would mix their records")


def _write_holder(fd: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def _read_holder(path: Path) -> dict:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _forget_all_in_child() -> None:
    for lock in list(_HELD):
        lock._forget_in_child()
    _HELD.clear()


os.register_at_fork(after_in_child=_forget_all_in_child)
