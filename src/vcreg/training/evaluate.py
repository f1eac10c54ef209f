"""Evaluation of a training run folder (``vcreg evaluate``): probe + independence -> ``eval.json``.

The measures themselves live in :mod:`vcreg.evaluation` (which knows nothing of training); this
module applies them to a run with the run's ``evaluation`` config section.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcreg._device import resolve_device
from vcreg._io import atomic_write_text
from vcreg._lock import FolderLock
from vcreg.data import DatasetBundle
from vcreg.evaluation import dataset_tensors, encode, independence_metrics, linear_probe
from vcreg.training.config import TrainConfig
from vcreg.training.regime import hinge_balance, measure_regime, regime_summary
from vcreg.training.runfolder import (
    CHECKPOINT,
    check_eval_target,
    eval_provenance,
    load_run,
    require_run_folder,
)

__all__ = ["evaluate_encoder", "evaluate_run"]


def evaluate_encoder(
    encoder: nn.Module,
    cfg: TrainConfig,
    bundle: DatasetBundle,
    device: torch.device,
    ood: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Linear probe (in-domain + OOD) and independence of ``encoder`` with ``cfg.evaluation``'s
    settings: the measurements of ``eval.json`` (also used for exported encoders)."""
    ev = cfg.evaluation
    say = print if progress else (lambda *_a, **_k: None)
    say(f"linear probe on {cfg.data.name} ({len(bundle.train)} train samples)...")
    probe = linear_probe(
        encoder,
        bundle,
        C=ev.C,
        max_iter=ev.max_iter,
        ood=ev.ood if ood is None else ood,
        batch_size=ev.batch_size,
        device=device,
    )
    say("independence measures...")
    x_ind, _ = dataset_tensors(bundle.test, ev.independence_samples)
    feats = encode(encoder, x_ind, ev.batch_size, device)
    return {
        **probe,
        "independence": {"n_samples": len(feats), **independence_metrics(feats)},
        "settings": {
            "C": ev.C,
            "max_iter": ev.max_iter,
            "independence_samples": ev.independence_samples,
        },
    }


def evaluate_run(
    run_dir: str | Path,
    device: str = "auto",
    ood: bool | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Linear probe (in-domain + OOD accuracy) and independence measures of a trained run;
    writes ``run_dir/eval.json`` atomically and returns its content.

    An existing ``eval.json`` is replaced only with ``overwrite=True``; the result records the
    checkpoint it evaluated (``checkpoint``: path, SHA-256, epoch, step, complete) and an
    incomplete run gives a ``RuntimeWarning``. Holds the run folder's lock throughout
    (:mod:`vcreg._lock`): ``FolderLockedError`` at once while ``vcreg train`` (or another
    evaluation) uses the folder, instead of reading a checkpoint that is being replaced.
    ``regime``: the embedding diagnostics of the checkpoint's projector output and whether the
    VCReg constraint is met (:func:`vcreg.training.regime.regime_summary`)."""
    t0 = time.time()
    dev = resolve_device(device)
    require_run_folder(run_dir)  # before the lock file is made there
    with FolderLock(run_dir, purpose="vcreg evaluate"):
        return _evaluate_locked(Path(run_dir), dev, ood, progress, overwrite, t0)


def _evaluate_locked(
    run_dir: Path, dev: torch.device, ood: bool | None, progress: bool, overwrite: bool, t0: float
) -> dict[str, Any]:
    target = check_eval_target(run_dir, overwrite)
    cfg, model, state, bundle = load_run(run_dir, dev)
    source = eval_provenance(Path(run_dir) / CHECKPOINT, state["sha256"], state, cfg.epochs)
    result = {
        "run_dir": str(run_dir),
        "dataset": cfg.data.name,
        "epochs_trained": int(state["epoch"]),
        "epochs": cfg.epochs,
        "checkpoint": source,
        **evaluate_encoder(model.encoder, cfg, bundle, dev, ood=ood, progress=progress),
    }
    # the regime the probe numbers come from (VCReg constraint reached or not)
    diag = measure_regime(
        model.encoder,
        model.projector,
        bundle.test,
        cfg.evaluation.independence_samples,
        dev,
        cfg.evaluation.batch_size,
        balance=hinge_balance(cfg.loss.name, cfg.batch_size, cfg.loss.params),
    )
    result["regime"] = regime_summary(list(state.get("history") or []), diag)
    result["wall_time_s"] = time.time() - t0
    atomic_write_text(target, json.dumps(result, indent=1))
    return result
