"""Tests of vcreg.independence against independent references.

References: HSIC written as plain O(n^2) matrix formulas (explicit H matrices, Song et al.'s
unbiased formula), bandwidths from scipy's pdist, hyppo's dHsic for the dHSIC V-statistic and
an exact-arithmetic (decimal) dHSIC for 512 variables.
"""

from __future__ import annotations

import decimal
import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from vcreg import independence as ind

# ----------------------------------------------------------------------------- references


def gauss_gram(x: np.ndarray, sigma: float) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return np.exp(-squareform(pdist(x, "sqeuclidean")) / (2 * sigma**2))


def median_sigma(x: np.ndarray) -> float:
    return float(np.median(pdist(x.reshape(len(x), -1))))


def hsic_b_ref(k: np.ndarray, ell: np.ndarray) -> float:
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ ell @ h) / n**2)


def hsic_u_ref(k: np.ndarray, ell: np.ndarray) -> float:
    """Song et al. (2012), eq. (5)."""
    n = len(k)
    kt, lt = k - np.diag(np.diag(k)), ell - np.diag(np.diag(ell))
    one = np.ones(n)
    return float(
        (
            np.trace(kt @ lt)
            + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ kt @ lt @ one
        )
        / (n * (n - 3))
    )


def hsic_ref(x, y, estimator="biased", normalized=False):
    k, ell = gauss_gram(x, median_sigma(x)), gauss_gram(y, median_sigma(y))
    f = hsic_b_ref if estimator == "biased" else hsic_u_ref
    v = f(k, ell)
    return v / math.sqrt(f(k, k) * f(ell, ell)) if normalized else v


