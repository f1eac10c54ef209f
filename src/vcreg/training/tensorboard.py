"""TensorBoard logging of the epoch metrics, as a trainer callback (``tensorboard`` config key).

``"auto"`` logs when the ``tensorboard`` package is installed, ``true`` warns when it is not,
``false`` never logs. Scalars go to ``<run folder>/tensorboard``, indexed by the 1-based epoch.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from vcreg.training.callbacks import Callback, TrainState

__all__ = ["TensorBoardLogger", "open_writer"]


def open_writer(setting: bool | str, out_dir: Path | None) -> Any:
    """A ``SummaryWriter`` on ``out_dir/tensorboard``, or None (no folder, off, not installed)."""
    if out_dir is None or setting is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # optional dependency
    except ImportError:
        if setting is True:
            warnings.warn(
                "tensorboard=true but the tensorboard package is not installed",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return SummaryWriter(str(out_dir / "tensorboard"))


class TensorBoardLogger(Callback):
    """Writes every numeric entry of ``state.metrics`` after each epoch (rank 0)."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def on_epoch_end(self, state: TrainState) -> None:
        for k, v in state.metrics.items():
            if isinstance(v, int | float):
                self.writer.add_scalar(k, v, state.epoch + 1)

    def on_train_end(self, state: TrainState) -> None:
        self.writer.close()
