"""Publishing a command's result files into an output folder without losing or mixing results.

Rules (issue "nothing lost, nothing silently wrong"): :func:`check_results_folder` runs *before*
the work, so a bad ``--out`` fails at once; :func:`write_results_folder` writes every file of one
result set, then makes them visible together:

* a new folder is written as a hidden sibling and renamed into place (atomic);
* a folder holding earlier results of the same command (any of ``names``) is replaced only with
  ``overwrite=True``, and only when it holds nothing else: the new set is written as a sibling,
  the old folder is renamed aside, the new one renamed into place and the old one deleted — so
  no file of the earlier set (e.g. a ``metrics.json`` the new run does not produce) survives;
* a folder without such results (empty, or the user's own files) receives the files one by one,
  each atomically (:func:`vcreg._io.atomic_write`); nothing in it is replaced or removed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import IO, Any

from vcreg._io import atomic_write

__all__ = ["check_results_folder", "write_results_folder"]

Writer = Callable[[IO[Any]], object]


def check_results_folder(out: Path, names: Collection[str], overwrite: bool) -> None:
    """Raise ``ValueError`` if results named ``names`` cannot be written to ``out``: ``out`` is
    not a folder, or holds earlier results and ``overwrite`` is false, or holds earlier results
    together with other files (which replacing the folder would delete)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder; choose a folder for the results")
    if not out.is_dir():
        return
    present = sorted(p.name for p in out.iterdir())
    earlier = [name for name in present if name in names]
    if not earlier:
        return
    if not overwrite:
        raise ValueError(
            f"{out} already holds results of an earlier run ({', '.join(earlier)}); pass "
            "--overwrite to replace them, or choose another folder"
        )
    others = [name for name in present if name not in names]
    if others:
        raise ValueError(
            f"{out} holds earlier results and other files ({', '.join(others)}); replacing the "
            "results would delete those files, so choose another folder"
        )


def write_results_folder(
    out: Path, files: Mapping[str, Writer], names: Collection[str], overwrite: bool
) -> None:
    """Write ``files`` (file name -> ``write(fh)``, binary) into ``out`` by the module's rules
    (checked again here, :func:`check_results_folder`)."""
    out = Path(out)
    check_results_folder(out, names, overwrite)
    if out.is_dir() and not any(p.name in names for p in out.iterdir()):
        for name, write in files.items():
            atomic_write(out / name, write)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    try:
        for name, write in files.items():
            with open(staging / name, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(staging, 0o777 & ~_umask())
        if not out.exists():
            os.rename(staging, out)
            return
        old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
        os.rename(out, old / out.name)
        os.rename(staging, out)
        shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
