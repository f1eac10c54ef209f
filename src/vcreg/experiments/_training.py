"""SSL training runs shared by C2 (projector sweep), C3 (dynamics) and C4 (out-of-domain).

Each run is one cache unit in namespace ``"train"``: a VICReg/Barlow/W-MSE training on MNIST-1D
(``vcreg.training.train``) with online independence monitoring every epoch, followed by
``vcreg.evaluation.evaluate_run`` (linear probe in-domain + on every OOD set, and pairwise HSIC /
normalized HSIC / dHSIC of the representation on held-out test samples). Because the unit key is
the run's configuration, C3 and C4 reuse the runs C2 trained.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from vcreg.data import load_dataset
from vcreg.evaluation import dataset_tensors, encode, linear_probe, ridge_accuracy
from vcreg.experiments.measures import embedding_diagnostics, independence_variants
from vcreg.experiments.presets import kind_widths
from vcreg.experiments.runner import Context, Unit
from vcreg.independence import dhsic_test
from vcreg.training import TrainConfig, load_bundle, train
from vcreg.training.feeding import subset
from vcreg.training.regime import RegimeWarning, hinge_balance

__all__ = [
    "RunSpec",
    "c2_specs",
    "control_specs",
    "memberships",
    "train_unit",
    "run_training",
    "spec_from_params",
    "image_specs",
    "image_available",
    "image_units",
    "image_records",
]

# 3: regime diagnostics (at-hinge fraction, off-diagonal excess), init probe; 4: the hinge target
# the batch allows (diagnostics.hinge_target) and the loss terms per epoch
TRAIN_VERSION = 4


@dataclass(frozen=True)
class RunSpec:
    """One projector configuration × seed.

    ``group``: "width", "depth", "loss" (the C2 sweeps), "control" (equal-budget controls of
    "VCReg causes X": VICReg with ``nu = 0``, no projector, InfoNCE, supervised cross-entropy)
    or "image" (the Fashion-MNIST part of C4).
    """

    group: str
    kind: str  # "trained", "frozen", "random_features", "none" (no projector), "head"
    width: int  # embedding dimension k (for random features: d·m)
    depth: int  # number of Linear layers (1 for random features, 0 without projector)
    loss: str  # "vicreg", "barlow", "wmse", "infonce", "supervised"
    seed: int
    spec: str = ""  # explicit MLP spec (loss comparison); default "-".join([width] * depth)
    nu: float | None = None  # VICReg covariance weight when not the official 1.0

    @property
    def method(self) -> str:
        return f"{self.loss}-nu{self.nu:g}" if self.nu is not None else self.loss

    @property
    def config_id(self) -> str:
        """Configuration without the seed (the x-axis of the sweeps)."""
        if self.kind == "random_features":
            return f"{self.method}/rf/k={self.width}"
        if self.kind in ("none", "head"):
            return f"{self.method}/{self.kind}"
        return f"{self.method}/{self.kind}/{self.mlp_spec}"

    @property
    def mlp_spec(self) -> str:
        return self.spec or "-".join([str(self.width)] * self.depth)

    @property
    def label(self) -> str:
        return f"{self.config_id} seed={self.seed}"


def _width_specs(s: dict[str, Any], seed: int) -> list[RunSpec]:
    out, d, cap = [], s["repr_dim"], s.get("mlp_max_width")
    for kind in s["kinds"]:
        for w in kind_widths(s, kind):
            if kind == "random_features":
                m = max(1, w // d)
                out.append(RunSpec("width", kind, d * m, 1, "vicreg", seed))
            elif cap is None or w <= cap:
                out.append(RunSpec("width", kind, w, 2, "vicreg", seed))
    return out


def control_specs(s: dict[str, Any], seed: int) -> list[RunSpec]:
    """Equal-budget controls (same encoder, data, epochs, batch, optimiser as the sweep):
    VICReg with ν = 0 and InfoNCE through the trained MLPs of every control width, VICReg
    without projector, supervised cross-entropy through a linear head."""
    out: list[RunSpec] = []
    controls = s.get("controls", [])
    for w in s.get("control_widths", []):
        if "nu0" in controls:
            out.append(RunSpec("control", "trained", w, 2, "vicreg", seed, nu=0.0))
        if "infonce" in controls:
            out.append(RunSpec("control", "trained", w, 2, "infonce", seed))
    if "no_projector" in controls:
        out.append(RunSpec("control", "none", s["repr_dim"], 0, "vicreg", seed))
    if "supervised" in controls:
        out.append(RunSpec("control", "head", 0, 1, "supervised", seed))
    return out


def c2_specs(s: dict[str, Any]) -> list[RunSpec]:
    """All runs of the C2 sweep: widths × kinds, depths, losses, controls; × seeds.

    A configuration that belongs to two sweeps (the 2-layer MLP of the width sweep is also a
    depth point) is one run: the first group that lists it owns it (deduplicated by
    configuration and seed, so the cache holds one unit per training run).
    """
    out: list[RunSpec] = []
    for seed in s["seeds"]:
        out += _width_specs(s, seed)
        for depth in s["depths"]:
            out.append(RunSpec("depth", "trained", s["depth_width"], depth, "vicreg", seed))
        for loss in s["losses"]:
            out.append(RunSpec("loss", "trained", 0, 0, loss, seed, spec=s["loss_spec"]))
        out += control_specs(s, seed)
    return list(_dedupe(out).values())


def _dedupe(specs: list[RunSpec]) -> dict[tuple[str, int], RunSpec]:
    seen: dict[tuple[str, int], RunSpec] = {}
    for r in specs:
        seen.setdefault((r.config_id, r.seed), r)
    return seen


def memberships(s: dict[str, Any]) -> dict[str, list[RunSpec]]:
    """Every sweep's runs, including the runs it shares with another sweep (for its tables)."""
    groups: dict[str, list[RunSpec]] = {"width": [], "depth": [], "loss": [], "control": []}
    for seed in s["seeds"]:
        groups["width"] += _width_specs(s, seed)
        groups["depth"] += [
            RunSpec("depth", "trained", s["depth_width"], dp, "vicreg", seed) for dp in s["depths"]
        ]
        groups["loss"] += [
            RunSpec("loss", "trained", 0, 0, lo, seed, spec=s["loss_spec"]) for lo in s["losses"]
        ]
        groups["control"] += control_specs(s, seed)
    return groups


