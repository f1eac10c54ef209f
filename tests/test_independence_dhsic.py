"""dHSIC at representation scale: the "joint" bandwidth rule, saturation, the auto choices,
mutual_dependence, and the calibration of the recommended test over seeds.

References are independent of the implementation: kernel matrices written with scipy's pdist,
hyppo's dHsic on precomputed kernels, HSIC as tr(KHLH)/n^2 with an explicit H.

Seed counts (calibration, marked slow): with 200 data sets per null configuration, a test whose
level is exactly 0.05 falls outside the accepted band [0.02, 0.09] with probability 1.5 %
(binomial), while a test with true level 0.12 is caught with probability 0.89. The permutation
test uses B = 19: its level is exactly (1 + 0)/(1 + 19) = 0.05 for any B with (1 + B) alpha an
integer, so the band checks the statistic and the permutation scheme, not B. Power uses 20 data
sets and requires >= 18 rejections: a test of true power 0.97 passes with probability 0.98 and
one of power 0.8 with probability 0.21.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform

from vcreg import independence as ind


def gram(x: np.ndarray, sigma: float) -> np.ndarray:
    x = x.reshape(len(x), -1)
    return np.exp(-squareform(pdist(x, "sqeuclidean")) / (2 * sigma**2))


def median_dist(x: np.ndarray) -> float:
    return float(np.median(pdist(x.reshape(len(x), -1))))


def hsic_b(k: np.ndarray, ell: np.ndarray) -> float:
    n = len(k)
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ ell @ h) / n**2)


def test_joint_rule_matches_hyppo_on_scaled_kernels():
    from hyppo.d_variate import dHsic

    rng = np.random.default_rng(30)
    z = rng.standard_normal((80, 6))
    z[:, 5] = np.abs(z[:, 0]) + 0.3 * rng.standard_normal(80)
    kern = [gram(z[:, j], median_dist(z[:, j]) * math.sqrt(6)) for j in range(6)]
    want = dHsic(compute_kernel=None).statistic(*kern)
    assert ind.dhsic(z, bandwidth="joint") == pytest.approx(want, rel=1e-10)
    # laplacian: the exponent is linear in the distance, so the factor is d
    lap = [np.exp(-squareform(pdist(z[:, [j]])) / (median_dist(z[:, j]) * 6)) for j in range(6)]
    want = dHsic(compute_kernel=None).statistic(*lap)
    assert ind.dhsic(z, kernel="laplacian", bandwidth="joint") == pytest.approx(want, rel=1e-10)


def test_median_rule_saturates_and_is_refused():
    rng = np.random.default_rng(31)
    n, d = 512, 64
    f = rng.standard_normal((n, 1))
    for z in (
        rng.standard_normal((n, d)),
        np.sqrt(0.5) * rng.standard_normal((n, d)) + np.sqrt(0.5) * f,
    ):
        with pytest.warns(ind.SaturationWarning, match="saturated.*bandwidth='joint'"):
            assert math.isnan(ind.dhsic(z, bandwidth="median"))
        with pytest.warns(ind.SaturationWarning):
            r = ind.dhsic_test(z, bandwidth="median", n_permutations=19)
        assert math.isnan(r.statistic) and math.isnan(r.p_value)
        assert "saturated" in r.details["refused"]
        # the default (auto) switches to the joint rule and says so; no warning
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = ind.dhsic_test(z, n_permutations=19)
        assert r.details["bandwidth_rule"] == "joint" and r.method == "permutation"
        assert "permutation" in r.details["method_reason"]
        assert math.isfinite(r.statistic) and r.statistic > 1.0 / n * 0.01


def test_auto_keeps_median_where_it_does_not_saturate():
    rng = np.random.default_rng(32)
    z = rng.standard_normal((200, 2))
    r = ind.dhsic_test(z, n_permutations=19)
    assert r.details["bandwidth_rule"] == "median"
    k = [gram(z[:, j], median_dist(z[:, j])) for j in range(2)]
    assert ind.dhsic(z) == pytest.approx(hsic_b(*k), rel=1e-10)  # d = 2: the biased HSIC


def test_joint_statistic_separates_dependence_at_d64():
    # the bug report: with median bandwidths all three gave 1/n = 0.001953 at n = 512
    rng = np.random.default_rng(33)
    n, d = 512, 64
    f = rng.standard_normal((n, 1))
    vals = {
        "gauss": ind.dhsic(rng.standard_normal((n, d))),
        "laplace": ind.dhsic(rng.laplace(size=(n, d))),
        "factor": ind.dhsic(np.sqrt(0.5) * rng.standard_normal((n, d)) + np.sqrt(0.5) * f),
    }
    assert vals["factor"] > 5 * max(vals["gauss"], vals["laplace"])
    assert abs(vals["gauss"] - vals["laplace"]) < 0.5 * vals["gauss"]


def test_gamma_refused_where_uncalibrated_and_bad_options():
    z = np.random.default_rng(34).standard_normal((100, 4))
    for bw in ("joint", "auto"):
        with pytest.raises(ValueError, match="not calibrated"):
            ind.dhsic_test(z, method="gamma", bandwidth=bw)
    with pytest.raises(ValueError, match="not calibrated for d = 4"):
        ind.dhsic_test(z, method="gamma", bandwidth="median")
    with pytest.raises(ValueError, match="unknown bandwidth rule"):
        ind.dhsic(z, bandwidth="silverman")
    with pytest.raises(ValueError, match="unknown test method"):
        ind.dhsic_test(z, method="bootstrap")


def test_permutation_null_depends_only_on_seed():
    rng = np.random.default_rng(35)
    z = rng.standard_normal((60, 5))
    a = ind.dhsic_test(z, n_permutations=150, random_state=7)
    b = ind.dhsic_test(z, n_permutations=150, random_state=7)
    assert a.p_value == b.p_value and a.details["null_mean"] == b.details["null_mean"]
    # a list of one-column variables takes the unbatched path: same permutations, same null
    c = ind.dhsic_test([z[:, [j]] for j in range(5)], n_permutations=150, random_state=7)
    assert c.p_value == a.p_value
    assert c.details["null_mean"] == pytest.approx(a.details["null_mean"], rel=1e-12)


def test_mutual_dependence_matches_plain_formula():
    rng = np.random.default_rng(36)
    n, d = 120, 4
    z = rng.standard_normal((n, d))
    z[:, 3] = z[:, 0] * z[:, 1] + 0.1 * rng.standard_normal(n)
    want = []
    for j in range(d):
        u = z / np.array([median_dist(z[:, i]) for i in range(d)])
        k = gram(u[:, j], 1.0)
        ell = gram(np.delete(u, j, axis=1), math.sqrt(d - 1))
        want.append(hsic_b(k, ell) / math.sqrt(hsic_b(k, k) * hsic_b(ell, ell)))
    got = ind.mutual_dependence(z, reduction="none")
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert ind.mutual_dependence(z) == pytest.approx(np.mean(want), rel=1e-9)
    iid = ind.mutual_dependence(rng.standard_normal((n, d)))
    assert iid < 0.5 * np.mean(want)
    with pytest.warns(ind.ConstantVariableWarning):
        vals = ind.mutual_dependence(np.c_[z, np.ones(n)], reduction="none")
    assert vals[-1] == 0.0


# ----------------------------------------------------------------------------- calibration


def _null(kind: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal((n, d)) if kind == "gaussian" else rng.laplace(size=(n, d))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
@pytest.mark.parametrize("d", [2, 8, 64])
def test_recommended_dhsic_test_type_one_rate(kind, d):
    seeds, rej = 200, 0
    for s in range(seeds):
        z = _null(kind, 256, d, np.random.default_rng(70_000 + 1000 * d + s))
        rej += ind.dhsic_test(z, n_permutations=19, random_state=s).p_value <= 0.05
    assert 0.02 <= rej / seeds <= 0.09, rej


@pytest.mark.slow
@pytest.mark.parametrize("alternative", ["factor", "scale"])
def test_recommended_dhsic_test_power_at_d64(alternative):
    n, d, hits = 512, 64, 0
    for s in range(20):
        rng = np.random.default_rng(80_000 + s)
        if alternative == "factor":  # pairwise correlation 0.1
            z = np.sqrt(0.9) * rng.standard_normal((n, d)) + np.sqrt(0.1) * rng.standard_normal(
                (n, 1)
            )
        else:  # Z_j = s e_j: uncorrelated but dependent
            z = np.exp(0.5 * rng.standard_normal((n, 1))) * rng.standard_normal((n, d))
        hits += ind.dhsic_test(z, n_permutations=39, random_state=s).p_value <= 0.05
    assert hits >= 18, hits
