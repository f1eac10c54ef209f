"""Tests for vcreg.ica (VCRegICA, metrics, problems) and the `vcreg ica` CLI."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from picard import amari_distance as picard_amari
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from vcreg.functional import covariance_loss
from vcreg.ica import (
    SOURCE_FAMILIES,
    VCRegICA,
    amari_distance,
    make_ica_problem,
    mean_corr_coef,
    whiten_unit_variance,
)
from vcreg.ica.contrast import RandomFeatures
from vcreg.ica.contrast import pairwise_blocks as _pairwise_blocks
from vcreg.ica.problems import random_rotation as _random_rotation
from vcreg.ica.solver import jacobi_sweeps as _jacobi_sweeps
from vcreg.projectors import RandomFeatureProjector


# ------------------------------------------------------------------------------------ metrics
def _amari_classic_loops(W, A):
    P = np.abs(np.asarray(W) @ np.asarray(A))
    k = P.shape[0]
    total = 0.0
    for i in range(k):
        total += sum(P[i, j] for j in range(k)) / max(P[i, j] for j in range(k)) - 1
    for j in range(k):
        total += sum(P[i, j] for i in range(k)) / max(P[i, j] for i in range(k)) - 1
    return total / (2 * k * (k - 1))


def test_amari_matches_formulas_and_picard():
    rng = np.random.default_rng(0)
    W, A = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    assert amari_distance(W, A) == pytest.approx(_amari_classic_loops(W, A), rel=1e-12)
    assert amari_distance(W, A, kind="squared") == pytest.approx(picard_amari(W, A), rel=1e-12)
    # zero for scaled permutations, regardless of sign
    Pm = np.eye(4)[[2, 0, 3, 1]] * np.array([1.0, -2.0, 0.5, 3.0])[:, None]
    assert amari_distance(Pm @ np.linalg.inv(A), A) == pytest.approx(0.0, abs=1e-10)
    # maximal (=1) for the all-ones product
    assert amari_distance(np.ones((3, 3)), np.eye(3)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="square product"):
        amari_distance(np.ones((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="kind"):
        amari_distance(W, A, kind="nope")


def test_mean_corr_coef_hungarian_and_spearman():
    rng = np.random.default_rng(1)
    S = rng.laplace(size=(500, 3))
    S_hat = S[:, [2, 0, 1]] * np.array([-2.0, 0.5, 3.0])
    assert mean_corr_coef(S_hat, S) == pytest.approx(1.0)
    # monotone distortion: Spearman stays 1, Pearson drops
    assert mean_corr_coef(np.exp(S_hat), S, method="spearman") == pytest.approx(1.0)
    assert mean_corr_coef(np.exp(S_hat), S) < 0.99
    # plain formula: best assignment of |corr| for 2 columns
    T = rng.normal(size=(500, 2))
    C = np.abs(np.corrcoef(T.T, S[:, :2].T)[:2, 2:])
    expected = max(C[0, 0] + C[1, 1], C[0, 1] + C[1, 0]) / 2
    assert mean_corr_coef(T, S[:, :2]) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="same number of rows"):
        mean_corr_coef(S[:10], S)
    with pytest.raises(ValueError, match="NaN"):
        mean_corr_coef(np.full((5, 2), np.nan), S[:5, :2])


def test_whitening_is_unit_variance():
    _, _, X = make_ica_problem("laplace", 300, 4, "ill", random_state=0)
    Xw, K, mean = whiten_unit_variance(X, 3)
    np.testing.assert_allclose(np.cov(Xw.T), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(mean, X.mean(0))
    with pytest.raises(ValueError, match="rank"):
        whiten_unit_variance(np.c_[X[:, :2], X[:, :2]], 4)


def test_pairwise_objective_equals_cross_blocks_of_covariance_loss():
    """Pairwise (non-debiased) contrast = c(g(Y)) − within-block terms, via covariance_loss."""
    torch.manual_seed(0)
    y = torch.randn(200, 3, dtype=torch.float64) ** 3
    proj = RandomFeatureProjector(3, 8, seed=0, scale="kernel")
    z = proj(y)
    k, m = 3, 8
    total = covariance_loss(z, method="cov") * (k * m)
    within = sum(covariance_loss(z[:, i * m : (i + 1) * m], method="cov") * m for i in range(k))
    expected = (total - within) / (k * (k - 1))
    got = _pairwise_blocks(z, k, m, debias=False)
    assert float(got) == pytest.approx(float(expected), rel=1e-9)
    # debiased version subtracts the same-sample terms of the Gram form (written with loops)
    zc = (z - z.mean(0)).reshape(200, k, m)
    diag = sum(
        float((zc[:, i].pow(2).sum(1) * zc[:, j].pow(2).sum(1)).sum())
        for i in range(k)
        for j in range(k)
        if i != j
    )
    deb = _pairwise_blocks(z, k, m, debias=True)
    assert float(deb) == pytest.approx(float(got) - diag / (199**2 * k * (k - 1)), rel=1e-9)


def test_block_covariance_norms_against_numpy_cov():
    """The helper shared by the ICA contrast and C1: ‖Cov(z_i, z_j)‖_F² from numpy's cov."""
    from vcreg.functional import block_covariance_norms

    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 3, 4)) ** 3
    C = np.cov(z.reshape(50, 12), rowvar=False)
    expected = np.array(
        [[(C[4 * i : 4 * i + 4, 4 * j : 4 * j + 4] ** 2).sum() for j in range(3)] for i in range(3)]
    )
    got = block_covariance_norms(torch.as_tensor(z)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    zc = z - z.mean(0)
    r = (zc**2).sum(2)  # same-sample norms
    deb = block_covariance_norms(torch.as_tensor(z), debias=True).numpy()
    np.testing.assert_allclose(deb, expected - r.T @ r / 49**2, rtol=1e-9, atol=1e-12)


def test_random_features_and_closed_form_gradient():
    """One bandwidth = the library projector's features; several = their concatenation with the
    amplitude of the total; the closed-form value and gradient = autograd of pairwise_blocks."""
    torch.manual_seed(0)
    y = torch.randn(300, 4, dtype=torch.float64) ** 3
    one = RandomFeatures(4, 16, (1.0,), seed=5).double()
    ref = RandomFeatureProjector(4, 16, seed=5, scale="kernel").double()
    torch.testing.assert_close(one(y), ref(y))
    multi = RandomFeatures(4, 24, (0.5, 2.0), seed=5).double()
    parts = [
        RandomFeatureProjector(4, 12, bandwidth=b, seed=5 + i, scale="unit")
        for i, b in enumerate((0.5, 2))
    ]
    want = torch.cat([p.double().feature_map(y) for p in parts], dim=2) * (1.0 / np.sqrt(24))
    torch.testing.assert_close(multi(y), want.reshape(300, -1))
    yg = y.clone().requires_grad_()
    value = _pairwise_blocks(multi(yg), 4, 24)
    value.backward()
    v2, g2 = multi.value_and_grad(y)
    assert float(v2) == pytest.approx(float(value.detach()), rel=1e-10)
    torch.testing.assert_close(g2, yg.grad, rtol=1e-8, atol=1e-14)


def test_standardized_features_contrast_is_squared_correlations():
    """``standardize=True``: the contrast = mean over output pairs of the squared sample
    correlations between their features, less the same-sample terms (written plainly in numpy);
    the closed-form gradient = autograd; a constant output gives zeros, not NaN."""
    torch.manual_seed(1)
    n, k, m = 200, 3, 8
    y = torch.randn(n, k, dtype=torch.float64) ** 3
    feats = RandomFeatures(k, m, (1.0,), seed=2, standardize=True).double()
    om, ph = feats.omega.numpy(), feats.phase.numpy()
    raw = np.cos(y.numpy()[:, :, None] * om + ph)  # (n, k, m)
    z = (raw - raw.mean(0)) / raw.std(0, ddof=1)
    corr = np.einsum("aim,ajl->ijml", z, z) / (n - 1)
    r = (z**2).sum(2)  # (n, k)
    off = [(i, j) for i in range(k) for j in range(k) if i != j]
    want = sum((corr[i, j] ** 2).sum() - (r[:, i] * r[:, j]).sum() / (n - 1) ** 2 for i, j in off)
    value, grad = feats.value_and_grad(y)
    assert float(value) == pytest.approx(want / len(off), rel=1e-10)
    assert feats._arg(y.T).is_contiguous()  # samples innermost even for a transposed view
    yg = y.clone().requires_grad_()
    _pairwise_blocks(feats(yg), k, m).backward()
    torch.testing.assert_close(grad, yg.grad, rtol=1e-8, atol=1e-14)
    floored = RandomFeatures(k, m, (1.0,), seed=2, standardize=True, variance_floor=1.0).double()
    yg = y.clone().requires_grad_()
    _pairwise_blocks(floored(yg), k, m).backward()
    torch.testing.assert_close(floored.value_and_grad(y)[1], yg.grad, rtol=1e-8, atol=1e-14)
    y[:, 1] = 0.5
    value, grad = feats.value_and_grad(y)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


# -------------------------------------------------------------------------------- estimator
def test_parameter_constraints_match_sklearn_checker():
    """Declarative constraints: scikit-learn's own param-validation check (invalid values of
    every parameter raise InvalidParameterError naming it) and the device rule."""
    from sklearn.utils.estimator_checks import check_param_validation

    check_param_validation("VCRegICA", VCRegICA())
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        VCRegICA(device="gpu0").fit(X)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            VCRegICA(device="cuda").fit(X)
    for bad in ([], [1.0, float("inf")], [1.0, True]):
        with pytest.raises(ValueError, match="bandwidth"):
            VCRegICA(bandwidth=bad).fit(X)
    with pytest.raises(ValueError, match="n_components"):
        VCRegICA(n_components=True).fit(X)


@parametrize_with_checks([VCRegICA(random_state=0, max_iter=20)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("family", ["laplace", "uniform"])
def test_recovers_small_mixture_like_fastica(family):
    S, A, X = make_ica_problem(family, 3000, 3, "well", random_state=3)
    est = VCRegICA(random_state=0)
    S_hat = est.fit_transform(X)
    fast = FastICA(whiten="unit-variance", random_state=0, max_iter=1000).fit(X)
    d_vc = amari_distance(est.components_, A)
    d_fast = amari_distance(fast.components_, A)
    # a random rotation gives ~0.4; VCReg's contrast is noisier than FastICA's at small n
    assert d_vc < 0.08
    assert d_vc < 3 * d_fast + 0.03
    assert mean_corr_coef(S_hat, S) > 0.98
    assert est.n_iter_ >= 1
    np.testing.assert_allclose(np.cov(S_hat.T), np.eye(3), atol=1e-8)  # unit-variance outputs


@pytest.mark.parametrize("family", ["uniform", "bimodal", "mixed"])
def test_jacobi_recovers_sub_gaussian_d5(family):
    """d = 5 sub-Gaussian sources: L-BFGS from a random rotation stalls in a fully-mixed spurious
    minimum (Amari ≈ 0.4-0.6 on most seeds); the Jacobi sweeps reach the true basin."""
    _, A, X = make_ica_problem(family, 1000, 5, "well", random_state=2)
    est = VCRegICA(random_state=2).fit(X)
    assert est.n_sweeps_ >= 1 and est.converged_
    assert amari_distance(est.components_, A) < 0.1
    old = VCRegICA(optimizer="lbfgs", random_state=2).fit(X)
    assert old.n_sweeps_ == 0
    # same contrast, lower value (or the same optimum, to float32 precision): a better optimum
    assert est.loss_ < old.loss_ + 1e-5 * abs(old.loss_)


def test_angle_refinement_is_the_trigonometric_interpolant_minimum():
    """8 costs of a π/2-periodic cost with harmonics 4θ and 8θ (exactly representable by 8
    samples): the refined angle is its minimum (brute force on a fine grid) to the refinement
    grid's resolution, wrapped into (−π/4, π/4]; the gain is the drop from θ = 0."""
    from vcreg.ica.solver import _refine

    def cost(t):
        return np.cos(4 * (t - 0.3)) + 0.3 * np.cos(8 * (t - 1.0)) + 0.1 * np.sin(4 * t)

    step = np.pi / 2 / 8
    grid = torch.as_tensor(cost(np.arange(8) * step))
    angle, gain = _refine(grid, step)
    fine = np.linspace(0, np.pi / 2, 200_000, endpoint=False)
    best = fine[np.argmin(cost(fine))]
    best = best - np.pi / 2 if best > np.pi / 4 else best
    assert abs(angle - best) <= step / 32
    assert gain == pytest.approx(cost(0.0) - cost(fine).min(), abs=1e-3)


@pytest.mark.parametrize("standardize, floor", [(False, 0.0), (True, 0.0), (True, 1.0)])
def test_sweep_rotation_cost_is_the_debiased_pair_block(standardize, floor):
    """The sweeps' cost of each angle (weights applied to the m × m blocks) = the pair's block
    ``‖Z̄_iᵀZ̄_j‖² − Σ_a r_i(a)r_j(a)`` of the features written plainly in numpy."""
    from vcreg.ica.solver import _pair_features, _rotation_cost

    n, m, T = 300, 8, 5
    rng = np.random.default_rng(3)
    yi, yj = rng.standard_t(3, size=(T, n)), rng.uniform(-2, 2, size=(T, n))
    feats = RandomFeatures(2, m, (1.0,), seed=4, standardize=standardize, variance_floor=floor)
    feats = feats.double()
    a, om, ph = np.sqrt(2 / m), feats.omega.numpy(), feats.phase.numpy()

    def plain(v):  # (T, m, n)
        z = a * np.cos(v[:, None, :] * om[:, None] + ph[:, None])
        z = z - z.mean(-1, keepdims=True)
        if standardize:
            z = z / np.sqrt(z.var(-1, ddof=1, keepdims=True) + floor * a**2 / 2)
        return z

    zi, zj = plain(yi), plain(yj)
    ri, rj = (zi**2).sum(1), (zj**2).sum(1)
    want = (np.einsum("tfa,tga->tfg", zi, zj) ** 2).sum((1, 2)) - (ri * rj).sum(-1)
    Pi = _pair_features(feats, torch.as_tensor(yi))
    Pj = _pair_features(feats, torch.as_tensor(yj))
    np.testing.assert_allclose(_rotation_cost(Pi, Pj).numpy(), want, rtol=1e-10)
    c, _, w = feats.weighted(torch.as_tensor(yi))
    np.testing.assert_allclose((c * w[..., None]).numpy(), zi, rtol=1e-10, atol=1e-14)


def test_jacobi_sweeps_total_cost_is_descent_and_pair_cost_escapes():
    _, A, X = make_ica_problem("uniform", 800, 4, "well", random_state=0)
    Xw, K, _ = whiten_unit_variance(X, 4)
    x = torch.as_tensor(Xw, dtype=torch.float64)
    proj = RandomFeatureProjector(4, 16, seed=0, scale="kernel")
    q0 = torch.as_tensor(_random_rotation(4, np.random.RandomState(0)), dtype=torch.float64)

    def f(w):
        return float(_pairwise_blocks(proj(x @ w), 4, 16))

    feats = RandomFeatures(4, 16, (1.0,), seed=0).double()  # the same features as proj
    w_tot, sweeps, conv = _jacobi_sweeps(x, q0, feats, 16, 20, pair_only=False)
    assert conv and 1 <= sweeps < 20
    assert f(w_tot) < f(q0)  # coordinate descent on the total contrast never increases it
    np.testing.assert_allclose(w_tot.T @ w_tot, np.eye(4), atol=1e-10)  # still orthogonal
    w_pair, _, _ = _jacobi_sweeps(x, q0, feats, 16, 20, angle_tol=0.1)
    assert amari_distance((K @ w_pair.numpy()).T, A) < 0.1


def _white_problem(family, n, k, seed):
    S, A, X = make_ica_problem(family, n, k, "well", random_state=seed)
    Xw, K, _ = whiten_unit_variance(X, k)
    return torch.as_tensor(Xw, dtype=torch.float64), K, A


def test_holdout_early_stopping_keeps_a_polish_that_generalises():
    from vcreg.ica.solver import SolverConfig, holdout_iterations

    cfg = SolverConfig(
        "random-features", 16, 2, (1.0,), "pairwise", "jacobi+lbfgs", (1.0,), 16, (1.0,),
        8, 15, 0.1, 200, 1e-4, holdout_check=True,
    )  # fmt: skip
    x, K, A = _white_problem("laplace", 4000, 3, 0)
    x = x.float()
    g = RandomFeatures(3, 16, (1.0,), seed=0)
    # far from the sources, the polish's improvement is real: it shows on held-out samples
    q0 = torch.as_tensor(_random_rotation(3, np.random.RandomState(1)), dtype=torch.float32)
    assert amari_distance((K @ q0.double().numpy()).T, A) > 0.2
    assert holdout_iterations(x, q0, g, cfg, seed=0) >= 2
    # at the (nearest rotation to the) exact unmixing there is little left but sample noise
    truth = np.linalg.solve(K.T @ A, np.eye(3)).T
    u, _, vt = np.linalg.svd(truth)
    truth = torch.as_tensor(u @ vt, dtype=torch.float32)
    iters = [holdout_iterations(x, truth, g, cfg, seed=s) for s in range(6)]
    assert sum(i == 0 for i in iters) >= 3, iters


def test_auto_optimizer_rule_and_standardized_gain_on_heavy_tails():
    """optimizer="auto": the sweeps only with < 50 samples per rotation
    parameter when they see every sample, else sweeps + polish; on heavy-tailed sources the
    standardized contrast (default scale) is the better one."""
    _, _, X = make_ica_problem("laplace", 600, 8, "well", random_state=0)  # 600 < 50·28
    few = VCRegICA(random_state=0).fit(X)
    assert not few.polished_ and few.n_iter_ == few.n_sweeps_ >= 1 and few.converged_
    capped = VCRegICA(random_state=0, max_warmup_samples=300).fit(X)  # sweeps see 300 of 600
    assert capped.n_iter_ != capped.n_sweeps_ or capped.polished_
    amari = {"standardized": [], "kernel": []}
    for seed in range(6):
        _, A, X = make_ica_problem("student-t3", 1000, 3, "well", random_state=seed)
        for scale, found in amari.items():
            est = VCRegICA(scale=scale, random_state=seed).fit(X)
            assert est.polished_  # 1000 ≥ 50·3: sweeps + polish
            found.append(amari_distance(est.components_, A))
    assert np.median(amari["standardized"]) < 0.8 * np.median(amari["kernel"]), amari


def test_holdout_check_runs_only_with_few_samples_per_parameter():
    _, A, X = make_ica_problem("laplace", 600, 8, "well", random_state=0)  # 600 < 50·28
    small = VCRegICA(random_state=0).fit(X)
    assert isinstance(small.polished_, bool)
    assert amari_distance(small.components_, A) < 0.15
    _, _, X = make_ica_problem("laplace", 2000, 3, "well", random_state=0)  # 2000 > 50·3
    assert VCRegICA(random_state=0).fit(X).polished_
    assert not VCRegICA(optimizer="jacobi", random_state=0).fit(X).polished_


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "seed", "cond", "bound"),
    [
        ("laplace", 0, "well", 0.06),
        ("laplace", 0, "ill", 0.06),
        ("laplace", 1, "well", 0.06),
        ("uniform", 0, "ill", 0.06),
        ("uniform", 1, "well", 0.15),
    ],
)
def test_d20_n1000_recovers_where_it_used_to_fail(family, seed, cond, bound):
    """Issue 12, d = 20, n = 1000 cells that failed before: Laplace seed 0 measured 0.28 / 0.30
    with the polish (second round), uniform seed 1 0.33 with the variance floor λ = 0.3, the
    others 0.05–0.14 in the first round; the benchmark now measures 0.030 / 0.030 / 0.033 /
    0.024 / 0.087. Not every cell is good: uniform seed 3 measures 0.25–0.26, the worst i.i.d.
    fit of the benchmark (docs/sections/ica.md)."""
    _, A, X = make_ica_problem(family, 1000, 20, cond, random_state=seed)
    assert amari_distance(VCRegICA(random_state=seed).fit(X).components_, A) < bound


def test_deterministic_dtypes_and_roundtrip():
    _, _, X = make_ica_problem("exponential", 600, 3, "well", random_state=1)
    a = VCRegICA(random_state=7).fit(X)
    b = VCRegICA(random_state=7).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)
    S64 = a.transform(X)
    np.testing.assert_allclose(a.inverse_transform(S64), X, atol=1e-8)
    c = VCRegICA(random_state=7).fit(X.astype(np.float32))
    S32 = c.transform(X.astype(np.float32))
    assert S32.dtype == np.float32 and c.components_.dtype == np.float32
    assert c.inverse_transform(S32).dtype == np.float32
    np.testing.assert_allclose(S32, S64, atol=1e-3)
    # fewer components: inverse_transform is the least-squares reconstruction
    d = VCRegICA(n_components=2, random_state=0).fit(X)
    assert d.transform(X).shape == (600, 2) and d.mixing_.shape == (3, 2)


