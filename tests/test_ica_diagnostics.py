"""VCRegICA's ground-truth-free quality diagnostics (vcreg.ica.diagnostics), n_init, warnings."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from vcreg.ica import VCRegICA, amari_distance, make_ica_problem, whiten_unit_variance
from vcreg.ica.diagnostics import (
    FIXED_POINT_STEPS,
    diagnose,
    fixed_point_distance,
    negentropy,
    predicted_amari,
)
from vcreg.ica.problems import random_rotation


def _near_gaussian_pair(n=1000, seed=0):
    """Two generalized-Gaussian sources with β = 1.9 and 2.1 (excess kurtosis ≈ ±0.1)."""
    rng = np.random.default_rng(seed)
    cols = []
    for beta in (1.9, 2.1):
        cols.append(rng.choice([-1.0, 1.0], n) * rng.gamma(1 / beta, size=n) ** (1 / beta))
    S = np.column_stack(cols)
    A = np.array([[1.0, 0.6], [0.4, 1.0]])
    return S, A, S @ A.T


def test_fixed_point_distance_is_sklearn_fastica_steps():
    """Reference: scikit-learn's symmetric FastICA (logcosh) run for the same number of steps
    from the same orthogonal start, on the same whitened data."""
    _, _, X = make_ica_problem("laplace", 1500, 4, "well", random_state=1)
    Xw, _, _ = whiten_unit_variance(X, 4)
    W0 = random_rotation(4, np.random.RandomState(3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = FastICA(
            whiten=False, fun="logcosh", w_init=W0.T, max_iter=FIXED_POINT_STEPS, tol=0.0
        ).fit(Xw)
    assert fixed_point_distance(Xw, W0) == pytest.approx(
        amari_distance(ref.components_, W0), rel=1e-6
    )


def test_fixed_point_distance_small_at_sources_large_at_a_mixture():
    S, A, X = make_ica_problem("uniform", 4000, 3, "well", random_state=0)
    Xw, K, _ = whiten_unit_variance(X, 3)
    # the true unmixing in whitened coordinates: the orthogonal part of (K^T A)^-1
    u, _, vt = np.linalg.svd(np.linalg.inv(K.T @ A).T)
    W_true = u @ vt
    assert fixed_point_distance(Xw, W_true) < 0.03
    c, s = math.cos(math.pi / 8), math.sin(math.pi / 8)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # 22.5° mixing of two outputs
    # the steps go back to the sources: the distance is the Amari distance of the rotation
    assert fixed_point_distance(Xw, W_true @ R) == pytest.approx(
        amari_distance(R, np.eye(3)), abs=0.03
    )


def test_predicted_amari_matches_fastica_error_and_flags_gaussian_sources():
    """The asymptotic formula against the Amari distance FastICA actually reaches (Monte Carlo
    over seeds), and Gaussian sources are predicted inseparable."""
    errs, preds = [], []
    for seed in range(8):
        S, A, X = make_ica_problem("laplace", 2000, 3, "well", random_state=seed)
        W = FastICA(whiten="unit-variance", random_state=seed, max_iter=1000).fit(X).components_
        errs.append(amari_distance(W, A))
        preds.append(predicted_amari(S))
    assert 0.6 < np.mean(preds) / np.mean(errs) < 1.6
    gauss = np.random.default_rng(0).normal(size=(20_000, 3))
    assert predicted_amari(gauss[:1000]) > 0.15
    # negentropy: ~0 for Gaussian columns (sampling error ~5e-6 at n = 20,000), ~1e-3 for Laplace
    assert negentropy(gauss).max() < 1e-4 < 5e-4 < negentropy(S).min()


def test_hard_near_gaussian_case_warns():
    _, A, X = _near_gaussian_pair(seed=2)
    with pytest.warns(ConvergenceWarning, match="close to Gaussian"):
        est = VCRegICA(random_state=0).fit(X)
    assert not est.diagnostics_["reliable"] and est.diagnostics_["reasons"]
    assert amari_distance(est.components_, A) > 0.1  # the warning is right: the fit is poor


def test_spurious_minimum_warns():
    """L-BFGS from a random rotation on d = 5 uniform sources stalls in a fully-mixed spurious
    minimum (docs/sections/ica.md); the fixed-point distance names it."""
    _, A, X = make_ica_problem("uniform", 1000, 5, "well", random_state=2)
    with pytest.warns(ConvergenceWarning, match="spurious minimum"):
        est = VCRegICA(optimizer="lbfgs", random_state=2).fit(X)
    assert amari_distance(est.components_, A) > 0.1


def test_clean_laplace_case_does_not_warn():
    _, A, X = make_ica_problem("laplace", 2000, 3, "well", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = VCRegICA(random_state=0).fit(X)
    assert est.diagnostics_["reliable"] and est.diagnostics_["reasons"] == []
    assert amari_distance(est.components_, A) < 0.05


def test_diagnostics_are_a_function_of_the_data_and_the_fit_only():
    """No ground truth: recomputed from X and the fitted attributes alone, they match; the true
    sources/mixing never reach the estimator (fit(X) only)."""
    _, _, X = make_ica_problem("student-t3", 1200, 4, "ill", random_state=2)
    est = VCRegICA(random_state=1, n_init=2).fit(X)
    Xw = (X - est.mean_) @ est.whitening_.T
    again = diagnose(Xw, est.unmixing_.T, others=[])
    for key in ("fixed_point_distance", "predicted_amari", "negentropy"):
        np.testing.assert_allclose(again[key], est.diagnostics_[key], rtol=1e-6, atol=1e-9)
    assert isinstance(est.diagnostics_["restart_distance"], float)


def test_n_init_keeps_lowest_loss_and_is_validated():
    _, _, X = make_ica_problem("uniform", 600, 3, "well", random_state=4)
    one = VCRegICA(random_state=0, n_init=1).fit(X)
    three = VCRegICA(random_state=0, n_init=3).fit(X)
    assert one.diagnostics_["restart_distance"] is None
    assert three.loss_ <= one.loss_  # restart 0 of three is the single fit (same rng stream)
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="n_init"):
            VCRegICA(n_init=bad).fit(X)
    with pytest.warns(FutureWarning, match="n_restarts"):
        old = VCRegICA(random_state=0, n_restarts=3).fit(X)
    np.testing.assert_array_equal(old.components_, three.components_)
    with pytest.raises(ValueError, match="n_restarts"):
        VCRegICA(n_restarts=0).fit(X)
