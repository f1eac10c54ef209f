"""One writer per folder: an exclusive, non-blocking ``flock`` on ``<folder>/.vcreg.lock``.

The lock is held by an open file descriptor, so the kernel releases it when the owner exits for
any reason (including ``kill -9``): a lock left by a dead process is never "stuck". The lock
file records the owner (``pid``, ``host``, start time, command) while it is held and is emptied
on release; finding a non-empty lock file that we can lock therefore means its last owner died
without releasing it — we take it over and say so. The file itself stays in the folder (deleting
a ``flock``-ed file races with a process that has just opened it) and marks the folder as made
by vcreg. On NFS, Linux maps ``flock`` to POSIX byte-range locks, which work across clients.

Readers (``shared=True``: ``vcreg export`` of a run) take the same lock in shared mode: any
number of readers at once, none while a writer (``train``, ``evaluate``, ``reproduce``) holds
it, and no writer while a reader does — each side is refused at once with a message naming the
other. A reader never creates the folder and records nothing in the lock file; a folder it
cannot create the lock file in (read-only) holds no vcreg writer, so it reads without one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

__all__ = ["LOCK_NAME", "FolderLock", "FolderLockedError"]

LOCK_NAME = ".vcreg.lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the folder's lock."""


def _owner_text(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode("utf-8", "replace").strip()


def _describe(owner: str) -> str:
    if not owner:  # readers record nothing (module docstring)
        return "a reader, e.g. vcreg export"
    try:
        info = json.loads(owner)
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["started"]))
        return f"pid {info['pid']} on host {info['host']}, started {started}"
    except (ValueError, KeyError, TypeError):
        return "an unknown process"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLock:
    """``with FolderLock(folder, purpose="training"):`` — raises :class:`FolderLockedError` at
    once (no waiting) if another process holds it. ``shared=True``: a reader's lock (module
    docstring)."""

    def __init__(
        self, folder: str | os.PathLike, purpose: str = "this command", *, shared: bool = False
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.purpose = purpose
        self.shared = shared
        self._fd: int | None = None
        self.took_over: str | None = None  # description of a dead previous owner, if any

    def _open(self) -> int | None:
        if not self.shared:
            self.folder.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder not found: {self.folder}")
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:  # not ours to write, or a read-only file system
            try:
                return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:  # read-only and never locked: no vcreg writer there
                return None

    def acquire(self) -> FolderLock:
        fd = self._open()
        if fd is None:
            return self
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner_text(fd)
            os.close(fd)
            hint = "" if self.shared else ", or choose another output folder"
            raise FolderLockedError(
                f"{self.folder} is in use by another vcreg process ({_describe(owner)}), so "
                f"{self.purpose} cannot use it now; wait for it to finish or stop it{hint}"
            ) from None
        if self.shared:
            self._fd = fd
            return self
        previous = _owner_text(fd)
        if previous:
            self.took_over = _describe(previous)
            try:
                pid, host = json.loads(previous)["pid"], json.loads(previous)["host"]
                alive = host == socket.gethostname() and _pid_alive(int(pid))
            except (ValueError, KeyError, TypeError):
                alive = False
            note = " (that pid is alive again — a reused pid)" if alive else ""
            warnings.warn(
                f"{self.path}: taking over the lock left by {self.took_over}, which exited "
                f"without releasing it{note}",
                RuntimeWarning,
                stacklevel=2,
            )
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "purpose": self.purpose,
            "argv": sys.argv[:8],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if not self.shared:
                os.ftruncate(self._fd, 0)  # empty = released cleanly
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
