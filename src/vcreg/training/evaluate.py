"""Evaluation of a training run folder (``vcreg evaluate``): probe + independence -> ``eval.json``.

The measures themselves live in :mod:`vcreg.evaluation` (which knows nothing of training); this
module applies them to a run with the run's ``evaluation`` config section.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vcreg._device import resolve_device
from vcreg._io import atomic_write_text
from vcreg.evaluation import dataset_tensors, encode, independence_metrics, linear_probe
from vcreg.training.rundir import EVAL, load_run

__all__ = ["evaluate_run"]


def evaluate_run(
    run_dir: str | Path,
    device: str = "auto",
    ood: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Linear probe (in-domain + OOD accuracy) and independence measures of a trained run;
    writes ``run_dir/eval.json`` atomically and returns its content."""
    t0 = time.time()
    dev = resolve_device(device)
    cfg, model, state, bundle = load_run(run_dir, dev)
    ev = cfg.evaluation
    say = print if progress else (lambda *_a, **_k: None)
    say(f"linear probe on {cfg.data.name} ({len(bundle.train)} train samples)...")
    probe = linear_probe(
        model.encoder,
        bundle,
        C=ev.C,
        max_iter=ev.max_iter,
        ood=ev.ood if ood is None else ood,
        batch_size=ev.batch_size,
        device=dev,
    )
    say("independence measures...")
    x_ind, _ = dataset_tensors(bundle.test, ev.independence_samples)
    feats = encode(model.encoder, x_ind, ev.batch_size, dev)
    result = {
        "run_dir": str(run_dir),
        "dataset": cfg.data.name,
        "epochs_trained": int(state["epoch"]),
        "epochs": cfg.epochs,
        **probe,
        "independence": {"n_samples": len(feats), **independence_metrics(feats)},
        "settings": {
            "C": ev.C,
            "max_iter": ev.max_iter,
            "independence_samples": ev.independence_samples,
        },
        "wall_time_s": time.time() - t0,
    }
    atomic_write_text(Path(run_dir) / EVAL, json.dumps(result, indent=1))
    return result
