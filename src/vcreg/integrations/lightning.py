"""``IndependenceMonitor``: pairwise HSIC, effective rank and collapse of the representation,
measured during PyTorch Lightning training and logged through ``pl_module.log``.

Needs the ``lightning`` extra (``pip install "vcreg[lightning]"``) or the standalone
``pytorch_lightning`` package: the callback works with the Trainer of either (with both installed,
it is a Callback of both); ``import vcreg`` never imports this module. The measurement is :class:`vcreg.metrics.RepresentationMonitor` (the same
object a plain loop or vcreg's own trainer uses), so the logged numbers are those of
:mod:`vcreg.independence` on the collected rows.

Where the rows come from:

- ``probe=loader`` (recommended): every ``every_n_epochs`` epochs (and after the last one), at the
  end of the training epoch, the model is switched to ``eval()`` and the first ``samples`` rows of
  the loader are encoded without gradients; under DDP the loader's batches are split round-robin
  over the ranks and the rows gathered, so N processes measure exactly the rows one process would.
  The global RNG is forked around it, so monitoring does not change the training run.
- ``probe=None``: the rows the training step itself computes in the due epochs (a forward hook on
  the ``representation`` module while it is in training mode; both views of a two-view step
  count) until ``samples`` rows per rank are held, then gathered across ranks.

``representation``: the name of the submodule whose output is the representation (default
``"encoder"``; ``""`` = the LightningModule itself), or a function ``fn(pl_module, batch) ->
Tensor``. With a module name, a probe batch's input is ``batch`` if it is a tensor, else its
first element (and the first view again if that is a list/tuple).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vcreg.metrics import DEFAULT_SAMPLES, RepresentationMonitor, pairwise_heatmap

# Lightning ships as `lightning` (lightning.pytorch) and as the older standalone
# `pytorch_lightning` (solo-learn, many lightly examples); each Trainer accepts only its own
# package's Callback class. The monitor subclasses the Callback of every package installed, so
# it works with either Trainer, whichever of the two is present.
PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_found = []
for _name in PACKAGES:
    try:
        _found.append(importlib.import_module(_name))
    except ImportError:
        pass
if not _found:
    raise ImportError(
        "vcreg.integrations.lightning needs PyTorch Lightning (`lightning` or "
        '`pytorch_lightning`): pip install "vcreg[lightning]"'
    )
pl = _found[0]
CALLBACK_BASES: tuple[type, ...] = tuple(m.Callback for m in _found)

__all__ = ["CALLBACK_BASES", "IndependenceMonitor"]

Representation = str | Callable[[Any, Any], Tensor]


def _first_tensor(batch: Any) -> Tensor:
    while isinstance(batch, list | tuple) and batch:
        batch = batch[0]
    if not isinstance(batch, Tensor):
        raise TypeError(
            f"cannot find the input tensor in a batch of type {type(batch).__name__}; pass "
            f"representation=fn(pl_module, batch) -> Tensor"
        )
    return batch


class IndependenceMonitor(*CALLBACK_BASES):
    """Log independence and collapse measures of the representation every N epochs.

    Args:
        every_n_epochs: measure after epochs e with (e + 1) % every_n_epochs == 0 and after the
            last epoch.
        samples: rows measured (pairwise HSIC costs O(samples² d²)).
        probe: a held-out DataLoader (or any iterable of batches), or None for training batches.
        representation: submodule name or ``fn(pl_module, batch)`` (module docstring).
        prefix: prefix of the logged keys (``independence/nhsic_mean``, ...).
        heatmap_dir: if set, rank 0 writes ``pairwise_nhsic_epoch{E}.png`` there each time
            (E = ``trainer.current_epoch``, 0-based like Lightning's logs).
        **monitor: options of :class:`vcreg.metrics.RepresentationMonitor` (``hsic``, ``rank``,
            ``std``, ``top_k``, ``collapse_threshold``, ``pairwise``).

    ``history`` keeps ``{"epoch", **values, "top_pairs"}`` of every measurement. Without a
    Trainer, ``update(z)`` / ``compute()`` / ``reset()`` work as in a plain loop.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        samples: int = DEFAULT_SAMPLES,
        probe: Iterable | None = None,
        representation: Representation = "encoder",
        prefix: str = "independence/",
        heatmap_dir: str | Path | None = None,
        **monitor: Any,
    ) -> None:
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise TypeError(f"every_n_epochs must be an int, got {every_n_epochs!r}")
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")
        if not (isinstance(representation, str) or callable(representation)):
            raise TypeError(
                "representation must be a submodule name or a function (pl_module, batch) -> "
                f"Tensor, got {type(representation).__name__}"
            )
        self.every_n_epochs, self.samples, self.probe = every_n_epochs, samples, probe
        self.representation = representation
        self.heatmap_dir = None if heatmap_dir is None else Path(heatmap_dir)
        self.monitor = RepresentationMonitor(max_samples=samples, prefix=prefix, **monitor)
        self.history: list[dict[str, Any]] = []
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    # ------------------------------------------------------------------ plain-loop use
    def update(self, z: Tensor) -> None:
        self.monitor.update(z)

    def compute(self) -> dict[str, float]:
        return self.monitor.compute()

    def reset(self) -> None:
        self.monitor.reset()

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if isinstance(self.representation, str):
            self._module(pl_module)  # fail at setup, naming the module, not mid-training

    def _due(self, trainer: pl.Trainer) -> bool:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 == trainer.max_epochs
        return (epoch + 1) % self.every_n_epochs == 0 or last

    def _module(self, pl_module: pl.LightningModule) -> nn.Module:
        try:
            return pl_module.get_submodule(self.representation)
        except AttributeError:
            raise ValueError(
                f"IndependenceMonitor: the LightningModule has no submodule "
                f"{self.representation!r}; pass representation='<name>' (e.g. 'backbone') or a "
                f"function (pl_module, batch) -> Tensor"
            ) from None

    def _encode(self, pl_module: pl.LightningModule, batch: Any) -> Tensor:
        if callable(self.representation):
            return self.representation(pl_module, batch)
        return self._module(pl_module)(_first_tensor(batch))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.monitor.to(pl_module.device)
        self.monitor.reset()
        if self.probe is None and self._due(trainer) and isinstance(self.representation, str):
            self._hook = self._module(pl_module).register_forward_hook(self._record)

    def _record(self, module: nn.Module, args: Any, output: Any) -> None:
        if module.training and isinstance(output, Tensor):
            self.monitor.update(output)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.probe is None and callable(self.representation) and self._due(trainer):
            if not self.monitor.is_full:
                with torch.no_grad():
                    self.monitor.update(self.representation(pl_module, batch))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if not self._due(trainer):
            return
        if self.probe is not None:
            self._collect_probe(trainer, pl_module)
        values = self.monitor.compute()  # gathered: the same on every rank
        self._log(trainer, pl_module, values)
        self.monitor.reset()

    def _collect_probe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The first ``samples`` rows of the probe; batch i is encoded by rank i % world."""
        world, rank = trainer.world_size, trainer.global_rank
        was_training = pl_module.training
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            pl_module.eval()
            try:
                seen = 0
                for i, batch in enumerate(self.probe):
                    if seen >= self.samples:
                        break
                    take = min(_first_tensor(batch).shape[0], self.samples - seen)
                    if i % world == rank:
                        # what Lightning does to a training batch: precision, then device
                        batch = trainer.precision_plugin.convert_input(batch)
                        batch = trainer.strategy.batch_to_device(batch)
                        self.monitor.update(self._encode(pl_module, batch)[:take])
                    seen += take
            finally:
                pl_module.train(was_training)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, values: dict) -> None:
        epoch = trainer.current_epoch
        # float64 where the device has it: the logged numbers keep the measurement's precision
        dtype = torch.float32 if pl_module.device.type == "mps" else torch.float64
        for key, value in values.items():
            pl_module.log(
                key,
                torch.tensor(value, dtype=dtype, device=pl_module.device),
                on_step=False,
                on_epoch=True,
                # identical on every rank already (gathered before compute); "max" of equal
                # values is exact for any world size, and syncing keeps Lightning from warning
                sync_dist=True,
                reduce_fx="max",
            )
        self.history.append({"epoch": epoch, **values, "top_pairs": list(self.monitor.top_pairs)})
        if (
            self.heatmap_dir is not None
            and trainer.is_global_zero
            and self.monitor.matrix is not None
        ):
            pairwise_heatmap(
                self.monitor.matrix,
                self.heatmap_dir / f"pairwise_nhsic_epoch{epoch:04d}.png",
                title=f"pairwise normalized HSIC, epoch {epoch}",
            )
