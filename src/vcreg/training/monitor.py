"""Online monitoring during training, as a trainer callback.

Every ``monitor.every`` epochs (and after the first and the last) the encoder's representation of a fixed
held-out subset (the first ``monitor.samples`` test samples) is measured by
:class:`vcreg.metrics.RepresentationMonitor` (the object Lightning and plain-loop users get):
mean pairwise HSIC and normalized HSIC (``pairwise_hsic_mean``, ``pairwise_nhsic_mean``, their
historical names; ``nhsic_median``, ``nhsic_max``), dHSIC, the effective rank, the mean feature
std (``repr_std_mean``), collapsed / constant features, the embedding diagnostics of
:func:`vcreg.diagnostics.embedding_diagnostics` (embedding std, fraction of dimensions meeting
VICReg's variance hinge, random-feature input scale relative to the bandwidth), and a probe
accuracy (``"knn"``: cosine k-NN, ``"linear"``: closed-form ridge) fitted on the
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
from vcreg.metrics import RepresentationMonitor
from vcreg.models import SSLModel
from vcreg.training.callbacks import Callback, TrainState
from vcreg.training.config import TrainConfig
from vcreg.training.regime import hinge_balance

__all__ = ["Monitor"]

# RepresentationMonitor key -> the name metrics.jsonl has always used (experiments read these)
_RENAMED = {
    "hsic_mean": "pairwise_hsic_mean",
    "nhsic_mean": "pairwise_nhsic_mean",
    "std_mean": "repr_std_mean",
}


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
        self.balance = hinge_balance(self.cfg.loss.name, self.cfg.batch_size, self.cfg.loss.params)
        self.x_eval, self.y_eval = dataset_tensors(state.bundle.test, m.samples)
        self.x_probe, self.y_probe = dataset_tensors(state.train_data, m.probe_train_samples)

    def due(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) is measured."""
        every = self.cfg.monitor.every
        # the first epoch too: the baseline of "independence rises during training" (C3)
        last = epoch + 1 == self.cfg.epochs
        return self.enabled and ((epoch + 1) % every == 0 or epoch == 0 or last)

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
            out.update(self._representation(f_eval))
            if m.probe != "none":
                f_train = encode(model.encoder, self.x_probe, bs, self.device)
                if m.probe == "knn":
                    out["knn_acc"] = knn_accuracy(
                        f_train, self.y_probe, f_eval, self.y_eval, k=m.knn_k
                    )
                else:
                    out["linear_acc"] = ridge_accuracy(f_train, self.y_probe, f_eval, self.y_eval)
            # can the VCReg constraint be met (embedding std, hinge, RF scale / bandwidth)
            diag = embedding_diagnostics(model.projector, f_eval, balance=self.balance)
            out.update({k: v for k, v in diag.items() if v is not None})
        return out

    def _representation(self, feats: torch.Tensor) -> dict[str, float]:
        # rank 0 alone measures: no cross-rank sync (the other ranks are not in this call)
        mon = RepresentationMonitor(
            max(4, len(feats)), hsic=self.cfg.monitor.hsic, sync_on_compute=False
        )
        mon.update(feats)
        values = mon.compute()
        values.pop("n_samples")
        out = {_RENAMED.get(k, k): v for k, v in values.items()}
        m = self.cfg.monitor
        if m.dhsic:  # the dHSIC rule of eval.json (independence_metrics owns it)
            d = independence_metrics(feats, hsic=False, dhsic=True, dhsic_median=m.dhsic_median)
            out.update({k: v for k, v in d.items() if k.startswith("dhsic")})
        return out
