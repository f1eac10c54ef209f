"""Local on-disk cache for generated arrays (MNIST-1D and its out-of-domain sets).

Location: ``$VCREG_CACHE`` if set, else ``~/.cache/vcreg``. Files are ``.npz`` archives keyed
by a hash of everything that determines their content; they are written to a temporary file
in the same directory and moved into place with ``os.replace`` (atomic: a crash never leaves a
half-written cache file, and concurrent writers produce identical content).
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from vcreg._io import atomic_open, json_digest


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """Directory used for cached arrays (created on demand)."""
    if root is not None:
        path = Path(root).expanduser()
    else:
        path = Path(os.environ.get("VCREG_CACHE", "~/.cache/vcreg")).expanduser()
    return path


def cache_key(spec: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable spec."""
    return json_digest(spec, 16, default=str)


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """Load a cached archive; ``None`` if missing or unreadable (then it is regenerated — an
    unreadable file with a ``RuntimeWarning`` saying so)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    # truncated/corrupted file (an old crash, a full disk, bit rot): zip errors incl. bad CRC-32
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        warnings.warn(
            f"cache file {path} is unreadable ({type(exc).__name__}: {exc}); regenerating it",
            RuntimeWarning,
            stacklevel=3,
        )
        return None


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temp file in the same dir + ``os.replace``)."""
    with atomic_open(path, "wb") as fh:
        np.savez(fh, **arrays)
