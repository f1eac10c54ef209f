"""Data feeding of the trainer: the dataset of a config, its views, per-rank batches.

Reproducibility: the data order of epoch ``e`` is a permutation drawn from a generator seeded
with ``mix_seed(seed, 4, e)`` and the augmentation of step ``s`` from ``mix_seed(seed, 6, e, s)``,
so a run resumed at any step redraws exactly the batches of the uninterrupted run.

Two paths: in-memory tensors (``num_workers == 0`` and a ``TensorDataset``; the fast path for
MNIST-1D) build each GLOBAL batch from the epoch permutation, augment it as a batch, and give
rank ``r`` the contiguous slice ``[r·b, (r+1)·b)``, so that the gathered global batch under DDP is
exactly the single-process batch (same order). Otherwise a ``DataLoader`` over
``TwoViewDataset`` with a ``DistributedSampler`` (seeded with ``seed``, ``set_epoch(e)``) and
per-sample augmentation seeded by ``(seed, e, index)``.
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
from vcreg.training.config import TrainConfig

__all__ = ["Batches", "load_bundle", "make_views", "subset"]


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


class Batches:
    """Per-epoch batches of (view_a, view_b, labels) for this rank; deterministic in (seed, epoch,
    step). Self-supervised losses ignore the labels; the supervised control uses them."""

    def __init__(self, cfg: TrainConfig, train_ds: Any, aug, world: int, rank: int) -> None:
        self.cfg, self.aug, self.world, self.rank = cfg, aug, world, rank
        self.global_batch = cfg.batch_size
        self.local_batch = cfg.batch_size // world
        self.in_memory = cfg.data.num_workers == 0 and hasattr(train_ds, "tensors")
        if self.in_memory:
            self.x, self.y = train_ds.tensors[0], train_ds.tensors[1]
            self.n = len(self.x)
            self.steps = self.n // self.global_batch
        else:
            self.ds = data.TwoViewDataset(train_ds, aug, seed=mix_seed(cfg.seed, 5) % 2**31)
            self.sampler = DistributedSampler(
                self.ds, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed, drop_last=True
            )
            self.n = len(train_ds)
            self.steps = len(self.sampler) // self.local_batch

    def epoch(
        self, epoch: int, start_step: int, pin: bool
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The batches of ``epoch`` from step ``start_step`` on (``pin``: pinned memory)."""
        if self.in_memory:
            yield from self._in_memory(epoch, start_step)
            return
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

    def _in_memory(self, epoch: int, start_step: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 4, epoch))
        perm = torch.randperm(self.n, generator=g)
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for step in range(start_step, self.steps):
            idx = perm[step * self.global_batch : (step + 1) * self.global_batch]
            xb = self.x[idx]
            ga = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 6, epoch, step))
            va, vb = self.aug(xb, generator=ga), self.aug(xb, generator=ga)
            yield va[lo:hi], vb[lo:hi], self.y[idx][lo:hi]
