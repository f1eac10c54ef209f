"""Online monitoring during training, as a trainer callback.

Every ``monitor.every`` epochs (and after the last one) the encoder's representation of a fixed
held-out subset (the first ``monitor.samples`` test samples) is measured: mean pairwise HSIC,
mean normalized HSIC, dHSIC (:func:`vcreg.evaluation.independence_metrics`), the mean feature
std, the embedding diagnostics of :func:`vcreg.diagnostics.embedding_diagnostics` (embedding
std, fraction of dimensions meeting VICReg's variance hinge, random-feature input scale relative
to the bandwidth), and a probe accuracy (``"knn"``: cosine k-NN, ``"linear"``: closed-form ridge) fitted on the
first ``monitor.probe_train_samples`` training samples. The values join the epoch's metrics.
The measurement draws no global random numbers (``fork_rng``), so resumed runs stay exact.
"""

from __future__ import annotations

import torch

from vcreg.diagnostics import embedding_diagnostics
from vcreg.evaluation import (
    dataset_tensors,
    encode,
    independence_metrics,
    knn_accuracy,
    ridge_accuracy,
)
from vcreg.models import SSLModel
from vcreg.training.callbacks import Callback, TrainState
from vcreg.training.config import TrainConfig

__all__ = ["Monitor"]


class Monitor(Callback):
    """The trainer's built-in monitor (rank 0 only); configured by ``cfg.monitor``."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        m = cfg.monitor
        self.enabled = m.every > 0 and (m.hsic or m.dhsic or m.probe != "none")

    def on_train_start(self, state: TrainState) -> None:
        if not self.enabled:
            return
        m = self.cfg.monitor
        self.device = state.device
        self.x_eval, self.y_eval = dataset_tensors(state.bundle.test, m.samples)
        self.x_probe, self.y_probe = dataset_tensors(state.train_data, m.probe_train_samples)

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is measured."""
        every = self.cfg.monitor.every
        return self.enabled and ((epoch + 1) % every == 0 or epoch + 1 == self.cfg.epochs)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.rank == 0 and self.due(state.epoch):
            state.metrics.update(self.measure(state.model))

    def measure(self, model: SSLModel) -> dict[str, float]:
        """The monitored quantities of ``model``'s encoder now."""
        m = self.cfg.monitor
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            bs = self.cfg.evaluation.batch_size
            f_eval = encode(model.encoder, self.x_eval, bs, self.device)
            out: dict[str, float] = {}
            if m.hsic or m.dhsic:
                out.update(independence_metrics(f_eval, hsic=m.hsic, dhsic=m.dhsic))
            if m.probe != "none":
                f_train = encode(model.encoder, self.x_probe, bs, self.device)
                if m.probe == "knn":
                    out["knn_acc"] = knn_accuracy(
                        f_train, self.y_probe, f_eval, self.y_eval, k=m.knn_k
                    )
                else:
                    out["linear_acc"] = ridge_accuracy(f_train, self.y_probe, f_eval, self.y_eval)
            out["repr_std_mean"] = float(f_eval.std(0).mean())
            # can the VCReg constraint be met (embedding std, hinge, RF scale / bandwidth)
            diag = embedding_diagnostics(model.projector, f_eval)
            out.update({k: v for k, v in diag.items() if v is not None})
        return out
