"""SSL training runs shared by C2 (projector sweep), C3 (dynamics) and C4 (out-of-domain).

Each run is one cache unit in namespace ``"train"``: a VICReg/Barlow/W-MSE training on MNIST-1D
(``vcreg.training.train``) with online independence monitoring every epoch, followed by
``vcreg.training.evaluate_run`` (linear probe in-domain + on every OOD set, and pairwise HSIC /
normalized HSIC / dHSIC of the representation on held-out test samples). Because the unit key is
the run's configuration, C3 and C4 reuse the runs C2 trained.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from vcreg.evaluation import dataset_tensors, encode, independence_metrics, linear_probe
from vcreg.experiments.runner import Context, Unit
from vcreg.training import TrainConfig, load_bundle, train

__all__ = ["RunSpec", "c2_specs", "train_unit", "run_training", "spec_from_params"]

TRAIN_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """One projector configuration × seed."""

    group: str  # "width", "depth" or "loss"
    kind: str  # "trained", "frozen", "random_features"
    width: int  # embedding dimension k (for random features: d·m)
    depth: int  # number of Linear layers (1 for random features)
    loss: str  # "vicreg", "barlow", "wmse"
    seed: int
    spec: str = ""  # explicit MLP spec (loss comparison); default "-".join([width] * depth)

    @property
    def config_id(self) -> str:
        """Configuration without the seed (the x-axis of the sweeps)."""
        if self.kind == "random_features":
            return f"{self.loss}/rf/k={self.width}"
        return f"{self.loss}/{self.kind}/{self.mlp_spec}"

    @property
    def mlp_spec(self) -> str:
        return self.spec or "-".join([str(self.width)] * self.depth)

    @property
    def label(self) -> str:
        return f"{self.config_id} seed={self.seed}"


def c2_specs(s: dict[str, Any]) -> list[RunSpec]:
    """All runs of the C2 sweep (deduplicated): widths × kinds, depths, losses; × seeds."""
    out: list[RunSpec] = []
    d = s["repr_dim"]
    for seed in s["seeds"]:
        for kind in s["kinds"]:
            for w in s["widths"]:
                cap = s.get("mlp_max_width")
                if kind != "random_features" and cap is not None and w > cap:
                    continue
                if kind == "random_features":
                    m = max(1, w // d)
                    out.append(RunSpec("width", kind, d * m, 1, "vicreg", seed))
                else:
                    out.append(RunSpec("width", kind, w, 2, "vicreg", seed))
        for depth in s["depths"]:
            out.append(RunSpec("depth", "trained", s["depth_width"], depth, "vicreg", seed))
        for loss in s["losses"]:
            out.append(RunSpec("loss", "trained", 0, 0, loss, seed, spec=s["loss_spec"]))
    seen: dict[str, RunSpec] = {}
    for r in out:
        seen.setdefault(r.label + "|" + r.group, r)
    return list(seen.values())


def _train_config(r: RunSpec, s: dict[str, Any]) -> dict[str, Any]:
    """The ``TrainConfig`` dict of a run (device excluded: it is chosen at run time)."""
    if r.kind == "random_features":
        projector = {
            "kind": "random_features",
            "features_per_dim": r.width // s["repr_dim"],
            "bandwidth": s.get("rf_bandwidth", 1.0),
        }
    else:
        projector = {"kind": "mlp", "spec": r.mlp_spec, "frozen": r.kind == "frozen"}
    loss: dict[str, Any] = {"name": r.loss}
    if r.loss == "wmse":
        out_dim = int(r.mlp_spec.split("-")[-1])
        loss["params"] = {"w_size": max(2 * out_dim, 2)}
    return {
        "name": r.label.replace("/", "_").replace(" ", "_"),
        "seed": r.seed,
        "epochs": s["epochs"],
        "batch_size": s["batch_size"],
        "checkpoint_every": s["epochs"],
        "tensorboard": False,
        "data": {
            "name": s["dataset"],
            "train_samples": s["n_train"],
            "options": {"ood_samples": s["ood_samples"]},
        },
        "encoder": {"name": s["encoder"], "repr_dim": s["repr_dim"]},
        "projector": projector,
        "loss": loss,
        "optimizer": {"name": "adam", "lr": s["lr"]},
        "schedule": {"kind": "cosine", "warmup_epochs": 0},
        "monitor": {
            "every": 1,
            "samples": s["n_eval"],
            "hsic": True,
            "dhsic": True,
            "probe": "none",
        },
        "evaluation": {
            "ood": True,
            "independence_samples": s["n_eval"],
            "max_iter": s["probe_iter"],
        },
    }


def train_unit(r: RunSpec, s: dict[str, Any]) -> Unit:
    """The cache unit of one run; its key is the full training configuration."""
    cfg = _train_config(r, s)
    # rough seconds on 2 CPU cores: encoder steps + projector matmuls + probe/monitoring
    k = r.width
    per_step = 6e-9 * s["batch_size"] * (k * k * max(r.depth - 1, 0) + 64 * k) + 0.15
    steps = s["epochs"] * math.ceil(s["n_train"] / s["batch_size"])
    weight = steps * per_step + 8.0 + 0.5 * s["epochs"] * (s["n_eval"] / 256) ** 2
    return Unit(
        "train",
        {
            "config": cfg,
            "spec": r.__dict__,
            "probe_train": s["probe_train"],
            "version": TRAIN_VERSION,
        },
        r.label,
        weight=weight,
    )


def spec_from_params(params: dict[str, Any]) -> RunSpec:
    return RunSpec(**params["spec"])


def _num(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def run_training(unit: Unit, ctx: Context) -> dict[str, Any]:
    """Train, then measure: independence at init and along training, linear-probe accuracies.

    The encoder before training comes from ``train(..., stop_after_epochs=0)`` (the trainer's own
    seeded initialisation); independence is measured with ``vcreg.evaluation.independence_metrics``
    on the first ``n_eval`` test signals, the subset the trainer's monitor uses every epoch.
    """
    from sklearn.exceptions import ConvergenceWarning

    cfg_dict = dict(unit.params["config"])
    cfg_dict["device"] = ctx.device
    cfg = TrainConfig.from_dict(cfg_dict)
    bundle = load_bundle(cfg)
    x_eval, _ = dataset_tensors(bundle.test, cfg.monitor.samples)
    init = train(cfg, out_dir=None, progress=False, bundle=bundle, stop_after_epochs=0)
    init_ind = independence_metrics(encode(init.encoder, x_eval, device=ctx.device))
    result = train(cfg, out_dir=None, progress=False, bundle=bundle)
    if result.status != "completed":
        # the trainer turns SIGINT/SIGTERM into a clean stop; a partial run must not be cached
        # as a finished unit, and the whole reproduction stops (it resumes from the cache)
        raise KeyboardInterrupt(f"training of {unit.label} was interrupted ({result.status})")
    final_ind = independence_metrics(encode(result.encoder, x_eval, device=ctx.device))
    with warnings.catch_warnings():
        # a capped L-BFGS budget (tiny/quick presets) is a stated setting, not a problem
        warnings.simplefilter("ignore", ConvergenceWarning)
        probe = linear_probe(
            result.encoder,
            bundle,
            C=cfg.evaluation.C,
            max_iter=cfg.evaluation.max_iter,
            ood=True,
            train_samples=unit.params["probe_train"],
            device=ctx.device,
        )
    history = [{"epoch": 0, **{k: _num(init_ind.get(k)) for k in _IND_KEYS}}]
    for h in result.history:
        row: dict[str, Any] = {"epoch": h.get("epoch"), "loss": _num(h.get("loss"))}
        row.update({k: _num(h[k]) for k in _IND_KEYS if k in h})
        history.append(row)
    return {
        "history": history,
        "initial": {k: _num(v) for k, v in init_ind.items()},
        "final": {k: _num(v) for k, v in final_ind.items()},
        "acc_id": probe["in_domain_acc"],
        "acc_train": probe["train_acc"],
        "ood": probe["ood_acc"],
        "train_seconds": result.wall_time_s,
    }


_IND_KEYS = ("pairwise_hsic_mean", "pairwise_nhsic_mean", "dhsic", "n_constant_features")


def run_metrics(value: dict[str, Any]) -> dict[str, Any]:
    """Flat metrics of one run: hsic / nhsic / dhsic (final and initial) and accuracies."""
    fin, ini = value["final"], value["initial"]
    ood = value["ood"]
    return {
        "hsic": fin.get("pairwise_hsic_mean"),
        "nhsic": fin.get("pairwise_nhsic_mean"),
        "dhsic": fin.get("dhsic"),
        "hsic_initial": ini.get("pairwise_hsic_mean"),
        "nhsic_initial": ini.get("pairwise_nhsic_mean"),
        "dhsic_initial": ini.get("dhsic"),
        "n_constant": fin.get("n_constant_features"),
        "acc_id": value["acc_id"],
        "acc_ood": float(np.mean(list(ood.values()))) if ood else None,
        "ood": ood,
        "history": value["history"],
        "train_seconds": value["train_seconds"],
    }


def seeds_mean_sd(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