def image_specs(s: dict[str, Any]) -> list[RunSpec]:
    """The image-domain runs (Fashion-MNIST, ``smallcnn``): VICReg through 2-layer MLPs of
    every ``kinds`` × :func:`kind_widths` × ``seeds`` (C4's domain; C2 and C3 reuse them in
    ``full``)."""
    return [
        RunSpec("image", kind, w, 2, "vicreg", seed)
        for seed in s["seeds"]
        for kind in s["kinds"]
        for w in kind_widths(s, kind)
    ]


def image_available(s: dict[str, Any]) -> str | None:
    """None when the image domain can run, else the reason it is skipped (with the fix)."""
    if not s:
        return "no image domain in this preset"
    try:
        load_dataset(s["dataset"], ood=False)
    except FileNotFoundError as exc:
        return (
            f"{s['dataset']} is not installed here ({exc}); install: `apt-get install "
            "dataset-fashion-mnist`"
        )
    return None


def image_units(img: dict[str, Any] | None) -> list[Unit]:
    """The image domain's training units ([] when absent or not installed)."""
    if not img or image_available(img) is not None:
        return []
    return [train_unit(r, img) for r in image_specs(img)]


def image_records(img: dict[str, Any], values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat records of the image-domain runs (as :func:`run_records` for MNIST-1D)."""
    return [
        {**r.__dict__, "config_id": r.config_id, "method": r.method, **run_metrics(v)}
        for r, v in zip(image_specs(img), values, strict=True)
    ]


def _projector_config(r: RunSpec, s: dict[str, Any], num_classes: int) -> dict[str, Any]:
    if r.kind == "random_features":
        return {
            "kind": "random_features",
            "features_per_dim": r.width // s["repr_dim"],
            "bandwidth": s.get("rf_bandwidth", 1.0),
            "scale": s.get("rf_scale", "standardized"),
            "standardize": s.get("rf_standardize", False),
        }
    if r.kind == "none":
        return {"kind": "identity"}
    if r.kind == "head":  # supervised: the projector is the linear classification head
        return {"kind": "mlp", "spec": str(num_classes), "batch_norm": False}
    if r.kind == "frozen" and not s.get("frozen_batch_norm", True):
        # without BatchNorm the frozen map's output scale follows the representation's, so the
        # encoder can settle it at the variance/covariance balance like a trained MLP's
        return {"kind": "mlp", "spec": r.mlp_spec, "frozen": True, "batch_norm": False}
    return {"kind": "mlp", "spec": r.mlp_spec, "frozen": r.kind == "frozen"}


def _loss_config(r: RunSpec, s: dict[str, Any]) -> dict[str, Any]:
    """VICReg runs (and their ν = 0 controls) take the preset's ``vicreg_params`` (λ, μ)."""
    loss: dict[str, Any] = {"name": r.loss}
    if r.loss == "vicreg":
        params = dict(s.get("vicreg_params") or {})
        if r.nu is not None:
            params["nu"] = r.nu
        if params:
            loss["params"] = params
    if r.loss == "wmse":
        out_dim = int(r.mlp_spec.split("-")[-1])
        loss["params"] = {"w_size": max(2 * out_dim, 2)}
    return loss


def _train_config(r: RunSpec, s: dict[str, Any]) -> dict[str, Any]:
    """The ``TrainConfig`` dict of a run (device excluded: it is chosen at run time)."""
    options = {"ood_samples": s["ood_samples"], **s.get("data_options", {})}
    return {
        "name": r.label.replace("/", "_").replace(" ", "_"),
        "seed": r.seed,
        "epochs": s["epochs"],
        "batch_size": s["batch_size"],
        "checkpoint_every": s["epochs"],
        "tensorboard": False,
        "data": {"name": s["dataset"], "train_samples": s["n_train"], "options": options},
        "encoder": {"name": s["encoder"], "repr_dim": s["repr_dim"]},
        "projector": _projector_config(r, s, s.get("num_classes", 10)),
        "loss": _loss_config(r, s),
        "optimizer": s.get("optimizer") or {"name": "adam", "lr": s["lr"]},
        "schedule": {"kind": "cosine", "warmup_epochs": s.get("warmup_epochs", 0)},
        "monitor": {
            # C3's curves; the trainer also measures the first epoch (C3's baseline)
            "every": s.get("monitor_every", 1),
            "samples": s["n_eval"],
            "hsic": True,
            "dhsic": True,
            # closed-form ridge probe every epoch: the accuracy-matched supervised control
            # and the sweep-hygiene checks compare runs by it
            "probe": "linear",
            "probe_train_samples": s["probe_train"] or s["n_train"],
        },
        "evaluation": {
            "ood": True,
            "independence_samples": s["n_eval"],
            "max_iter": s["probe_iter"],
        },
    }


# resnet18 (CIFAR stem, 32x32): measured 31x smallcnn's step time on one thread (batch 16,
# two views, forward + backward)
_STEP_SECONDS = {"cnn1d": 0.04, "smallcnn": 0.6, "resnet18": 19.0}


def train_unit(r: RunSpec, s: dict[str, Any]) -> Unit:
    """The cache unit of one run; its key is the full training configuration."""
    cfg = _train_config(r, s)
    # rough seconds on one CPU thread: encoder steps (measured: cnn1d 0.04 s, smallcnn 0.6 s
    # per step of 256) + projector matmuls + probe/monitoring
    k = r.width
    encoder_step = _STEP_SECONDS.get(s["encoder"], 0.1) * s["batch_size"] / 256
    per_step = 3e-10 * s["batch_size"] * (k * k * max(r.depth - 1, 0) + 64 * k) + encoder_step
    steps = s["epochs"] * math.ceil(s["n_train"] / s["batch_size"])
    monitored = s["epochs"] / s.get("monitor_every", 1) + 1
    weight = steps * per_step + 8.0 + 0.2 * monitored * (s["n_eval"] / 256) ** 2
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


def _measure(
    encoder, projector, x_eval, device: str, balance=None, test: bool = False
) -> dict[str, Any]:
    feats = encode(encoder, x_eval, device=device)
    diag = embedding_diagnostics(projector, feats, balance=balance)
    out = {
        **{k: _num(v) for k, v in independence_variants(feats).items()},
        **{k: _num(v) for k, v in diag.items()},
    }
    if test:  # calibrated joint-independence test (permutations; "auto" says why)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a saturated statistic: NaN p-value, kept as None
            res = dhsic_test(feats.double().numpy(), method="auto", random_state=0)
        out["dhsic_p"] = _num(res.p_value)
    return out


def _probe(result, bundle, cfg, train_samples, device: str) -> dict[str, Any]:
    with warnings.catch_warnings():
        # a capped L-BFGS budget (tiny/quick presets) is a stated setting, not a problem
        warnings.simplefilter("ignore", ConvergenceWarning)
        return linear_probe(
            result.encoder,
            bundle,
            C=cfg.evaluation.C,
            max_iter=cfg.evaluation.max_iter,
            ood=True,
            train_samples=train_samples,
            device=device,
        )


def run_training(unit: Unit, ctx: Context) -> dict[str, Any]:
    """Train, then measure: independence at init and along training, linear-probe accuracies.

    The encoder before training comes from ``train(..., stop_after_epochs=0)`` (the trainer's own
    seeded initialisation); independence (with the sensitivity variants) and the embedding
    diagnostics are measured on the first ``n_eval`` test signals, the subset the trainer's
    monitor uses every epoch.
    """
    cfg_dict = dict(unit.params["config"])
    cfg_dict["device"] = ctx.device
    if ctx.data_root is not None:  # where this process keeps the files: not part of the key
        cfg_dict["data"] = {**cfg_dict["data"], "root": ctx.data_root}
    # C3's sensitivity row: dHSIC under per-variable median bandwidths too. A measurement
    # added on top, outside the unit's key: older cache records lack it (C3 says so)
    cfg_dict["monitor"] = {**cfg_dict["monitor"], "dhsic_median": True}
    cfg = TrainConfig.from_dict(cfg_dict)
    bundle = load_bundle(cfg)
    x_eval, y_eval = dataset_tensors(bundle.test, cfg.monitor.samples)
    init = train(cfg, out_dir=None, progress=False, bundle=bundle, stop_after_epochs=0)
    balance = hinge_balance(cfg.loss.name, cfg.batch_size, cfg.loss.params)
    initial = _measure(init.encoder, init.projector, x_eval, ctx.device, balance)
    # the random-init encoder's probe (same architecture, seed and probe as the monitor's
    # per-epoch ridge probe): the "trained" precondition of the gated verdicts
    x_pr, y_pr = dataset_tensors(
        subset(bundle.train, cfg.data.train_samples), cfg.monitor.probe_train_samples
    )
    initial["linear_acc"] = ridge_accuracy(
        encode(init.encoder, x_pr, device=ctx.device),
        y_pr,
        encode(init.encoder, x_eval, device=ctx.device),
        y_eval,
    )
    with warnings.catch_warnings():
        # the regime is recorded and gated on (vcreg.experiments.preconditions): one warning per
        # training run would only bury the summary
        warnings.simplefilter("ignore", RegimeWarning)
        result = train(cfg, out_dir=None, progress=False, bundle=bundle)
    if result.status != "completed":
        # the trainer turns SIGINT/SIGTERM into a clean stop; a partial run must not be cached
        # as a finished unit, and the whole reproduction stops (it resumes from the cache)
        raise KeyboardInterrupt(f"training of {unit.label} was interrupted ({result.status})")
    final = _measure(result.encoder, result.projector, x_eval, ctx.device, balance, test=True)
    probe = _probe(result, bundle, cfg, unit.params["probe_train"], ctx.device)
    history = [{"epoch": 0, **{k: initial.get(k) for k in (*_IND_KEYS, "linear_acc")}}]
    for h in result.history:
        row: dict[str, Any] = {"epoch": h.get("epoch"), "loss": _num(h.get("loss"))}
        row.update({k: _num(h[k]) for k in (*_IND_KEYS, *_MONITOR_KEYS, *_LOSS_KEYS) if k in h})
        history.append(row)
    return {
        "history": history,
        "initial": initial,
        "final": final,
        "acc_id": probe["in_domain_acc"],
        "acc_train": probe["train_acc"],
        "ood": probe["ood_acc"],
        "train_seconds": result.wall_time_s,
    }


# the loss's own terms per epoch (unweighted, averaged over the epoch's steps): the regime's
# convergence check reads them (vcreg.training.regime)
_LOSS_KEYS = ("loss_invariance", "loss_variance", "loss_covariance")
_IND_KEYS = (
    "pairwise_hsic_mean",
    "pairwise_nhsic_mean",
    "dhsic",
    "dhsic_median",
    "dhsic_floor",
    "n_constant_features",
)
_MONITOR_KEYS = (
    "linear_acc",
    "repr_std_mean",
    "emb_std_mean",
    "emb_hinge_frac",
    "emb_at_hinge_frac",
    "emb_offdiag_excess",
    "emb_hinge_target",
    "emb_at_target_frac",
    "rf_scale_over_bw",
)


# flat record key -> key of the stored measures (final / initial)
_MEASURES = {
    "hsic": "pairwise_hsic_mean",
    "nhsic": "pairwise_nhsic_mean",
    "dhsic": "dhsic",
    "hsic_unbiased": "hsic_unbiased",
    "hsic_fixed_bw": "hsic_fixed_bw",
    "emb_std_mean": "emb_std_mean",
    "emb_hinge_frac": "emb_hinge_frac",
    "emb_at_hinge_frac": "emb_at_hinge_frac",
    "emb_offdiag_excess": "emb_offdiag_excess",
    "emb_hinge_target": "emb_hinge_target",
    "emb_at_target_frac": "emb_at_target_frac",
    "emb_std_q10": "emb_std_q10",
    "emb_dim": "emb_dim",
    "repr_std_median": "repr_std_median",
    "rf_scale_over_bw": "rf_scale_over_bw",
    "dhsic_p": "dhsic_p",
}


def run_metrics(value: dict[str, Any]) -> dict[str, Any]:
    """Flat metrics of one run: the measures after training and at initialization
    (``<name>_initial``), probe accuracies, the monitored curves."""
    fin, ini = value["final"], value["initial"]
    ood = value["ood"]
    out: dict[str, Any] = {k: fin.get(v) for k, v in _MEASURES.items()}
    out.update({f"{k}_initial": ini.get(v) for k, v in _MEASURES.items()})
    monitored = [
        h.get("linear_acc")
        for h in value["history"]
        if h.get("linear_acc") is not None and h.get("epoch", 0) >= 1
    ]
    out.update(
        n_constant=fin.get("n_constant_features"),
        acc_id=value["acc_id"],
        acc_ood=float(np.mean(list(ood.values()))) if ood else None,
        acc_monitor=monitored[-1] if monitored else None,
        acc_init=ini.get("linear_acc"),
        ood=ood,
        history=value["history"],
        train_seconds=value["train_seconds"],
    )
    return out


def seeds_mean_sd(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0
