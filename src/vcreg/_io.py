"""Atomic file writes shared by checkpoints, caches, reports and the CLI; cache keys.

A file is written to a temporary file in the same folder, flushed and fsync-ed, then
``os.replace``-d over the target and the folder fsync-ed: a crash or Ctrl-C leaves either the old
file or the new one, never a truncated mix, and a completed write survives a power loss.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_write",
    "atomic_write_text",
    "json_digest",
    "remove_orphan_temps",
]

# what mkstemp(prefix=".<name>.", suffix=".tmp") creates: 8 random characters from [a-z0-9_]
_TEMP = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", suffix: str = ".tmp") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path`` for writing; rename it over ``path`` on success.

    ``suffix`` lets writers that pick a format from the file name (e.g. matplotlib) see it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable too (POSIX: a rename is on disk once its folder is fsync-ed)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the data itself is synced
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[IO[Any]], object], mode: str = "wb") -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``."""
    with atomic_open(path, mode) as fh:
        write(fh)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def remove_orphan_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files that :func:`atomic_open` leaves when its process is killed
    mid-write (``.<name>.XXXXXXXX.tmp``); returns what was removed.

    Only call this while holding the folder's lock (``vcreg._lock.FolderLock``): a live
    writer's temp file looks exactly like an orphan.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for entry in folder.iterdir():
        if _TEMP.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def json_digest(obj: Any, length: int, **dumps: Any) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``json.dumps(obj, sort_keys=True,
    **dumps)`` — the one rule behind every cache key (data caches, reproduction units)."""
    blob = json.dumps(obj, sort_keys=True, **dumps).encode()
    return hashlib.sha256(blob).hexdigest()[:length]
