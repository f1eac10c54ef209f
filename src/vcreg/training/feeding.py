"""Data feeding of the trainer: the dataset of a config, its views, per-rank batches.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from a generator seeded
with ``mix_seed(seed, 4, e)`` and the augmentation of step ``s`` from ``mix_seed(seed, 6, e, s)``,
so a run resumed at any step redraws exactly the batches of the uninterrupted run.

Three paths (:func:`feeding_mode`):

- ``"memory"``: the training set's tensors are held on the augmentation device; each GLOBAL
  batch comes from the epoch permutation, rank ``r`` takes the contiguous rows
  ``[r·b, (r+1)·b)`` and applies its rows of the global batch's augmentation parameters
  (drawn on the CPU from the step's generator), so the gathered global batch under DDP is the
  single-process batch (same order, same parameters).
- ``"loader"``: the same global batches and parameters, but the rank's rows are loaded by a
  ``DataLoader`` (``data.num_workers`` workers, un-augmented samples) — for datasets that do not
  fit in memory (e.g. ImageFolder) — and augmented after the move to the device.
- ``"per-sample"``: a ``DataLoader`` over ``TwoViewDataset`` with a ``DistributedSampler``
  (seeded with ``seed``, ``set_epoch(e)``) and per-sample augmentation seeded by
  ``(seed, e, index)``, in the workers.

``augmentation.on_device`` picks them: true -> ``"memory"`` (the device holds the data) or
``"loader"``, augmented on the training device (the fast path on a GPU: the CPU workers only
load); false -> ``"memory"`` on the CPU when ``data.num_workers == 0`` and the dataset holds
tensors, else ``"per-sample"`` (what the trainer did before the switch existed); "auto" -> true
on CUDA, false otherwise. On the CPU, ``on_device: true`` and ``num_workers: 0`` give the same
batches bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset

from vcreg import data
from vcreg._seed import mix_seed
from vcreg.data import DatasetBundle
from vcreg.data.augment import take_rows
from vcreg.training.config import TrainConfig

__all__ = ["Batches", "augments_on_device", "feeding_mode", "load_bundle", "make_views", "subset"]


def load_bundle(cfg: TrainConfig) -> DatasetBundle:
    """The dataset bundle of a config (``vcreg.data.load_dataset``)."""
    return data.load_dataset(cfg.data.name, cfg.data.root, **cfg.data.options)


def make_views(cfg: TrainConfig, bundle: DatasetBundle) -> Callable[..., Tensor]:
    """The config's augmentation (``"default"``: the dataset's recipe) for ``bundle``'s inputs."""
    name = cfg.augmentation.name
    if name == "default":
        name = bundle.default_augmentation
    return data.make_augmentation(name, bundle.input_shape, **cfg.augmentation.params)


def subset(ds: Dataset, n: int | None) -> Dataset:
    """The first ``n`` samples of ``ds`` (all when ``n`` is None); tensors stay tensors."""
    if n is None or n >= len(ds):  # type: ignore[arg-type]
        return ds
    if hasattr(ds, "tensors"):
        return TensorDataset(*(t[:n] for t in ds.tensors))
    return Subset(ds, range(n))


def augments_on_device(cfg: TrainConfig, device: torch.device) -> bool:
    """``augmentation.on_device`` resolved: "auto" is true on CUDA only."""
    on = cfg.augmentation.on_device
    return device.type == "cuda" if on == "auto" else bool(on)


def feeding_mode(cfg: TrainConfig, train_ds: Any, device: torch.device) -> str:
    """``"memory"``, ``"loader"`` or ``"per-sample"`` (module docstring) for a config's
    ``augmentation.on_device`` and ``data.num_workers``, the dataset and the training device."""
    in_memory = hasattr(train_ds, "tensors")
    if augments_on_device(cfg, device):
        return "memory" if in_memory else "loader"
    return "memory" if in_memory and cfg.data.num_workers == 0 else "per-sample"


