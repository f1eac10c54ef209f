"""Evaluation of SSL representations: linear probes, k-NN, independence measures.

- :func:`linear_probe` — multinomial logistic regression (:class:`LogisticProbe`: torch L-BFGS,
  scikit-learn's objective) on standardized frozen representations of the in-domain training
  set; accuracy on the test set and on every out-of-domain set of the bundle.
- :func:`knn_accuracy` (cosine similarity, similarity-weighted vote with temperature 0.07 as in
  Wu et al. 2018 / DINO) and :func:`ridge_accuracy` (closed-form ridge classifier on one-hot
  targets): the cheap online probes of the trainer.
- :func:`independence_metrics` — mean pairwise HSIC (biased V-statistic, Gaussian kernels,
  median-heuristic bandwidth), mean normalized HSIC and dHSIC of a representation, via
  :mod:`vcreg.independence`.

This module knows nothing of training (it sits below :mod:`vcreg.training` in the layer order);
evaluating a training run folder is :func:`vcreg.training.evaluate_run`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from vcreg.independence import SaturationWarning, normalize_hsic_matrix, pairwise_hsic
from vcreg.independence import dhsic as _dhsic

__all__ = [
    "dataset_tensors",
    "encode",
    "knn_accuracy",
    "ridge_accuracy",
    "independence_metrics",
    "linear_probe",
    "LogisticProbe",
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
    feats: Tensor | np.ndarray, hsic: bool = True, dhsic: bool = True, dhsic_median: bool = False
) -> dict[str, float]:
    """Independence of a representation's features (rows = samples).

    ``pairwise_hsic_mean``: mean over pairs i < j of the biased HSIC between features i and j;
    ``pairwise_nhsic_mean``: the same for normalized HSIC (in [0, 1], via
    :func:`vcreg.independence.normalize_hsic_matrix`); ``dhsic``: the joint dHSIC V-statistic of
    all features with the ``"joint"`` bandwidth rule (per-variable median x sqrt(d): the median
    rule saturates at 1/n for d >~ 16; one fixed rule so values are comparable across epochs;
    NaN with a SaturationWarning if even that saturates). Gaussian kernels, median-heuristic
    bandwidths otherwise (the conventions of :mod:`vcreg.independence`). Constant features are
    dropped (their HSIC is 0 and normalized HSIC undefined); ``n_constant_features`` counts them.
    ``dhsic_median`` adds ``dhsic_median``, dHSIC under per-variable median-heuristic bandwidths
    in the R package dHSIC's convention (``bandwidth="dhsic"``: sigma_j = sqrt(median|x_a -
    x_b|^2 / 2), its default; NaN when saturated, i.e. within float noise of its floor), and that
    floor ``dhsic_floor`` = 1/n (the value of a joint kernel matrix equal to the identity).
    """
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
        # normalized HSIC_ij / sqrt(HSIC_ii HSIC_jj) from the same matrix (one kernel pass)
        out["pairwise_nhsic_mean"] = float(np.asarray(normalize_hsic_matrix(raw))[iu].mean())
    if dhsic:
        out["dhsic"] = float(_dhsic(z, bandwidth="joint"))
    if dhsic_median:
        with warnings.catch_warnings():
            # asked for to show the saturation: recorded as NaN next to its floor, not warned
            warnings.simplefilter("ignore", SaturationWarning)
            out["dhsic_median"] = float(_dhsic(z, bandwidth="dhsic"))
        out["dhsic_floor"] = 1.0 / z.shape[0]
    return out


class LogisticProbe:
    """Multinomial logistic regression on standardized features, fitted by full-batch L-BFGS.

    Minimizes ``Σ_i CE(W x_i + b, y_i) + ||W||² / (2C)`` (intercept not penalized) — the same
    objective as scikit-learn's ``LogisticRegression(C=C)`` on ``StandardScaler`` features —
    in float64 with ``torch.optim.LBFGS`` (strong-Wolfe line search). Standardization uses the
    training features' mean and (biased) std.
    """

    def __init__(self, C: float = 1.0, max_iter: int = 1000, tol: float = 1e-5) -> None:
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.C, self.max_iter, self.tol = float(C), int(max_iter), float(tol)

    def fit(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> LogisticProbe:
        x = torch.as_tensor(x).double()
        y = torch.as_tensor(y).long()
        if x.ndim != 2 or len(x) != len(y) or len(x) < 2:
            raise ValueError(
                f"need features (n >= 2, d) and n labels, got {tuple(x.shape)}, {tuple(y.shape)}"
            )
        if not torch.isfinite(x).all():
            raise ValueError("features contain NaN/Inf; cannot fit a probe")
        self.mean_, self.std_ = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-12)
        x = (x - self.mean_) / self.std_
        self.n_classes_ = int(y.max()) + 1
        n = len(x)
        w = torch.zeros(x.shape[1], self.n_classes_, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(self.n_classes_, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS(
            [w, b],
            lr=1.0,
            max_iter=self.max_iter,
            history_size=20,
            tolerance_grad=self.tol,
            tolerance_change=1e-12,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            # divided by n: same minimizer, better-scaled tolerances
            loss = (
                nn.functional.cross_entropy(x @ w + b, y, reduction="sum")
                + (w * w).sum() / (2 * self.C)
            ) / n
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        self.coef_, self.intercept_ = w.detach(), b.detach()
        return self

    def predict(self, x: Tensor | np.ndarray) -> Tensor:
        x = (torch.as_tensor(x).double() - self.mean_) / self.std_
        return (x @ self.coef_ + self.intercept_).argmax(1)

    def score(self, x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> float:
        return float((self.predict(x) == torch.as_tensor(y).long()).double().mean())


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
) -> dict[str, Any]:
    """Logistic-regression probe on frozen representations (:class:`LogisticProbe`).

    Fits on the encoder's representations of ``bundle.train`` (first ``train_samples`` if
    given) and reports accuracy on ``bundle.train`` (``train_acc``), ``bundle.test``
    (``in_domain_acc``) and each OOD set (``ood_acc[name]``, plus ``ood_acc_mean``).
    """
    x_tr, y_tr = dataset_tensors(bundle.train, train_samples)
    f_tr = encode(encoder, x_tr, batch_size, device)
    x_te, y_te = dataset_tensors(bundle.test)
    f_te = encode(encoder, x_te, batch_size, device)
    if not (torch.isfinite(f_tr).all() and torch.isfinite(f_te).all()):
        raise ValueError("the encoder produces NaN/Inf representations; cannot fit a probe")
    clf = LogisticProbe(C=C, max_iter=max_iter).fit(f_tr, y_tr)
    res: dict[str, Any] = {
        "train_acc": clf.score(f_tr, y_tr),
        "in_domain_acc": clf.score(f_te, y_te),
        "n_train": len(f_tr),
        "n_test": len(f_te),
        "ood_acc": {},
    }
    if ood:
        for name, ds in bundle.ood.items():
            x_o, y_o = dataset_tensors(ds)
            res["ood_acc"][name] = clf.score(encode(encoder, x_o, batch_size, device), y_o)
        if res["ood_acc"]:
            res["ood_acc_mean"] = float(np.mean(list(res["ood_acc"].values())))
    return res
