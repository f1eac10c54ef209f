"""Self-supervised training: config, trainer, callbacks, optimizers (incl. LARS), checkpoints,
run folders.

``vcreg.training.train(config, out_dir=None, resume=False, progress=True, callbacks=[...])
-> RunResult`` — see :mod:`vcreg.training.trainer`; configs are :class:`TrainConfig`
(``from_yaml``, ``from_dict``); extension point: :class:`Callback` (``on_epoch_end(state)`` etc.,
:mod:`vcreg.training.callbacks`); a trained run folder: :func:`load_run`, :func:`evaluate_run`; whether a run reached the VCReg
constraint: ``run.json["regime"]`` (:mod:`vcreg.training.regime`, :class:`RegimeWarning`).
"""

from vcreg.models import SSLModel, build_model
from vcreg.training.callbacks import Callback, TrainState
from vcreg.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vcreg.training.config import TrainConfig
from vcreg.training.evaluate import evaluate_run
from vcreg.training.feeding import load_bundle
from vcreg.training.optim import LARS, build_optimizer, lr_at
from vcreg.training.regime import RegimeWarning
from vcreg.training.runfolder import load_run
from vcreg.training.trainer import RunResult, TrainingDivergedError, build_loss, train

__all__ = [
    "Callback",
    "CheckpointError",
    "LARS",
    "RegimeWarning",
    "RunResult",
    "SSLModel",
    "TrainConfig",
    "TrainState",
    "TrainingDivergedError",
    "build_loss",
    "build_model",
    "build_optimizer",
    "evaluate_run",
    "load_bundle",
    "load_checkpoint",
    "load_run",
    "lr_at",
    "save_checkpoint",
    "train",
]