class Batches:
    """Per-epoch batches of (view_a, view_b, labels) for this rank; deterministic in (seed, epoch,
    step). Self-supervised losses ignore the labels; the supervised control uses them. Views are
    on ``self.aug_device`` (the training device when augmenting there, else the CPU)."""

    def __init__(
        self,
        cfg: TrainConfig,
        train_ds: Any,
        aug,
        world: int,
        rank: int,
        device: torch.device | None = None,
    ) -> None:
        device = torch.device("cpu") if device is None else device
        self.cfg, self.aug, self.world, self.rank = cfg, aug, world, rank
        self.global_batch = cfg.batch_size
        self.local_batch = cfg.batch_size // world
        self.mode = feeding_mode(cfg, train_ds, device)
        on = augments_on_device(cfg, device)
        self.aug_device = device if on else torch.device("cpu")
        if self.mode == "per-sample":
            self.ds = data.TwoViewDataset(train_ds, aug, seed=mix_seed(cfg.seed, 5) % 2**31)
            self.sampler = DistributedSampler(
                self.ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
            self.n = len(train_ds)
            self.steps = len(self.sampler) // self.local_batch
            return
        if self.mode == "memory":
            self.x = train_ds.tensors[0].to(self.aug_device)
            self.y = train_ds.tensors[1]
            self.n = len(self.x)
        else:
            self.base, self.n = train_ds, len(train_ds)
        self.steps = self.n // self.global_batch

    def epoch(
        self, epoch: int, start_step: int, pin: bool
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of ``epoch`` from step ``start_step`` on (``pin``: pinned memory)."""
        if self.mode == "per-sample":
            yield from self._per_sample(epoch, start_step, pin)
            return
        g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 4, epoch))
        perm = torch.randperm(self.n, generator=g)
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        rows = [perm[step * self.global_batch :][lo:hi] for step in range(start_step, self.steps)]
        if self.mode == "memory":
            for step, idx in enumerate(rows, start=start_step):
                xb = self.x[idx.to(self.x.device)]
                yield (*self._views(xb, epoch, step), self.y[idx])
            return
        loader = DataLoader(
            self.base,
            batch_sampler=[r.tolist() for r in rows],
            num_workers=self.cfg.data.num_workers,
            pin_memory=pin,
        )
        for step, (xb, yb) in enumerate(loader, start=start_step):
            yield (*self._views(xb.to(self.aug_device, non_blocking=True), epoch, step), yb)

    def _views(self, xb: Tensor, epoch: int, step: int) -> tuple[Tensor, Tensor]:
        """Both views of this rank's rows ``xb`` of the global batch of ``step``: the rows of
        the global batch's parameters (drawn on the CPU), applied on ``xb``'s device."""
        g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 6, epoch, step))
        shape = (self.global_batch, *xb.shape[1:])
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        if not _batchable(self.aug):  # e.g. batched=False: per-sample torchvision on each row
            full = torch.zeros(shape, dtype=xb.dtype, device=xb.device)
            full[lo:hi] = xb
            return self.aug(full, generator=g)[lo:hi], self.aug(full, generator=g)[lo:hi]
        pa = self.aug.sample_params(shape, g)
        pb = self.aug.sample_params(shape, g)
        return self.aug.apply(xb, take_rows(pa, lo, hi)), self.aug.apply(xb, take_rows(pb, lo, hi))

    def _per_sample(
        self, epoch: int, start_step: int, pin: bool
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        self.sampler.set_epoch(epoch)
        self.ds.set_epoch(epoch)
        indices = list(self.sampler)[start_step * self.local_batch : self.steps * self.local_batch]
        loader = DataLoader(
            self.ds,
            batch_size=self.local_batch,
            sampler=indices,
            drop_last=True,
            num_workers=self.cfg.data.num_workers,
            pin_memory=pin,
        )
        yield from loader


def _batchable(aug: Any) -> bool:
    return hasattr(aug, "sample_params") and getattr(aug, "batched", True)