def dependent_data(n: int, d: int, seed: int) -> np.ndarray:
    """Standardized columns: independent ones plus nonlinear and linear dependencies."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    z[:, 1] = z[:, 0] ** 2 + 0.5 * rng.standard_normal(n)
    z[:, 2] = np.sin(2 * z[:, 0]) + 0.3 * rng.standard_normal(n)
    z[:, 3] = rng.uniform(-1, 1, n)
    z[:, 4] = rng.standard_t(4, n)
    z[:, 5:8] = np.tanh(z[:, 5:8] @ rng.standard_normal((3, 3)))
    return (z - z.mean(0)) / z.std(0)


# ----------------------------------------------------------------------------- hsic


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_hsic_matches_plain_formula_multivariate(estimator):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 3))
    y = np.c_[x[:, 0] * x[:, 1], rng.standard_normal(80)] + 0.3 * rng.standard_normal((80, 2))
    for normalized in (False, True):
        got = ind.hsic(x, y, estimator=estimator, normalized=normalized)
        want = hsic_ref(x, y, estimator, normalized)
        assert got == pytest.approx(want, rel=1e-10)


def test_bandwidth_conventions_and_fixed():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((51, 2))
    med = median_sigma(x)
    assert ind.bandwidth(x, "median") == pytest.approx(med, rel=1e-12)
    # R dHSIC: sqrt(median of squared distances / 2)
    want = math.sqrt(np.median(pdist(x, "sqeuclidean")) / 2)
    assert ind.bandwidth(x, "dhsic") == pytest.approx(want, rel=1e-12)
    y = x[:, 0] + rng.standard_normal(51)
    k, ell = gauss_gram(x, 0.7), gauss_gram(y, 0.7)
    assert ind.hsic(x, y, bandwidth=0.7) == pytest.approx(hsic_b_ref(k, ell), rel=1e-10)
    kd, ld = gauss_gram(x, ind.bandwidth(x, "dhsic")), gauss_gram(y, ind.bandwidth(y, "dhsic"))
    assert ind.hsic(x, y, bandwidth="dhsic") == pytest.approx(hsic_b_ref(kd, ld), rel=1e-10)


def test_bandwidth_subsample_is_deterministic_and_documented_size():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(3000)
    a, b = ind.bandwidth(x), ind.bandwidth(x.copy())
    assert a == b
    # a median over <= 512 rows is close to the all-pairs median
    assert a == pytest.approx(median_sigma(x), rel=0.1)
    assert ind.bandwidth(x, median_samples=3000) == pytest.approx(median_sigma(x), rel=1e-12)


def test_linear_and_laplacian_kernels():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((40, 1))
    y[:, 0] += x[:, 0]
    lin = ind.hsic(x, y, kernel="linear")
    assert lin == pytest.approx(hsic_b_ref(x @ x.T, y @ y.T), rel=1e-10)
    sx, sy = median_sigma(x), median_sigma(y)
    kx = np.exp(-squareform(pdist(x)) / sx)
    ky = np.exp(-squareform(pdist(y)) / sy)
    assert ind.hsic(x, y, kernel="laplacian") == pytest.approx(hsic_b_ref(kx, ky), rel=1e-10)


def test_torch_in_torch_out_and_float_results():
    rng = np.random.default_rng(4)
    z = rng.standard_normal((30, 4))
    assert isinstance(ind.hsic(torch.tensor(z[:, 0]), torch.tensor(z[:, 1])), float)
    m = ind.pairwise_hsic(torch.tensor(z, dtype=torch.float32))
    assert isinstance(m, torch.Tensor) and m.device.type == "cpu" and m.shape == (4, 4)
    mn = ind.pairwise_hsic(z)
    assert isinstance(mn, np.ndarray)
    np.testing.assert_allclose(m.numpy(), mn, rtol=1e-5, atol=1e-7)  # float32 input, float64 math


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_results_stay_on_device():
    z = torch.randn(64, 8, device="cuda")
    m = ind.pairwise_hsic(z)
    assert m.device.type == "cuda"
    np.testing.assert_allclose(m.cpu().numpy(), ind.pairwise_hsic(z.cpu()).numpy(), atol=1e-8)
    assert isinstance(ind.dhsic(z), float)


# ----------------------------------------------------------------------------- pairwise


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_pairwise_exact_equals_per_pair_formula(estimator):
    z = dependent_data(60, 9, seed=5)
    want = np.array([[hsic_ref(z[:, i], z[:, j], estimator) for j in range(9)] for i in range(9)])
    got = ind.pairwise_hsic(z, normalized=False, estimator=estimator)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12 * np.abs(want).max())
    # chunked under a tiny memory budget: the same matrix
    small = 12 * (60 * 59 // 2) * 8
    got_c = ind.pairwise_hsic(z, normalized=False, estimator=estimator, max_memory=small)
    np.testing.assert_allclose(got_c, want, rtol=1e-6, atol=1e-12 * np.abs(want).max())
    wn = np.array(
        [[hsic_ref(z[:, i], z[:, j], estimator, True) for j in range(9)] for i in range(9)]
    )
    np.testing.assert_allclose(ind.pairwise_hsic(z, estimator=estimator), wn, atol=1e-10)


def test_pairwise_memory_errors_and_units():
    assert ind.parse_memory("4GB") == 4 * 2**30
    assert ind.parse_memory("512 MiB") == 512 * 2**20
    assert ind.parse_memory(1000) == 1000
    with pytest.raises(ValueError, match="max_memory"):
        ind.parse_memory("lots")
    z = np.random.default_rng(0).standard_normal((200, 5))
    with pytest.raises(ValueError, match="max_memory is"):
        ind.pairwise_hsic(z, max_memory="100KB")


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_lowrank_within_one_percent_of_exact(estimator):
    z = dependent_data(400, 24, seed=6)
    iu = np.triu_indices(24, 1)
    for normalized in (False, True):
        ex = ind.pairwise_hsic(z, normalized=normalized, estimator=estimator)
        lr = ind.pairwise_hsic(z, normalized=normalized, estimator=estimator, method="lowrank")
        assert lr[iu].mean() == pytest.approx(ex[iu].mean(), rel=0.01)
        # the dependent pairs are found by both
        assert np.argmax(lr[iu]) == np.argmax(ex[iu])


def test_lowrank_linear_kernel_is_exact():
    z = dependent_data(50, 8, seed=7)
    ex = ind.pairwise_hsic(z, normalized=False, kernel="linear")
    lr = ind.pairwise_hsic(z, normalized=False, kernel="linear", method="lowrank")
    np.testing.assert_allclose(lr, ex, rtol=1e-9, atol=1e-14)
    # linear HSIC_b of standardized columns is the squared covariance (n-1)^2/n^2 C_ij^2
    c = np.cov(z.T)
    np.testing.assert_allclose(ex, c**2 * (49 / 50) ** 2, rtol=1e-9)


def test_pairwise_constant_column_is_zero_with_warning():
    z = dependent_data(40, 8, seed=8)
    z[:, 3] = 2.5
    with pytest.warns(ind.ConstantVariableWarning, match="column 3"):
        m = ind.pairwise_hsic(z)
    assert np.all(m[3] == 0) and np.all(m[:, 3] == 0)
    assert np.allclose(np.diag(m)[[0, 1, 2, 4, 5, 6, 7]], 1.0)
    with pytest.warns(ind.ConstantVariableWarning):
        assert ind.hsic(z[:, 3], z[:, 0]) == 0.0


def test_pairwise_summary():
    m = np.array([[1, 0.1, 0.5, 0.2], [0.1, 1, 0.3, 0.0], [0.5, 0.3, 1, 0.4], [0.2, 0, 0.4, 1]])
    s = ind.pairwise_summary(torch.tensor(m), top_k=2, names=list("abcd"))
    vals = np.array([0.1, 0.5, 0.2, 0.3, 0.0, 0.4])
    assert s["mean"] == pytest.approx(vals.mean()) and s["median"] == pytest.approx(0.25)
    assert s["max"] == 0.5 and s["n_pairs"] == 6
    assert s["top_pairs"][0] == {"i": 0, "j": 2, "value": 0.5, "names": ["a", "c"]}
    assert (s["top_pairs"][1]["i"], s["top_pairs"][1]["j"]) == (2, 3)
    with pytest.raises(ValueError, match="square"):
        ind.pairwise_summary(np.ones((2, 3)))


# ----------------------------------------------------------------------------- dHSIC


def test_dhsic_matches_hyppo_with_matched_bandwidth():
    from hyppo.d_variate import dHsic

    rng = np.random.default_rng(9)
    z = rng.standard_normal((70, 4))
    z[:, 2] = z[:, 0] * z[:, 1] + 0.2 * rng.standard_normal(70)
    # hyppo's gaussian kernel exp(-gamma |x - y|^2) with one gamma for all variables
    sigma = 1.3
    want = dHsic(gamma=1 / (2 * sigma**2)).statistic(*[z[:, [j]] for j in range(4)])
    assert ind.dhsic(z, bandwidth=sigma) == pytest.approx(want, rel=1e-10)
    # unequal widths, per-variable median bandwidths: hyppo on our kernel matrices
    parts = [z[:, :2], z[:, 2:3], z[:, 3]]
    kern = [gauss_gram(p, median_sigma(p)) for p in parts]
    want = dHsic(compute_kernel=None).statistic(*kern)
    assert ind.dhsic(parts, bandwidth="median") == pytest.approx(want, rel=1e-10)
    # d = 2: dHSIC is the biased HSIC
    got = ind.dhsic(z[:, :2], bandwidth="median")
    assert got == pytest.approx(hsic_ref(z[:, 0], z[:, 1]), rel=1e-10)


def _dhsic_decimal(kern: list[np.ndarray]) -> float:
    """The dHSIC V-statistic in exact-exponent decimal arithmetic (no underflow)."""
    ctx = decimal.Context(prec=40, Emin=-(10**9), Emax=10**9)
    D = ctx.create_decimal_from_float
    n = kern[0].shape[0]
    ks = [[[ctx.exp(D(float(np.log(v)))) for v in row] for row in k] for k in kern]
    t1, t2 = decimal.Decimal(0), decimal.Decimal(1)
    rowprod = [decimal.Decimal(1)] * n
    for k in ks:
        t2 = ctx.multiply(t2, ctx.divide(sum(sum(r) for r in k), n * n))
        rowprod = [ctx.multiply(p, ctx.divide(sum(k[a]), n)) for a, p in enumerate(rowprod)]
    for a in range(n):
        for b in range(n):
            p = decimal.Decimal(1)
            for k in ks:
                p = ctx.multiply(p, k[a][b])
            t1 += p
    return float(ctx.divide(t1, n * n) + t2 - ctx.divide(2 * sum(rowprod), n))


def test_dhsic_512_variables_no_underflow():
    rng = np.random.default_rng(10)
    n, d = 10, 512
    # rows come in near-identical pairs, so the joint kernel matrix is not ~ identity (not
    # saturated) although every variable's kernel is narrow
    z = np.repeat(rng.standard_normal((n // 2, d)), 2, axis=0) + 1e-4 * rng.standard_normal((n, d))
    sig = 0.05  # narrow kernels: mean K_j ~ 1/n, so prod_j mean K_j ~ 1e-512 underflows float64
    kern = [gauss_gram(z[:, j], sig) for j in range(d)]
    assert np.prod([k.mean() for k in kern]) == 0.0  # the naive product underflows
    got = ind.dhsic(z, bandwidth=sig)
    assert math.isfinite(got) and got > 0
    assert got == pytest.approx(_dhsic_decimal(kern), rel=1e-9)


def test_dhsic_constant_variable_leaves_others():
    rng = np.random.default_rng(11)
    z = rng.standard_normal((30, 3))
    zc = np.c_[z, np.full(30, 7.0)]
    with pytest.warns(ind.ConstantVariableWarning):
        v = ind.dhsic(zc, bandwidth=1.0)
    assert v == pytest.approx(ind.dhsic(z, bandwidth=1.0), rel=1e-10)


# ----------------------------------------------------------------------------- tests


def test_gamma_and_permutation_pvalues_agree():
    rng = np.random.default_rng(12)
    n = 100
    x = rng.standard_normal(n)
    cases = {
        "independent": rng.standard_normal(n),
        "weak": 0.25 * x**2 + rng.standard_normal(n),
    }
    for y in cases.values():
        pg = ind.hsic_test(x, y, method="gamma").p_value
        pp = ind.hsic_test(x, y, method="permutation", n_permutations=2000).p_value
        assert abs(pg - pp) < 0.05
    z = rng.standard_normal((n, 3))
    z[:, 2] += 0.3 * z[:, 0] * z[:, 1]
    for zz in (rng.standard_normal((n, 3)), z):
        pg = ind.dhsic_test(zz, method="gamma", bandwidth="median").p_value
        pp = ind.dhsic_test(zz, "permutation", 400, bandwidth="median").p_value
        assert abs(pg - pp) < 0.05


def test_gamma_test_calibration_and_power():
    rej_h = rej_d = 0
    for seed in range(200):
        rng = np.random.default_rng(1000 + seed)
        z = rng.standard_normal((50, 3))
        rej_h += ind.hsic_test(z[:, 0], z[:, 1]).p_value < 0.05
        rej_d += ind.dhsic_test(z, method="gamma", bandwidth="median").p_value < 0.05
    assert 0.02 <= rej_h / 200 <= 0.09
    assert 0.02 <= rej_d / 200 <= 0.09
    power = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(100)
        power += ind.hsic_test(x, x**2 + 0.5 * rng.standard_normal(100)).p_value < 0.05
    assert power == 20


@pytest.mark.slow
def test_permutation_test_calibration():
    rej = 0
    for seed in range(200):
        rng = np.random.default_rng(5000 + seed)
        z = rng.standard_normal((40, 2))
        rej += ind.hsic_test(z[:, 0], z[:, 1], "permutation", 200, seed).p_value < 0.05
    assert 0.02 <= rej / 200 <= 0.09


def test_permutation_is_seedable_and_whole_variables():
    rng = np.random.default_rng(13)
    x, y = rng.standard_normal(60), rng.standard_normal(60)
    a = ind.hsic_test(x, y, "permutation", 300, random_state=3)
    b = ind.hsic_test(x, y, "permutation", 300, random_state=3)
    assert a.p_value == b.p_value
    stat, p = a  # unpacks
    assert stat == pytest.approx(ind.hsic(x, y)) and 0 < p <= 1
    # a 2-column variable with strongly dependent columns, independent of the third variable:
    # permuting whole variables keeps the within-variable dependence -> no rejection
    u = rng.standard_normal(60)
    v = [np.c_[u, u**2 + 0.1 * rng.standard_normal(60)], rng.standard_normal(60)]
    assert ind.dhsic_test(v, "permutation", 300, random_state=0).p_value > 0.05


def test_bad_inputs():
    rng = np.random.default_rng(14)
    x, y = rng.standard_normal(20), rng.standard_normal(20)
    with pytest.raises(ValueError, match="at least 4"):
        ind.hsic(x[:3], y[:3])
    with pytest.raises(ValueError, match="NaN or Inf"):
        ind.hsic(np.r_[x[:-1], np.nan], y)
    with pytest.raises(ValueError, match="NaN or Inf"):
        ind.pairwise_hsic(np.c_[x, np.r_[np.inf, y[1:]]])
    with pytest.raises(ValueError, match="same number of samples"):
        ind.hsic(x, y[:10])
    with pytest.raises(ValueError, match="same number of samples"):
        ind.dhsic([x, y[:10]])
    with pytest.raises(ValueError, match="shape"):
        ind.hsic(np.zeros((20, 2, 2)), y)
    with pytest.raises(TypeError, match="numeric"):
        ind.hsic(np.array(["a"] * 20), y)
    with pytest.raises(ValueError, match="unknown kernel"):
        ind.hsic(x, y, kernel="rbf2")
    with pytest.raises(ValueError, match="unknown estimator"):
        ind.hsic(x, y, estimator="mle")
    with pytest.raises(ValueError, match="bandwidth rule"):
        ind.hsic(x, y, bandwidth="silverman")
    with pytest.raises(ValueError, match="positive"):
        ind.hsic(x, y, bandwidth=-1.0)
    with pytest.raises(ValueError, match="unknown method"):
        ind.pairwise_hsic(np.c_[x, y], method="fast")
    with pytest.raises(ValueError, match="at least 2 columns"):
        ind.pairwise_hsic(x)
    with pytest.raises(ValueError, match="unknown test method"):
        ind.hsic_test(x, y, method="bootstrap")
    with pytest.raises(ValueError, match="gamma test needs"):
        ind.hsic_test(x, y, estimator="unbiased")
    with pytest.raises(ValueError, match="n_permutations"):
        ind.hsic_test(x, y, method="permutation", n_permutations=0)
    with pytest.raises(ValueError, match="positive kernels"):
        ind.dhsic(np.c_[x, y], kernel="linear")
    with pytest.raises(ValueError, match="at least 2 variables"):
        ind.dhsic([x])
    with pytest.raises(ValueError, match="n >= 4d - 2"):
        ind.dhsic_test(rng.standard_normal((8, 3)), method="gamma", bandwidth="median")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ind.hsic(x, y)  # no spurious warnings on clean data


# ----------------------------------------------------------------------------- representation health


def rankme_ref(z: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023, eq. 1) written with NumPy's SVD."""
    s = np.linalg.svd(z, compute_uv=False)
    p = s / s.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_effective_rank_matches_formula_and_known_ranks():
    rng = np.random.default_rng(20)
    z = rng.standard_normal((300, 40)) @ np.diag(np.linspace(0.1, 3, 40))
    assert ind.effective_rank(z) == pytest.approx(rankme_ref(z), rel=1e-10)
    zc = z + 5.0
    assert ind.effective_rank(zc, center=True) == pytest.approx(rankme_ref(zc - zc.mean(0)))
    # k equal orthogonal directions -> effective rank k (up to eps)
    q, _ = np.linalg.qr(rng.standard_normal((300, 7)))
    assert ind.effective_rank(q, eps=0.0) == pytest.approx(7.0, rel=1e-9)
    low = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 64))
    assert ind.effective_rank(low) < 3.0 + 1e-3
    assert ind.effective_rank(np.zeros((10, 4))) == 1.0
    assert ind.effective_rank(torch.as_tensor(z)) == pytest.approx(rankme_ref(z), rel=1e-10)