def test_convergence_warning_and_mlp_projector():
    _, A, X = make_ica_problem("laplace", 500, 3, "well", random_state=2)
    with pytest.warns(ConvergenceWarning):
        est = VCRegICA(random_state=0, max_iter=1, bandwidth=1.0).fit(X)
    assert not est.converged_ and est.n_iter_ == 1
    with pytest.warns(ConvergenceWarning, match="max_sweeps=1"):
        jac = VCRegICA(random_state=0, optimizer="jacobi", max_sweeps=1, angle_tol=0.0).fit(X)
    assert not jac.converged_ and jac.n_iter_ == jac.n_sweeps_ == 1
    mlp = VCRegICA(projector="mlp", width=64, random_state=0).fit(X)
    assert mlp.components_.shape == (3, 3) and np.isfinite(mlp.components_).all()


@pytest.mark.parametrize(
    ("X", "params", "match"),
    [
        (np.array([[1.0, np.nan], [2.0, 3.0], [0.0, 1.0]]), {}, "NaN"),
        (np.array([[1.0, np.inf], [2.0, 3.0], [0.0, 1.0]]), {}, "infinity"),
        (np.ones((1, 3)), {}, "1 sample"),
        (np.random.default_rng(0).normal(size=(20, 3)), {"n_components": 4}, "n_features=3"),
        (np.random.default_rng(0).normal(size=(3, 3)), {}, "more samples than components"),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            {"projector": "x"},
            "'projector' parameter",
        ),
        (np.random.default_rng(0).normal(size=(20, 3)), {"bandwidth": -1.0}, "bandwidth"),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            {"projector": "mlp", "objective": "pairwise"},
            "random-features",
        ),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            {"optimizer": "x"},
            "'optimizer' parameter",
        ),
        (
            np.random.default_rng(0).normal(size=(20, 3)),
            {"projector": "mlp", "optimizer": "jacobi"},
            "needs objective='pairwise'",
        ),
        (np.random.default_rng(0).normal(size=(20, 3)), {"n_angles": 0}, "n_angles"),
        (np.random.default_rng(0).normal(size=(20, 3)), {"angle_tol": -1.0}, "angle_tol"),
    ],
)
def test_errors(X, params, match):
    with pytest.raises(ValueError, match=match):
        VCRegICA(**params).fit(X)


