"""A tiny VICReg LightningModule on MNIST-1D with vcreg's IndependenceMonitor (for the tests).

Not collected by pytest; run as a script for the DDP test (Lightning's ``ddp`` strategy re-runs
this file in each process): ``python tests/lightning_app.py --devices 2 --out DIR --cache DIR``.
The views are deterministic and the encoder has no batch norm, so a DDP run trains the same model
as one process on the same batches (VICRegLoss gathers the global batch), in float64.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from vcreg import VICRegLoss
from vcreg.data import load_dataset
from vcreg.integrations.lightning import IndependenceMonitor

GLOBAL_BATCH = 64
PROBE_SAMPLES = 100


class TinyVICReg(pl.LightningModule):
    def __init__(self, repr_dim: int = 12) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(
            nn.Flatten(), nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, repr_dim)
        )
        self.projector = nn.Sequential(nn.Linear(repr_dim, 32), nn.ReLU(), nn.Linear(32, 32))
        self.loss = VICRegLoss()

    def training_step(self, batch, batch_idx):
        x, _ = batch
        # deterministic views (a shift and a scaling), so DDP == one process
        x_a, x_b = torch.roll(x, 2, dims=-1), 0.9 * x
        loss = self.loss(self.projector(self.encoder(x_a)), self.projector(self.encoder(x_b)))
        self.log("loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def train_dataloader(self) -> DataLoader:
        # interleaved shards, not shuffled: the union of the ranks' batches is the one-process
        # batch (built here, after Lightning has set up the process group)
        world = self.trainer.world_size
        sampler = DistributedSampler(self.train_data, shuffle=False) if world > 1 else None
        return DataLoader(self.train_data, batch_size=GLOBAL_BATCH // world, sampler=sampler)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.02)


def bundle(cache: str):
    return load_dataset("mnist1d", root=cache, num_samples=600, ood=False)


def probe_loader(cache: str) -> DataLoader:
    return DataLoader(bundle(cache).test, batch_size=30, shuffle=False)


def fit(devices: int, out: str, cache: str, epochs: int = 2) -> tuple[TinyVICReg, dict]:
    torch.set_num_threads(1)
    data = bundle(cache)
    model = TinyVICReg()
    monitor = IndependenceMonitor(
        every_n_epochs=1, samples=PROBE_SAMPLES, probe=probe_loader(cache), top_k=3
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        precision="64-true",
        max_epochs=epochs,
        callbacks=[monitor],
        logger=CSVLogger(out, name="csv", version=0),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        use_distributed_sampler=False,
    )
    model.train_data = data.train
    trainer.fit(model)
    result = {"history": monitor.history, "world_size": trainer.world_size}
    if trainer.is_global_zero:
        Path(out, "history.json").write_text(json.dumps(result))
    return model, result


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--cache", required=True)
    a = ap.parse_args()
    fit(a.devices, a.out, a.cache)
