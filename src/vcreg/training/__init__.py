"""Self-supervised training: config, trainer, optimizers (incl. LARS), checkpoints.

``vcreg.training.train(config, out_dir=None, resume=False, progress=True) -> RunResult`` — see
:mod:`vcreg.training.trainer`; configs are :class:`TrainConfig` (``from_yaml``, ``from_dict``).
"""

from vcreg.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vcreg.training.config import TrainConfig
from vcreg.training.optim import LARS, build_optimizer, lr_at
from vcreg.training.trainer import (
    RunResult,
    SSLModel,
    TrainingDivergedError,
    build_loss,
    build_model,
    load_bundle,
    train,
)

__all__ = [
    "CheckpointError",
    "LARS",
    "RunResult",
    "SSLModel",
    "TrainConfig",
    "TrainingDivergedError",
    "build_loss",
    "build_model",
    "build_optimizer",
    "load_bundle",
    "load_checkpoint",
    "lr_at",
    "save_checkpoint",
    "train",
]
