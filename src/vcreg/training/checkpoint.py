"""Atomic, safe checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing else — so
it loads with ``torch.load(weights_only=True)``: a foreign or malicious pickle is refused and no
code in it runs. The config is stored as a JSON-able dict, RNG states as tensors. Writes go to a
temporary file in the same folder, are flushed and fsync-ed, then ``os.replace``-d over the
target: a crash leaves either the old or the new checkpoint, never a truncated one.
"""

from __future__ import annotations

import pickle
import random
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcreg._io import atomic_open, atomic_write_text

__all__ = [
    "CheckpointError",
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
    "atomic_write_text",
]

FORMAT = "vcreg-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "config", "epoch", "step", "model")


class CheckpointError(ValueError):
    """The file is not a usable vcreg checkpoint (corrupted, truncated, foreign, unsafe)."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Atomically save ``state`` (adds ``format``/``version`` markers)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **state}
    with atomic_open(path, "wb") as fh:
        torch.save(payload, fh)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises ``FileNotFoundError`` if missing and :class:`CheckpointError` (a ``ValueError``) if
    the file is corrupted/truncated, contains arbitrary Python objects, or is not a vcreg
    checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupted or truncated, or not a torch "
            f"checkpoint at all"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" (found {found.group(1)})" if found else ""
        raise CheckpointError(
            f"refusing to load {path}: it is not a plain vcreg checkpoint — it contains Python "
            f"objects{what} that only an unsafe pickle load could create; nothing was executed"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupted or truncated "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a vcreg checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this vcreg reads {VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path} is an incomplete vcreg checkpoint (missing {missing})")
    return state


def get_rng_state() -> dict[str, Any]:
    """RNG states of python, numpy, torch (CPU and CUDA) as tensors / plain numbers."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()  # noqa: NPY002
    out: dict[str, Any] = {
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
        "numpy_name": str(np_name),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
        "numpy_pos": int(np_pos),
        "numpy_has_gauss": int(np_has_gauss),
        "numpy_gauss": float(np_gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(
        (
            state["python_version"],
            tuple(int(v) for v in state["python"].tolist()),
            state["python_gauss"],
        )
    )
    np.random.set_state(  # noqa: NPY002
        (
            state["numpy_name"],
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_pos"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