def test_make_ica_problem_families():
    for fam in SOURCE_FAMILIES:
        S, A, X = make_ica_problem(fam, 400, 5, "ill", random_state=0)
        assert S.shape == X.shape == (400, 5)
        np.testing.assert_allclose(S.std(0, ddof=1), 1.0)
        np.testing.assert_allclose(X, S @ A.T)
        assert np.linalg.cond(A) == pytest.approx(1e3, rel=1e-6)
    with pytest.raises(ValueError, match="unknown source family"):
        make_ica_problem("gauss", 10, 2)


# -------------------------------------------------------------------------------------- CLI
def test_cli_ica_npy_and_csv(tmp_path):
    from vcreg.cli import main

    S, A, X = make_ica_problem("laplace", 800, 3, "well", random_state=5)
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    np.save(tmp_path / "s.npy", S)
    np.save(tmp_path / "a.npy", A)
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "ica",
            str(tmp_path / "x.npy"),
            "--n-components",
            "3",
            "--out",
            str(tmp_path / "o"),
            "--sources",
            str(tmp_path / "s.npy"),
            "--mixing",
            str(tmp_path / "a.npy"),
        ],
    )
    assert res.exit_code == 0, res.output
    out = tmp_path / "o"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mcc_pearson"] > 0.95 and metrics["amari_distance"] < 0.15
    S_hat = np.load(out / "sources.npy")
    np.testing.assert_allclose(np.loadtxt(out / "sources.csv", delimiter=","), S_hat, rtol=1e-8)
    W = np.load(out / "unmixing.npy")
    np.testing.assert_allclose((X - np.load(out / "mean.npy")) @ W.T, S_hat, atol=1e-8)
    assert np.load(out / "mixing.npy").shape == (3, 3)
    diag = json.loads((out / "diagnostics.json").read_text())
    assert diag["reliable"] is True and diag["predicted_amari"] < 0.07
    printed = json.loads(res.output.splitlines()[0])
    assert printed["reliable"] is True and printed["diagnostics"] == diag

    res = runner.invoke(main, ["ica", str(tmp_path / "x.csv"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o2" / "sources.npy").exists()
    assert not (tmp_path / "o2" / "metrics.json").exists()

    res = runner.invoke(main, ["ica", str(tmp_path / "missing.npy"), "--out", str(tmp_path)])
    assert res.exit_code != 0 and "not found" in res.output
    res = runner.invoke(
        main, ["ica", str(tmp_path / "x.npy"), "-k", "5", "--out", str(tmp_path / "o3")]
    )
    assert res.exit_code != 0 and "--n-components 5" in res.output  # the option, not the parameter


@pytest.mark.slow
def test_nonlinear_ica_experiment_negative_result():
    from vcreg.experiments.c5_ica import nonlinear_ica_experiment

    out = nonlinear_ica_experiment(n_sources=3, n_samples=1500, epochs=150, random_state=0)
    assert out["mcc_vcreg_ica_on_linear_mixture"] > 0.95  # positive control
    assert out["mcc_vcreg_nonlinear_encoder"] < 0.8
    assert out["mcc_vcreg_ica_linear"] < 0.8
