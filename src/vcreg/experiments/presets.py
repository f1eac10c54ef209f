"""Presets of ``vcreg reproduce``: per-claim settings at three scales.

* ``tiny``  — seconds; for the test suite (numbers are not meaningful).
* ``quick`` — all five claims on CPU in ≤ 10 minutes on 2 cores: fewer seeds, epochs and
  configurations than ``full`` (the report lists them).
* ``full``  — the settings that make each verdict statistically meaningful (≥ 3 seeds,
  the full width sweep 32…8192); ≤ 2 hours on 2 CPU cores, faster with CUDA.

``--seeds N`` replaces the ``seeds`` list of every claim that repeats over seeds by
``[0, …, N−1]``.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["PRESETS", "CLAIM_IDS", "resolve_settings"]

CLAIM_IDS = ("C1", "C2", "C3", "C4", "C5")

# Shared SSL training setup of C2/C3/C4 (MNIST-1D, 1-D CNN encoder).
_TRAIN_BASE_QUICK: dict[str, Any] = {
    "dataset": "mnist1d",
    "encoder": "cnn1d",
    "repr_dim": 32,
    "epochs": 5,
    "batch_size": 256,
    "lr": 3e-3,
    "n_train": 2000,  # SSL training signals (the linear probe uses the whole training split)
    "n_eval": 256,  # test signals on which HSIC / dHSIC of the representation are measured
    "ood_samples": 1000,  # signals per shifted MNIST-1D OOD set
    "probe_iter": 300,  # L-BFGS iterations of the logistic-regression probe
    "probe_train": None,  # training signals for the probe (None = the whole training split)
    "loss_spec": "256-64",  # common projector of the VICReg / Barlow / W-MSE comparison
}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "C1": {
            "n": 96,
            "d": 3,
            "dependence": [0.0, 0.5, 1.0],
            "m_identity": 16,
            "m_grid": [4, 16, 64, 256],
            "rf_seeds": 4,
            "bandwidth": 1.0,
            "seed": 0,
        },
        "C2": {
            **_TRAIN_BASE_QUICK,
            "repr_dim": 8,
            "epochs": 1,
            "n_train": 128,
            "n_eval": 48,
            "batch_size": 64,
            "probe_iter": 50,
            "probe_train": 256,
            "ood_samples": 50,
            "widths": [16, 32],
            "depths": [1, 2],
            "depth_width": 16,
            "kinds": ["frozen", "random_features"],
            "losses": ["wmse"],
            "loss_spec": "16-8",
            "seeds": [0],
        },
        "C3": {"loss": "vicreg", "width": 32, "kind": "frozen"},
        "C4": {"n_boot": 200},
        "C5": {
            "n_samples": 400,
            "n_sources": 3,
            "seeds": [0, 1],
            "max_iter": 60,
            "nonlinear": True,
        },
    },
    "quick": {
        "C1": {
            "n": 300,
            "d": 4,
            "dependence": [0.0, 0.25, 0.5, 0.75, 1.0],
            "m_identity": 64,
            "m_grid": [4, 8, 16, 32, 64, 128, 256, 512],
            "rf_seeds": 8,
            "bandwidth": 1.0,
            "seed": 0,
        },
        "C2": {
            **_TRAIN_BASE_QUICK,
            "widths": [32, 128, 512],
            "depths": [1, 2, 3],
            "depth_width": 128,
            "kinds": ["trained", "frozen", "random_features"],
            "losses": ["vicreg", "barlow", "wmse"],
            "seeds": [0, 1],
        },
        "C3": {"loss": "vicreg", "width": 512, "kind": "trained"},
        "C4": {"n_boot": 2000},
        "C5": {
            "n_samples": 2000,
            "n_sources": 4,
            "seeds": [0, 1, 2, 3, 4],
            "max_iter": 300,
            "nonlinear": True,
        },
    },
    "full": {
        "C1": {
            "n": 1000,
            "d": 5,
            "dependence": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            "m_identity": 256,
            "m_grid": [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096],
            "rf_seeds": 20,
            "bandwidth": 1.0,
            "seed": 0,
        },
        "C2": {
            **_TRAIN_BASE_QUICK,
            "repr_dim": 64,
            "epochs": 20,
            "n_train": 4000,
            "n_eval": 1000,
            "widths": [32, 128, 512, 2048, 8192],
            "depths": [1, 2, 3],
            "depth_width": 512,
            "kinds": ["trained", "frozen", "random_features"],
            "losses": ["vicreg", "barlow", "wmse"],
            "loss_spec": "512-128",
            "seeds": [0, 1, 2],
        },
        "C3": {"loss": "vicreg", "width": 2048, "kind": "trained"},
        "C4": {"n_boot": 5000},
        "C5": {
            "n_samples": 5000,
            "n_sources": 5,
            "seeds": list(range(10)),
            "max_iter": 500,
            "nonlinear": True,
        },
    },
}


def resolve_settings(
    preset: str,
    seeds: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-claim settings of ``preset`` with ``--seeds`` and ``overrides`` applied (a deep copy)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    settings = copy.deepcopy(PRESETS[preset])
    if seeds is not None:
        if int(seeds) < 1:
            raise ValueError(f"--seeds must be a positive integer, got {seeds}")
        for claim in settings.values():
            if "seeds" in claim:
                claim["seeds"] = list(range(int(seeds)))
    for claim, values in (overrides or {}).items():
        if claim not in settings:
            raise ValueError(f"override for unknown claim {claim!r}; choose from {CLAIM_IDS}")
        unknown = set(values) - set(settings[claim])
        if unknown:
            raise ValueError(f"unknown {claim} setting(s) {sorted(unknown)}")
        settings[claim].update(copy.deepcopy(values))
    # C3/C4 reuse the training runs of C2: they inherit its training setup
    for claim in ("C3", "C4"):
        settings[claim]["train"] = copy.deepcopy(settings["C2"])
    return settings
