"""Evaluation of SSL representations: linear probes, k-NN, independence measures, run folders.

- :func:`linear_probe` — multinomial logistic regression (scikit-learn, L-BFGS) on standardized
  frozen representations of the in-domain training set; accuracy on the test set and on every
  out-of-domain set of the bundle.
- :func:`knn_accuracy` (cosine similarity, similarity-weighted vote with temperature 0.07 as in
  Wu et al. 2018 / DINO) and :func:`ridge_accuracy` (closed-form ridge classifier on one-hot
  targets): the cheap online probes of the trainer.
- :func:`independence_metrics` — mean pairwise HSIC (biased V-statistic, Gaussian kernels,
  median-heuristic bandwidth), mean normalized HSIC and dHSIC of a representation, via
  :mod:`vcreg.independence`.
- :func:`evaluate_run` — all of the above for a training run folder, written to ``eval.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

__all__ = [
    "dataset_tensors",
    "encode",
    "knn_accuracy",
    "ridge_accuracy",
    "independence_metrics",
    "linear_probe",
    "load_run",
    "evaluate_run",
]


def dataset_tensors(ds, limit: int | None = None) -> tuple[Tensor, Tensor]:
    """``(x, y)`` tensors of the first ``limit`` samples of a dataset of ``(x, y)`` pairs."""
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if hasattr(ds, "tensors"):
        x, y = ds.tensors[0], ds.tensors[1]
        return x[:n], torch.as_tensor(y[:n]).long()
    xs, ys = [], []
    for i in range(n):
        x, y = ds[i]
        xs.append(torch.as_tensor(x))
        ys.append(int(y))
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long)


@torch.no_grad()
def encode(
    encoder: nn.Module,
    data: Tensor | Any,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> Tensor:
    """Representations ``encoder(x)`` (float32, CPU) of a tensor or dataset, in eval mode.

    The encoder's train/eval mode is restored afterwards.
    """
    if device is None:
        p = next(encoder.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    was_training = encoder.training
    encoder.eval()
    try:
        outs = []
        if isinstance(data, Tensor):
            for i in range(0, len(data), batch_size):
                outs.append(encoder(data[i : i + batch_size].to(device)).float().cpu())
        else:
            from torch.utils.data import DataLoader

            for x, _y in DataLoader(data, batch_size=batch_size, shuffle=False):
                outs.append(encoder(x.to(device)).float().cpu())
        if not outs:
            raise ValueError("cannot encode an empty dataset")
        return torch.cat(outs)
    finally:
        encoder.train(was_training)


def knn_accuracy(
    train_feats: Tensor,
    train_y: Tensor,
    test_feats: Tensor,
    test_y: Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Weighted k-NN accuracy: cosine neighbours, votes ``exp(sim / temperature)``."""
    train_feats, test_feats = torch.as_tensor(train_feats), torch.as_tensor(test_feats)
    train_y, test_y = torch.as_tensor(train_y).long(), torch.as_tensor(test_y).long()
    k = min(int(k), len(train_feats))
    a = nn.functional.normalize(train_feats.float(), dim=1)
    b = nn.functional.normalize(test_feats.float(), dim=1)
    n_cls = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for i in range(0, len(b), 1024):
        sim = b[i : i + 1024] @ a.T
        top, idx = sim.topk(k, dim=1)
        votes = torch.zeros(len(top), n_cls)
        votes.scatter_add_(1, train_y[idx], (top / temperature).exp())
        correct += int((votes.argmax(1) == test_y[i : i + 1024]).sum())
    return correct / len(b)


def ridge_accuracy(
    train_feats: Tensor, train_y: Tensor, test_feats: Tensor, test_y: Tensor, alpha: float = 1.0
) -> float:
    """Closed-form ridge classifier on standardized features and one-hot targets:
    ``W = (XᵀX + αI)⁻¹ XᵀY`` (with intercept via centering); prediction ``argmax``."""
    x = torch.as_tensor(train_feats).double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mean) / std
    y_tr = torch.as_tensor(train_y).long()
    n_cls = int(max(y_tr.max(), torch.as_tensor(test_y).max())) + 1
    onehot = nn.functional.one_hot(y_tr, n_cls).double()
    ybar = onehot.mean(0)
    gram = x.T @ x + alpha * torch.eye(x.shape[1], dtype=x.dtype)
    w = torch.linalg.solve(gram, x.T @ (onehot - ybar))
    xt = (torch.as_tensor(test_feats).double() - mean) / std
    pred = (xt @ w + ybar).argmax(1)
    return float((pred == torch.as_tensor(test_y).long()).double().mean())


