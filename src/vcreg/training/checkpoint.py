"""Atomic, safe checkpoints.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts — nothing else — so
it loads with ``torch.load(weights_only=True)``: a foreign or malicious pickle is refused and no
code in it runs. The config is stored as a JSON-able dict, RNG states as tensors. Writes go to a
temporary file in the same folder, are flushed and fsync-ed, then ``os.replace``-d over the
target: a crash leaves either the old or the new checkpoint, never a truncated one.

Integrity: every load first checks the zip container torch writes — its directory and the
CRC-32 of every record (the pickled structure and each tensor's bytes) — so flipped or lost
bytes raise :class:`CheckpointError` naming the file and the damaged record instead of loading
silently corrupted weights. Saving keeps the previous checkpoint as ``<name>.prev.pt`` (hard
link, or copy where links are unsupported), updated just before the new file replaces the old:
at every instant ``checkpoint.pt`` is a complete checkpoint, and ``checkpoint.prev.pt`` the one
before it (or the same one).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import pickle
import random
import re
import shutil
import warnings
import zipfile
from collections.abc import Mapping
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
    "read_checkpoint",
    "previous_path",
    "load_model_state",
    "load_for_resume",
    "peek_for_resume",
    "get_rng_state",
    "set_rng_state",
    "atomic_write_text",
]

FORMAT = "vcreg-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "config", "epoch", "step", "model")


class CheckpointError(ValueError):
    """The file is not a usable vcreg checkpoint (corrupted, truncated, foreign, unsafe)."""


def previous_path(path: str | Path) -> Path:
    """Where :func:`save_checkpoint` keeps the checkpoint before ``path``: ``<stem>.prev<suffix>``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Atomically make ``dst`` a hard link to (or, where links are unsupported, a copy of) ``src``."""
    tmp = dst.with_name(f".{dst.name}.linktemp.tmp")  # the orphan-temp pattern of vcreg._io
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:  # no hard links on some network / FAT file systems
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_checkpoint(path: str | Path, state: dict[str, Any], *, keep_previous: bool = True) -> None:
    """Atomically save ``state`` (adds ``format``/``version`` markers).

    With ``keep_previous`` an existing ``path`` becomes :func:`previous_path` first. A failed
    write (disk full, file-size limit) raises ``OSError`` naming the file; ``path`` is then
    unchanged and no temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, **state}, buf)
    try:
        if keep_previous and path.is_file():
            _link_or_copy(path, previous_path(path))
        with atomic_open(path, "wb") as fh:
            fh.write(buf.getbuffer())
    except OSError as exc:
        why = exc.strerror or str(exc)
        if exc.errno == errno.EFBIG:
            why += " (the file-size limit, ulimit -f, is below the checkpoint size)"
        raise OSError(
            exc.errno,
            f"could not write checkpoint {path} ({buf.tell() / 1e6:.1f} MB): {why}; the "
            f"previous checkpoint is unchanged",
        ) from None


def _verify_zip(path: Path, data: bytes) -> None:
    """Check the zip directory and every record's CRC-32 (torch's own loader checks neither)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupted or truncated (zip container: "
            f"{exc})"
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"checkpoint {path} is corrupted: the CRC-32 of record {bad!r} does not match its "
            f"bytes (damaged on disk or in transfer); it was not loaded"
        )


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], str]:
    """:func:`load_checkpoint` plus the SHA-256 (hex) of the exact bytes that were loaded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is corrupted or truncated, or not a torch "
            f"checkpoint at all"
        )
    _verify_zip(path, data)
    state = _torch_load(path, data, map_location)
    _check_structure(path, state)
    return state, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and verify a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises ``FileNotFoundError`` if missing and :class:`CheckpointError` (a ``ValueError``) if
    the file is corrupted (zip directory or a record's CRC-32), truncated, contains arbitrary
    Python objects, is not a vcreg checkpoint, or has entries of the wrong type.
    """
    return read_checkpoint(path, map_location)[0]


def _torch_load(path: Path, data: bytes, map_location) -> Any:
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
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


_TYPES = {"config": Mapping, "model": Mapping, "epoch": int, "step": int}


def _check_structure(path: Path, state: Any) -> None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not a vcreg checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {state.get('version')!r}; this vcreg reads {VERSION}"
        )
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"{path} is an incomplete vcreg checkpoint (missing {missing})")
    wrong = [
        f"{key} is {type(state[key]).__name__}, expected {kind.__name__}"
        for key, kind in _TYPES.items()
        if not isinstance(state[key], kind) or isinstance(state[key], bool)
    ]
    if not wrong:
        wrong = [
            f"model[{k!r}] is {type(v).__name__}, expected a tensor"
            for k, v in state["model"].items()
            if not isinstance(v, torch.Tensor)
        ][:3]
    if wrong:
        raise CheckpointError(f"{path} is not a valid vcreg checkpoint: {'; '.join(wrong)}")


def load_model_state(module: torch.nn.Module, state: Mapping[str, Any], path: str | Path) -> None:
    """``module.load_state_dict(state["model"])``; a mismatch is a :class:`CheckpointError`."""
    try:
        module.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise CheckpointError(
            f"{path}: the saved weights do not fit the model its config builds — "
            + " ".join(lines[1:3] or lines[:1])[:400]
        ) from None


def _previous_instead(path: Path, exc: Exception, use_previous: bool) -> dict[str, Any]:
    """After ``path`` failed with ``exc``: the previous checkpoint's state if it is intact and
    ``use_previous``; otherwise ``exc``, extended with the offer when the previous is intact."""
    prev = previous_path(path)
    try:
        state = load_checkpoint(prev)
    except (CheckpointError, FileNotFoundError):
        raise exc from None
    if not use_previous:
        raise CheckpointError(
            f"{exc}. The previous checkpoint {prev.name} (epoch {state['epoch']}, step "
            f"{state['step']}) is intact: resume from it with --resume --use-previous "
            f"(train(..., resume='previous'))"
        ) from None
    return state


def peek_for_resume(path: str | Path, use_previous: bool = False) -> dict[str, Any]:
    """The state :func:`load_for_resume` would resume from, without changing any file."""
    path = Path(path)
    try:
        return load_checkpoint(path)
    except (CheckpointError, FileNotFoundError) as exc:
        return _previous_instead(path, exc, use_previous)


def load_for_resume(path: str | Path, use_previous: bool = False) -> tuple[dict[str, Any], Path]:
    """The checkpoint to resume from: ``path``, or — if it is unreadable and ``use_previous`` —
    :func:`previous_path` (the unreadable file is kept as ``<stem>.corrupt<suffix>`` and the
    previous one becomes ``path``, so the next save keeps it as the previous again).

    Without ``use_previous`` an unreadable ``path`` raises :class:`CheckpointError` that says
    whether an intact previous checkpoint exists (and which epoch it holds).
    """
    path = Path(path)
    try:
        return load_checkpoint(path), path
    except (CheckpointError, FileNotFoundError) as exc:  # (missing: killed mid-swap below)
        state = _previous_instead(path, exc, use_previous)
    prev = previous_path(path)
    corrupt = path.with_name(f"{path.stem}.corrupt{path.suffix}")
    if path.exists():
        os.replace(path, corrupt)
    _link_or_copy(prev, path)
    warnings.warn(
        f"{path.name} was unreadable (kept as {corrupt.name}); resuming from {prev.name} "
        f"(epoch {state['epoch']}, step {state['step']})",
        RuntimeWarning,
        stacklevel=2,
    )
    return state, prev


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
