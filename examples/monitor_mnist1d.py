"""Independence monitoring in your own training: VICReg on MNIST-1D, Lightning or a plain loop.

    python examples/monitor_mnist1d.py --trainer lightning [--epochs 10] [--out runs/monitor]
    python examples/monitor_mnist1d.py --trainer plain

Both train the same model (1-D CNN encoder -> 64-d representation, MLP projector 256-256,
``vcreg.VICRegLoss``, Adam 1e-3, batch 256, vcreg's MNIST-1D augmentation) and every 2 epochs
measure the representation of the first 512 test signals: mean / max normalized HSIC over all
pairs of features, effective rank (RankMe), mean feature std and collapsed features. Lightning:
``IndependenceMonitor`` logs them through ``pl_module.log`` (CSV logger in OUT, heatmaps in
OUT/heatmaps); plain loop: ``RepresentationMonitor.update`` / ``compute``. The README's numbers
come from these commands (CPU). Needs ``pip install "vcreg[lightning]"`` for ``--trainer lightning``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from vcreg import MLPProjector, VICRegLoss, build_encoder, load_dataset, make_augmentation
from vcreg.metrics import RepresentationMonitor

EVERY, SAMPLES, BATCH = 2, 512, 256
SHOWN = ("nhsic_mean", "nhsic_max", "effective_rank", "std_mean", "n_collapsed")


class VICRegModel(nn.Module):
    def __init__(self, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = build_encoder("cnn1d", input_shape, 64)
        self.projector = MLPProjector(64, "256-256")
        self.loss = VICRegLoss()
        self.augment = make_augmentation("mnist1d", input_shape)

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        z_a = self.projector(self.encoder(self.augment(x)))
        z_b = self.projector(self.encoder(self.augment(x)))
        return self.loss(z_a, z_b)


def _line(epoch: int, values: dict[str, float], prefix: str = "") -> str:
    shown = "  ".join(f"{k} {values[prefix + k]:.4g}" for k in SHOWN)
    return f"epoch {epoch + 1:>3}  {shown}"


def plain_loop(model: VICRegModel, train: DataLoader, probe: DataLoader, epochs: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    monitor = RepresentationMonitor(max_samples=SAMPLES)
    for epoch in range(epochs):
        model.train()
        for x, _ in train:
            loss = model.training_loss(x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if (epoch + 1) % EVERY == 0 or epoch + 1 == epochs:
            model.eval()
            monitor.reset()
            with torch.no_grad():
                for x, _ in probe:
                    monitor.update(model.encoder(x))
            print(_line(epoch, monitor.compute()), flush=True)


def lightning_fit(model: VICRegModel, train, probe, epochs: int, out: Path) -> None:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    from vcreg.integrations.lightning import IndependenceMonitor

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.encoder = model.encoder  # the monitor's default representation="encoder"

        def training_step(self, batch, batch_idx):
            loss = self.model.training_loss(batch[0])
            self.log("loss", loss, on_step=False, on_epoch=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Print(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if "independence/nhsic_mean" in trainer.callback_metrics and monitor.history:
                if monitor.history[-1]["epoch"] == trainer.current_epoch:
                    print(_line(trainer.current_epoch, monitor.history[-1], "independence/"))

    monitor = IndependenceMonitor(
        every_n_epochs=EVERY, samples=SAMPLES, probe=probe, heatmap_dir=out / "heatmaps"
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=epochs,
        callbacks=[monitor, Print()],
        logger=CSVLogger(out, name="csv"),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), train)
    print(f"logged to {trainer.logger.log_dir}/metrics.csv, heatmaps in {out / 'heatmaps'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trainer", choices=["lightning", "plain"], default="lightning")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", default="runs/monitor_mnist1d")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    data = load_dataset("mnist1d", ood=False)
    train = DataLoader(data.train, batch_size=BATCH, shuffle=True, drop_last=True)
    probe = DataLoader(data.test, batch_size=BATCH)
    model = VICRegModel(data.input_shape)
    t0 = time.time()
    if args.trainer == "plain":
        plain_loop(model, train, probe, args.epochs)
    else:
        lightning_fit(model, train, probe, args.epochs, Path(args.out))
    print(f"{args.trainer}: {args.epochs} epochs in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
