"""Probes and independence summaries of vcreg.evaluation against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.neighbors import KNeighborsClassifier
from torch.utils.data import TensorDataset

from vcreg.evaluation import (
    LogisticProbe,
    encode,
    independence_metrics,
    knn_accuracy,
    linear_probe,
    ridge_accuracy,
)


def _blobs(n, d=5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, d)) * 2
    y = rng.integers(0, 4, n)
    x = centers[y] + rng.normal(size=(n, d))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


def test_knn_matches_sklearn_weighted_cosine():
    xtr, ytr = _blobs(300)
    xte, yte = _blobs(100, seed=1)
    t = 0.07
    ref = KNeighborsClassifier(
        n_neighbors=10,
        metric="cosine",
        algorithm="brute",
        weights=lambda dist: np.exp((1.0 - dist) / t),
    ).fit(xtr.numpy(), ytr.numpy())
    expected = ref.score(xte.numpy(), yte.numpy())
    assert knn_accuracy(xtr, ytr, xte, yte, k=10, temperature=t) == pytest.approx(expected)


def test_ridge_matches_sklearn():
    xtr, ytr = _blobs(300)
    xte, yte = _blobs(100, seed=1)
    x = xtr.double().numpy()
    mean, std = x.mean(0), x.std(0, ddof=1)
    ref = RidgeClassifier(alpha=2.0).fit((x - mean) / std, ytr.numpy())
    expected = ref.score((xte.double().numpy() - mean) / std, yte.numpy())
    assert ridge_accuracy(xtr, ytr, xte, yte, alpha=2.0) == pytest.approx(expected)


def test_linear_probe_matches_sklearn_pipeline():
    xtr, ytr = _blobs(400)
    xte, yte = _blobs(150, seed=1)
    xood, yood = _blobs(120, seed=2)
    xood = xood * 1.5

    class B:
        train = TensorDataset(xtr, ytr)
        test = TensorDataset(xte, yte)
        ood = {"scaled": TensorDataset(xood, yood)}

    enc = torch.nn.Linear(5, 3)
    res = linear_probe(enc, B, C=0.5, max_iter=500)
    assert "shear" not in res["ood_acc"]
    with torch.no_grad():
        f = [enc(x).numpy() for x in (xtr, xte, xood)]
    mu, sd = f[0].mean(0), f[0].std(0)
    clf = LogisticRegression(C=0.5, max_iter=500).fit((f[0] - mu) / sd, ytr.numpy())
    assert res["in_domain_acc"] == pytest.approx(clf.score((f[1] - mu) / sd, yte.numpy()))
    assert res["ood_acc"]["scaled"] == pytest.approx(clf.score((f[2] - mu) / sd, yood.numpy()))
    assert res["ood_acc_mean"] == res["ood_acc"]["scaled"]


def test_logistic_probe_matches_sklearn_solution():
    xtr, ytr = _blobs(300, d=4)
    x = xtr.double().numpy()
    probe = LogisticProbe(C=0.3, max_iter=500, tol=1e-10).fit(xtr, ytr)
    mu, sd = x.mean(0), x.std(0)
    ref = LogisticRegression(C=0.3, tol=1e-10, max_iter=5000).fit((x - mu) / sd, ytr.numpy())
    np.testing.assert_allclose(probe.coef_.numpy(), ref.coef_.T, atol=1e-4)
    np.testing.assert_allclose(
        probe.intercept_.numpy() - probe.intercept_.numpy().mean(),
        ref.intercept_ - ref.intercept_.mean(),
        atol=1e-4,
    )


def test_encode_restores_mode_and_batches():
    enc = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    enc.train()
    x = torch.randn(10, 4)
    out = encode(enc, x, batch_size=3)
    assert enc.training
    enc.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, enc(x))
    out_ds = encode(enc, TensorDataset(x, torch.zeros(10)), batch_size=4)
    torch.testing.assert_close(out_ds, out)


def test_independence_metrics_plain_formula():
    rng = np.random.default_rng(0)
    n = 60
    a = rng.normal(size=n)
    z = np.stack([a, a**2 + 0.1 * rng.normal(size=n), rng.normal(size=n), np.ones(n)], 1)

    def gram(v):
        d2 = (v[:, None] - v[None, :]) ** 2
        sigma = np.median(np.sqrt(d2[np.triu_indices(n, 1)]))  # median distance (Gretton)
        return np.exp(-d2 / (2 * sigma**2))

    h = np.eye(n) - 1 / n
    ks = [h @ gram(z[:, i]) @ h for i in range(3)]
    hs = np.array([[np.sum(ks[i] * ks[j]) / n**2 for j in range(3)] for i in range(3)])
    pairs = [(0, 1), (0, 2), (1, 2)]
    out = independence_metrics(z)
    assert out["n_constant_features"] == 1
    assert out["pairwise_hsic_mean"] == pytest.approx(
        np.mean([hs[i, j] for i, j in pairs]), rel=1e-6
    )
    nrm = [hs[i, j] / np.sqrt(hs[i, i] * hs[j, j]) for i, j in pairs]
    assert out["pairwise_nhsic_mean"] == pytest.approx(np.mean(nrm), rel=1e-6)
    assert out["dhsic"] > 0


def test_dhsic_under_per_variable_medians_and_its_floor():
    """``dhsic_median``: the dHSIC V-statistic with each variable's median-heuristic bandwidth in
    R dHSIC's convention sqrt(median(d²)/2), written out here; NaN (no warning) once it
    saturates, next to its floor 1/n."""
    import warnings

    rng = np.random.default_rng(1)
    n = 50
    a = rng.normal(size=n)
    z = np.stack([a, a**2 + 0.1 * rng.normal(size=n), rng.normal(size=n)], 1)

    def gram(v):
        d2 = (v[:, None] - v[None, :]) ** 2
        sigma = np.sqrt(np.median(d2[np.triu_indices(n, 1)]) / 2)  # R dHSIC (1225 pairs: odd)
        return np.exp(-d2 / (2 * sigma**2))

    ks = [gram(z[:, j]) for j in range(3)]
    t1 = np.mean(ks[0] * ks[1] * ks[2])
    t2 = np.prod([k.mean() for k in ks])
    t3 = 2 * np.mean(np.prod([k.mean(1) for k in ks], 0))
    out = independence_metrics(z, dhsic_median=True)
    assert out["dhsic_median"] == pytest.approx(t1 + t2 - t3, rel=1e-6)
    assert out["dhsic_floor"] == 1 / n
    assert "dhsic_median" not in independence_metrics(z)  # off by default
    wide = rng.normal(size=(256, 64))  # d = 64: the product kernel is ~ the identity
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = independence_metrics(wide, hsic=False, dhsic=False, dhsic_median=True)
    assert np.isnan(out["dhsic_median"]) and out["dhsic_floor"] == 1 / 256
