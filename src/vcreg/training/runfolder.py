"""The run folder's rules: what may be written where, by whom.

* One writer: :func:`open_run_folder` takes the folder's exclusive lock (:mod:`vcreg._lock`)
  for the whole run, so a second ``train`` on the same folder fails at once.
* Nothing the user did not ask for is overwritten: a fresh run needs an empty or new folder, or
  one that vcreg itself created (it holds the lock file) and that holds nothing but run files;
  an existing checkpoint needs ``resume``.
* Leftovers of a killed write (``.checkpoint.pt.XXXXXXXX.tmp`` …) are removed once the lock is
  held, and an ``eval.json`` that no longer describes the checkpoint is renamed
  ``eval.epoch<N>.json`` (``N`` = the epoch it evaluated) instead of being left to mislead.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcreg._io import remove_orphan_temps
from vcreg._lock import LOCK_NAME, FolderLock
from vcreg.training.checkpoint import load_for_resume, previous_path

__all__ = [
    "CHECKPOINT",
    "EVAL",
    "check_eval_target",
    "eval_provenance",
    "open_run_folder",
    "resume_state",
    "retire_stale_eval",
]

CHECKPOINT = "checkpoint.pt"
EVAL = "eval.json"
_RUN_FILES = {
    "config.yaml",
    "metrics.jsonl",
    "run.json",
    "tensorboard",
    EVAL,
    CHECKPOINT,
    "checkpoint.prev.pt",
    "checkpoint.corrupt.pt",
    LOCK_NAME,
}
_OLD_EVAL = re.compile(r"^eval\.epoch[\w.-]+\.json$")


def _is_run_file(name: str) -> bool:
    return name in _RUN_FILES or bool(_OLD_EVAL.match(name)) or name.endswith(".tmp")


def _check_folder(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    ckpt = out / CHECKPOINT
    if resume:
        if not ckpt.is_file() and not previous_path(ckpt).is_file():
            raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
        return
    if ckpt.exists() or previous_path(ckpt).exists():
        raise FileExistsError(
            f"{out} already holds a run ({CHECKPOINT}); pass resume=True (--resume) to continue "
            f"it or choose another output folder"
        )
    foreign = [n for n in names if not _is_run_file(n)]
    if names and (foreign or LOCK_NAME not in names):
        shown = ", ".join((foreign or names)[:5]) + (" …" if len(foreign or names) > 5 else "")
        raise FileExistsError(
            f"{out} is not empty and is not a vcreg run folder (it holds {shown}); a new run "
            f"writes config.yaml, metrics.jsonl, run.json and checkpoints there and will not "
            f"overwrite files it did not create — choose a new or empty folder"
        )


def open_run_folder(out: Path | None, resume: bool) -> FolderLock | None:
    """Check ``out`` for a fresh run / a resume, take its lock and clean up orphan temp files.

    Returns the held lock (release it when the run ends), or ``None`` when there is nothing to
    lock (``out is None``, or a DDP rank other than 0, which writes nothing).
    """
    if out is None or int(os.environ.get("RANK", "0")) != 0:
        return None
    _check_folder(out, resume)
    lock = FolderLock(out, purpose="vcreg train").acquire()
    try:
        _check_folder(out, resume)  # again under the lock: the folder may have changed
        removed = remove_orphan_temps(out)
    except BaseException:
        lock.release()
        raise
    if removed:
        warnings.warn(
            f"removed {len(removed)} temporary file(s) left in {out} by an interrupted write: "
            + ", ".join(p.name for p in removed),
            RuntimeWarning,
            stacklevel=2,
        )
    return lock


def resume_state(
    out: Path | None,
    config: dict[str, Any],
    use_previous: bool,
    config_diff: Callable[[dict, dict], list[str]],
) -> dict[str, Any]:
    """The checkpoint state to resume ``out`` from (see :func:`load_for_resume`), refusing a
    config that differs from the checkpoint's (``config_diff`` lists the differences)."""
    if out is None:
        raise ValueError("resume=True needs out_dir (the run folder to resume)")
    ckpt = out / CHECKPOINT
    if not ckpt.is_file() and not previous_path(ckpt).is_file():
        raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
    state, _ = load_for_resume(ckpt, use_previous=use_previous)
    diff = config_diff(state["config"], config)
    if diff:
        raise ValueError(
            "cannot resume: the config differs from the checkpoint's:\n  - " + "\n  - ".join(diff)
        )
    return state


def retire_stale_eval(out: Path | None, epoch: int, step: int = 0) -> Path | None:
    """Rename ``out/eval.json`` to ``eval.epoch<N>.json`` unless it evaluated the checkpoint at
    ``(epoch, step)``; returns the new path (``None`` if nothing was renamed)."""
    path = None if out is None else out / EVAL
    if path is None or not path.is_file() or int(os.environ.get("RANK", "0")) != 0:
        return None
    try:
        info = json.loads(path.read_text())
        ck = info.get("checkpoint") or {}
        evaluated = (int(ck.get("epoch", info.get("epochs_trained"))), int(ck.get("step", 0)))
    except (ValueError, TypeError, AttributeError, OSError):
        evaluated = None
    if evaluated == (epoch, step):
        return None
    if evaluated is None:
        tag = "unknown"
    else:
        tag = f"{evaluated[0]}" + (f"-step{evaluated[1]}" if evaluated[1] else "")
    target = out / f"eval.epoch{tag}.json"
    n = 1
    while target.exists():
        target = out / f"eval.epoch{tag}.{n}.json"
        n += 1
    os.replace(path, target)
    warnings.warn(
        f"{path} described an earlier state of the run (epoch {tag}); renamed it to "
        f"{target.name} — run vcreg evaluate again for the current checkpoint",
        RuntimeWarning,
        stacklevel=2,
    )
    return target


def check_eval_target(run_dir: Path, overwrite: bool) -> Path:
    """``run_dir/eval.json``, refusing to replace an existing one unless ``overwrite``
    (checked before any evaluation work)."""
    path = run_dir / EVAL
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (vcreg evaluate --overwrite) to replace it"
        )
    return path


def eval_provenance(ckpt: Path, sha256: str, state: dict[str, Any], epochs: int) -> dict:
    """What an evaluation records about the checkpoint it evaluated; warns if the run is
    incomplete (fewer than ``epochs`` epochs, or a mid-epoch checkpoint)."""
    epoch, step = int(state["epoch"]), int(state["step"])
    complete = epoch >= epochs and step == 0
    if not complete:
        warnings.warn(
            f"{ckpt.parent} is an incomplete run: evaluating its checkpoint at epoch "
            f"{epoch}/{epochs}" + (f", step {step}" if step else ""),
            RuntimeWarning,
            stacklevel=3,
        )
    return {
        "path": str(ckpt.resolve()),
        "sha256": sha256,
        "epoch": epoch,
        "step": step,
        "complete": complete,
    }
