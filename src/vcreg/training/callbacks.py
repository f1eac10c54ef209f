"""The trainer's extension point: callbacks that see the live training state.

A callback is any object with some of these methods (subclass :class:`Callback` to get no-op
defaults for the others); :func:`vcreg.training.train` calls them in the order given, on every
DDP rank (check ``state.rank``):

- ``on_train_start(state)`` — after the model, optimizer and data are set up (and a resumed
  run restored), before the first step;
- ``on_step_end(state)`` — after every optimizer step (``state.step``, ``state.loss``,
  ``state.loss_terms``, ``state.lr`` are the step's);
- ``on_epoch_end(state)`` — after every full epoch; ``state.metrics`` is that epoch's metrics
  dict: entries a callback adds are logged (TensorBoard), printed, written to ``metrics.jsonl``
  and kept in the checkpoint's history;
- ``on_train_end(state)`` — once, when training stops (completed or interrupted; not on error).

Setting ``state.should_stop = True`` stops the run at the end of the current step as a signal
would (checkpoint written, status "interrupted"). The trainer's own online monitoring
(:class:`vcreg.training.monitor.Monitor`) and TensorBoard logging are callbacks of this kind.
Callbacks must not consume the global RNGs (wrap random draws in ``torch.random.fork_rng``) or
a resumed run would no longer equal the uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vcreg.models import SSLModel
from vcreg.training.config import TrainConfig

__all__ = ["Callback", "TrainState", "HOOKS", "StepCallback", "check_callbacks", "run_hooks"]

HOOKS = ("on_train_start", "on_step_end", "on_epoch_end", "on_train_end")


@dataclass
class TrainState:
    """What callbacks see. ``epoch`` and ``step`` are 0-based (``metrics["epoch"]`` is 1-based);
    ``model`` is the unwrapped :class:`~vcreg.models.SSLModel` (also under DDP); ``history``
    holds the metrics of the epochs finished before the current one."""

    cfg: TrainConfig
    model: SSLModel
    optimizer: torch.optim.Optimizer
    device: torch.device
    out_dir: Path | None
    rank: int = 0
    world_size: int = 1
    bundle: Any = None
    train_data: Any = None
    epoch: int = 0
    step: int = 0
    steps_per_epoch: int = 0
    lr: float = 0.0
    loss: float | None = None
    loss_terms: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    should_stop: bool = False


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_train_start(self, state: TrainState) -> None:
        """Before the first step."""

    def on_step_end(self, state: TrainState) -> None:
        """After every optimizer step."""

    def on_epoch_end(self, state: TrainState) -> None:
        """After every full epoch (``state.metrics`` may be extended)."""

    def on_train_end(self, state: TrainState) -> None:
        """Once, when training stops."""


class StepCallback(Callback):
    """Adapts the ``train(on_step=f)`` shorthand: ``f(epoch, step)`` after every step."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def on_step_end(self, state: TrainState) -> None:
        self.fn(state.epoch, state.step)


def run_hooks(callbacks: list[Any], hook: str, state: TrainState) -> None:
    """Call ``hook`` on every callback that defines it, in order."""
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(state)


def check_callbacks(callbacks: Any) -> list[Any]:
    """A list of callbacks; ``TypeError`` naming an object that has none of the hooks."""
    out = list(callbacks or ())
    for cb in out:
        if not any(callable(getattr(cb, h, None)) for h in HOOKS):
            raise TypeError(
                f"callbacks must be objects with one of {list(HOOKS)} "
                f"(e.g. vcreg.training.Callback subclasses), got {cb!r}"
            )
    return out
