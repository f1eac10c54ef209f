"""The run folder: its files, who may write what there, and loading a run back.

A run folder holds ``config.yaml`` (the validated config), ``checkpoint.pt`` and
``checkpoint.prev.pt`` (:mod:`vcreg.training.checkpoint`), ``metrics.jsonl`` (one JSON line per
finished epoch), ``run.json`` (status and final metrics of the last session), the lock file,
optionally ``tensorboard/`` and ``eval.json`` (``vcreg evaluate``). Files are written atomically.

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

import torch
import yaml

from vcreg._io import atomic_write_text, remove_orphan_temps
from vcreg._lock import LOCK_NAME, FolderLock
from vcreg.data import DatasetBundle
from vcreg.models import SSLModel, build_model
from vcreg.training.checkpoint import (
    CheckpointError,
    load_for_resume,
    load_model_state,
    previous_path,
    read_checkpoint,
)
from vcreg.training.config import TrainConfig, saved_config
from vcreg.training.feeding import load_bundle

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EVAL",
    "METRICS",
    "RUN_SUMMARY",
    "check_eval_target",
    "config_diff",
    "eval_provenance",
    "load_run",
    "open_run_folder",
    "require_run_folder",
    "resume_state",
    "retire_stale_eval",
    "warn_config_disagreement",
    "write_config",
    "write_metrics",
    "write_run_summary",
]

CHECKPOINT = "checkpoint.pt"
EVAL = "eval.json"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
RUN_SUMMARY = "run.json"
# config fields that may differ between the original run and its resumption
RESUME_FREE = (
    "device",
    "threads",
    "tensorboard",
    "data.num_workers",
    "data.root",
    "augmentation.on_device",
)
# free-form mappings compared as a whole
_OPAQUE = ("data.options", "encoder.options", "loss.params", "augmentation.params")
_RUN_FILES = {
    CONFIG,
    METRICS,
    RUN_SUMMARY,
    "tensorboard",
    EVAL,
    CHECKPOINT,
    "checkpoint.prev.pt",
    "checkpoint.corrupt.pt",
    LOCK_NAME,
}
# a folder holding one of these was written by `vcreg train`
_RUN_MARKERS = (CHECKPOINT, "checkpoint.prev.pt", CONFIG, RUN_SUMMARY, METRICS)
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
    # a folder with a lock file is vcreg's: try the lock first, so that a run in progress there
    # is reported as such (not as "holds a run", whatever its files are at this instant)
    if not (out / LOCK_NAME).is_file():
        _check_folder(out, resume)
    lock = FolderLock(out, purpose="vcreg train").acquire()
    try:
        _check_folder(out, resume)  # (again) under the lock: the folder may have changed
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
    config_diff: Callable[[dict, dict], list[str]] | None = None,
) -> dict[str, Any]:
    """The checkpoint state to resume ``out`` from (see :func:`load_for_resume`), refusing a
    config that differs from the checkpoint's (``config_diff`` lists the differences)."""
    if out is None:
        raise ValueError("resume=True needs out_dir (the run folder to resume)")
    ckpt = out / CHECKPOINT
    if not ckpt.is_file() and not previous_path(ckpt).is_file():
        raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
    state, _ = load_for_resume(ckpt, use_previous=use_previous)
    state["config"] = saved_config(state["config"], str(ckpt))
    diff = (config_diff or _config_diff)(state["config"], config)
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


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two config dicts, ignoring :data:`RESUME_FREE`."""
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if path in RESUME_FREE:
            continue
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict) and path not in _OPAQUE:
            out.extend(config_diff(va, vb, path + "."))
        elif va != vb:
            out.append(f"{path}: checkpoint has {va!r}, config has {vb!r}")
    return out


_config_diff = config_diff  # the default of resume_state


def warn_config_disagreement(run_dir: Path, cfg: TrainConfig) -> list[str]:
    """Warn (``RuntimeWarning``) when ``run_dir/config.yaml`` differs from ``cfg``, the config
    stored in the checkpoint, naming the differing keys; returns the differences. The checkpoint's
    config is the one used: its weights were trained with it."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return []
    try:
        with warnings.catch_warnings():  # saved_config's notes were given for the checkpoint
            warnings.simplefilter("ignore")
            data = yaml.safe_load(path.read_text())
            other = TrainConfig.from_dict(saved_config(data, str(path))).to_dict()
    except (yaml.YAMLError, OSError, UnicodeDecodeError, TypeError, ValueError) as exc:
        diff = [f"{CONFIG} is not a valid config ({str(exc).splitlines()[0][:120]})"]
        keys = diff
    else:
        diff = config_diff(cfg.to_dict(), other)
        keys = [d.split(":")[0] for d in diff]
    if diff:
        warnings.warn(
            f"{path} disagrees with the config stored in the checkpoint at {', '.join(keys)} "
            f"({'; '.join(diff)[:400]}); using the checkpoint's, which its weights were "
            "trained with",
            RuntimeWarning,
            stacklevel=3,
        )
    return diff


def write_config(out: Path, cfg: TrainConfig) -> None:
    """``config.yaml`` (creates the folder)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / CONFIG, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one line per finished epoch (rewritten whole, atomically)."""
    atomic_write_text(out / METRICS, "".join(json.dumps(m) + "\n" for m in history))


def write_run_summary(out: Path, summary: dict[str, Any]) -> None:
    """``run.json``."""
    atomic_write_text(out / RUN_SUMMARY, json.dumps(summary, indent=1))


def require_run_folder(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path; ``FileNotFoundError`` when it is missing or is a folder that
    ``vcreg train`` did not write (checked before any lock file is made there)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    if not any((run_dir / name).exists() for name in _RUN_MARKERS):
        raise FileNotFoundError(
            f"{run_dir} is not a vcreg run folder: it holds none of {', '.join(_RUN_MARKERS)} "
            f"(`vcreg train --out {run_dir}` writes them)"
        )
    return run_dir


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, SSLModel, dict[str, Any], DatasetBundle]:
    """``(config, model, checkpoint_state, bundle)`` of a run folder: the model (eval mode, on
    ``device``) with the weights of the verified ``checkpoint.pt`` (loaded ``weights_only``;
    ``state["sha256"]`` is the file's SHA-256), and the config's dataset bundle."""
    run_dir = require_run_folder(run_dir)
    ckpt = run_dir / CHECKPOINT
    state, sha256 = read_checkpoint(ckpt)
    try:
        cfg = TrainConfig.from_dict(saved_config(dict(state["config"]), str(ckpt)))
    except ValueError as exc:
        raise CheckpointError(f"{ckpt} holds an invalid config: {exc}") from None
    warn_config_disagreement(run_dir, cfg)
    bundle = load_bundle(cfg)
    model = build_model(cfg, bundle.input_shape)
    load_model_state(model, state, ckpt)
    return cfg, model.to(device).eval(), {**state, "sha256": sha256}, bundle