def test_feature_std_summary_flags_collapsed_features():
    rng = np.random.default_rng(21)
    z = rng.standard_normal((500, 16))
    z[:, 3] *= 1e-4
    z[:, 9] = 2.5
    s = ind.feature_std_summary(z)
    ref = z.std(0, ddof=1)
    assert np.allclose(s["std"], ref)
    assert s["std_min"] == pytest.approx(ref.min()) and s["std_max"] == pytest.approx(ref.max())
    assert s["collapsed"] == [3, 9] and s["n_collapsed"] == 2
    zn = z / np.linalg.norm(z, axis=1, keepdims=True)
    assert s["normalized_std"] == pytest.approx(zn.std(0, ddof=1).mean() * 4.0)
    # a complete collapse to one point flags every feature, at any scale
    point = np.tile(rng.standard_normal(16) * 1e6, (50, 1)) + 1e-3 * rng.standard_normal((50, 16))
    assert ind.feature_std_summary(point)["n_collapsed"] == 16
    assert ind.feature_std_summary(z * 1e-8)["collapsed"] == [3, 9]  # scale-free
    with pytest.raises(ValueError, match="threshold"):
        ind.feature_std_summary(z, threshold=-1)
    with pytest.raises(ValueError, match="NaN"):
        ind.feature_std_summary(np.full((5, 2), np.nan))
