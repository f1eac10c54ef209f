"""The run folder: what the trainer writes there, the resume rules, and loading a run back.

A run folder holds ``config.yaml`` (the validated config), ``checkpoint.pt``
(:mod:`vcreg.training.checkpoint`), ``metrics.jsonl`` (one JSON line per finished epoch),
``run.json`` (status and final metrics of the last session), optionally ``tensorboard/`` and
``eval.json`` (``vcreg evaluate``). Every file is written atomically (``vcreg._io``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import yaml

from vcreg._io import atomic_write_text
from vcreg.data import DatasetBundle
from vcreg.models import SSLModel, build_model
from vcreg.training.checkpoint import load_checkpoint
from vcreg.training.config import TrainConfig
from vcreg.training.feeding import load_bundle

__all__ = [
    "CHECKPOINT",
    "CONFIG",
    "EVAL",
    "METRICS",
    "RUN_SUMMARY",
    "config_diff",
    "load_run",
    "saved_state",
    "write_config",
    "write_metrics",
    "write_run_summary",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.yaml"
RUN_SUMMARY = "run.json"
EVAL = "eval.json"
# config fields that may differ between the original run and its resumption
RESUME_FREE = ("device", "threads", "tensorboard", "data.num_workers", "data.root")
# free-form mappings compared as a whole
_OPAQUE = ("data.options", "encoder.options", "loss.params", "augmentation.params")


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


def saved_state(out: Path | None, cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from (``resume``), else None; refuses to overwrite a run.

    ``ValueError``: resume without a folder, or a config that differs from the checkpoint's;
    ``FileNotFoundError``: nothing to resume; ``FileExistsError``: the folder holds a run.
    """
    ckpt = out / CHECKPOINT if out is not None else None
    if not resume:
        if ckpt is not None and ckpt.exists():
            raise FileExistsError(
                f"{out} already holds a run ({CHECKPOINT}); pass resume=True (--resume) to "
                f"continue it or choose another output folder"
            )
        return None
    if ckpt is None:
        raise ValueError("resume=True needs out_dir (the run folder to resume)")
    if not ckpt.is_file():
        raise FileNotFoundError(f"nothing to resume: {ckpt} does not exist")
    state = load_checkpoint(ckpt)
    diff = config_diff(state["config"], cfg.to_dict())
    if diff:
        raise ValueError(
            "cannot resume: the config differs from the checkpoint's:\n  - " + "\n  - ".join(diff)
        )
    return state


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


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[TrainConfig, SSLModel, dict[str, Any], DatasetBundle]:
    """``(config, model, checkpoint_state, bundle)`` of a run folder: the model (eval mode, on
    ``device``) with the weights of ``checkpoint.pt`` (loaded ``weights_only``), and the
    config's dataset bundle."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    state = load_checkpoint(run_dir / CHECKPOINT)
    cfg = TrainConfig.from_dict(state["config"])
    bundle = load_bundle(cfg)
    model = build_model(cfg, bundle.input_shape)
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval(), state, bundle