def independence_metrics(
    feats: Tensor | np.ndarray, hsic: bool = True, dhsic: bool = True
) -> dict[str, float]:
    """Independence of a representation's features (rows = samples).

    ``pairwise_hsic_mean``: mean over pairs i < j of the biased HSIC between features i and j;
    ``pairwise_nhsic_mean``: the same for normalized HSIC (in [0, 1]); ``dhsic``: the joint
    dHSIC V-statistic of all features. Gaussian kernels, median-heuristic bandwidths (the
    conventions of :mod:`vcreg.independence`). Constant features are dropped (their HSIC is 0 and
    normalized HSIC undefined); ``n_constant_features`` reports how many.
    """
    from vcreg.independence import dhsic as _dhsic
    from vcreg.independence import pairwise_hsic

    z = np.asarray(torch.as_tensor(feats).double().cpu().numpy())
    if z.ndim != 2 or z.shape[0] < 4:
        raise ValueError(f"need a (n >= 4, d) representation matrix, got shape {z.shape}")
    keep = z.std(0) > 1e-8 * max(1.0, float(np.abs(z).max()))
    out: dict[str, float] = {"n_constant_features": float((~keep).sum())}
    z = z[:, keep]
    if z.shape[1] < 2:
        return out
    iu = np.triu_indices(z.shape[1], k=1)
    if hsic:
        raw = np.asarray(pairwise_hsic(z, normalized=False))
        out["pairwise_hsic_mean"] = float(raw[iu].mean())
        nrm = np.asarray(pairwise_hsic(z, normalized=True))
        out["pairwise_nhsic_mean"] = float(nrm[iu].mean())
    if dhsic:
        out["dhsic"] = float(_dhsic(z))
    return out


def linear_probe(
    encoder: nn.Module,
    bundle: Any,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
    ood: bool = True,
    train_samples: int | None = None,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
    return_features: bool = False,
) -> dict[str, Any]:
    """Logistic-regression probe on frozen representations.

    Fits ``StandardScaler`` + multinomial ``LogisticRegression(C, lbfgs)`` on the encoder's
    representations of ``bundle.train`` (first ``train_samples`` if given) and reports accuracy
    on ``bundle.train`` (``train_acc``), ``bundle.test`` (``in_domain_acc``) and each OOD set
    (``ood_acc[name]``, plus ``ood_acc_mean``).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_tr, y_tr = dataset_tensors(bundle.train, train_samples)
    f_tr = encode(encoder, x_tr, batch_size, device).numpy()
    x_te, y_te = dataset_tensors(bundle.test)
    f_te = encode(encoder, x_te, batch_size, device).numpy()
    if not (np.isfinite(f_tr).all() and np.isfinite(f_te).all()):
        raise ValueError("the encoder produces NaN/Inf representations; cannot fit a probe")
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    clf.fit(f_tr, y_tr.numpy())
    res: dict[str, Any] = {
        "train_acc": float(clf.score(f_tr, y_tr.numpy())),
        "in_domain_acc": float(clf.score(f_te, y_te.numpy())),
        "n_train": len(f_tr),
        "n_test": len(f_te),
        "ood_acc": {},
    }
    feats = {"train": f_tr, "test": f_te}
    if ood:
        for name, ds in bundle.ood.items():
            x_o, y_o = dataset_tensors(ds)
            f_o = encode(encoder, x_o, batch_size, device).numpy()
            res["ood_acc"][name] = float(clf.score(f_o, y_o.numpy()))
        if res["ood_acc"]:
            res["ood_acc_mean"] = float(np.mean(list(res["ood_acc"].values())))
    if return_features:
        res["features"] = feats
    return res


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """``(config, model, checkpoint_state)`` of a run folder (weights from ``checkpoint.pt``,
    loaded with ``weights_only=True``)."""
    from vcreg.training import TrainConfig, build_model, load_checkpoint
    from vcreg.training.trainer import load_bundle

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder not found: {run_dir}")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    cfg = TrainConfig.from_dict(state["config"])
    bundle = load_bundle(cfg)
    model = build_model(cfg, bundle.input_shape)
    model.load_state_dict(state["model"])
    return cfg, model.to(device).eval(), state, bundle


def evaluate_run(
    run_dir: str | Path,
    device: str = "auto",
    ood: bool | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Linear probe (in-domain + OOD accuracy) and independence measures of a trained run;
    writes ``run_dir/eval.json`` atomically and returns its content."""
    from vcreg.training.checkpoint import atomic_write_text
    from vcreg.training.trainer import resolve_device

    t0 = time.time()
    dev = resolve_device(device)
    cfg, model, state, bundle = load_run(run_dir, dev)
    ev = cfg.evaluation
    say = print if progress else (lambda *_a, **_k: None)
    say(f"linear probe on {cfg.data.name} ({len(bundle.train)} train samples)...")
    probe = linear_probe(
        model.encoder,
        bundle,
        C=ev.C,
        max_iter=ev.max_iter,
        ood=ev.ood if ood is None else ood,
        batch_size=ev.batch_size,
        device=dev,
    )
    say("independence measures...")
    x_ind, _ = dataset_tensors(bundle.test, ev.independence_samples)
    feats = encode(model.encoder, x_ind, ev.batch_size, dev)
    try:
        independence = {"n_samples": len(feats), **independence_metrics(feats)}
    except ImportError as exc:  # vcreg.independence missing from this installation
        independence = {"n_samples": len(feats), "unavailable": f"{exc}"}
        say(f"independence measures unavailable: {exc}")
    result = {
        "run_dir": str(run_dir),
        "dataset": cfg.data.name,
        "epochs_trained": int(state["epoch"]),
        "epochs": cfg.epochs,
        **probe,
        "independence": independence,
        "settings": {
            "C": ev.C,
            "max_iter": ev.max_iter,
            "independence_samples": ev.independence_samples,
        },
        "wall_time_s": time.time() - t0,
    }
    atomic_write_text(Path(run_dir) / "eval.json", json.dumps(result, indent=1))
    return result
