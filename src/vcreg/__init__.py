"""vcreg: Variance-Covariance Regularization (VCReg) for self-supervised learning.

Losses (VCReg, VICReg, Barlow Twins, W-MSE), projectors (MLP, random features),
independence measures (HSIC, pairwise HSIC, dHSIC), ICA with VCReg, SSL training
and the reproduction of Mialon, Balestriero & LeCun (arXiv 2209.14905).

Public names are imported lazily (PEP 562) so that ``vcreg --help`` and
``import vcreg`` stay fast; ``from vcreg import VICRegLoss`` works as usual.

Threads: importing vcreg before torch sets ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP's sleeping
waits) unless the variable is already set, so library code runs like the ``vcreg`` command
(which starts here too). Busy-waiting OpenMP threads slow torch down several-fold when the
cores are shared with other processes; passive waits cost little on an idle machine. The
OpenMP runtime reads the variable once, when torch is first imported: after ``import torch``
setting it has no effect, so vcreg then leaves it alone (set it in the shell instead).
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # losses (issue: foundation)
    "VCRegLoss": "vcreg.losses",
    "VICRegLoss": "vcreg.losses",
    "BarlowTwinsLoss": "vcreg.losses",
    "WMSELoss": "vcreg.losses",
    "InfoNCELoss": "vcreg.losses",
    "LossOutput": "vcreg.losses",
    # projectors
    "MLPProjector": "vcreg.projectors",
    "RandomFeatureProjector": "vcreg.projectors",
    # ICA
    "VCRegICA": "vcreg.ica",
    "amari_distance": "vcreg.ica",
    "mean_corr_coef": "vcreg.ica",
    # data + encoders
    "load_dataset": "vcreg.data",
    "make_augmentation": "vcreg.data",
    "TwoViewDataset": "vcreg.data",
    "build_encoder": "vcreg.models",
    # training + evaluation
    "TrainConfig": "vcreg.training",
    "LARS": "vcreg.training",
    "linear_probe": "vcreg.evaluation",
    "evaluate_run": "vcreg.training",
    # measuring embeddings, files and models
    "measure_embeddings": "vcreg.independence",
    "measure_model": "vcreg.independence",
    "load_array": "vcreg.io",
    "measure_trained": "vcreg.trained",
    # monitoring metrics (torchmetrics)
    "PairwiseHSIC": "vcreg.metrics",
    "EffectiveRank": "vcreg.metrics",
    "FeatureStd": "vcreg.metrics",
    "RepresentationMonitor": "vcreg.metrics",
}

_SUBMODULES = (
    "functional",
    "losses",
    "projectors",
    "distributed",
    "independence",
    "ica",
    "data",
    "models",
    "training",
    "evaluation",
    "metrics",
    "experiments",
    "io",
    "trained",
)

__all__ = ["__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        module = importlib.import_module(f"vcreg.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'vcreg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
