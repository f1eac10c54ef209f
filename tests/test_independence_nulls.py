"""The nulls of the all-pairs HSIC test (vcreg.independence.nulls).

References are independent of the implementation: HSIC written as the plain matrix formula
tr(K H L H) / n^2; scipy's hypergeometric law for binary pairs; the definition of a valid
p-value (P(p <= u) <= u) checked over thousands of permutations; Tarone's rule and the smallest
attainable p-value checked by brute force.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from vcreg import independence as ind
from vcreg.independence import nulls
from vcreg.independence.kernels import _column_sigmas


def _plain_hsic(x, y, sx, sy):
    n = x.size
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * sx * sx))
    ell = np.exp(-((y[:, None] - y[None, :]) ** 2) / (2 * sy * sy))
    h = np.eye(n) - 1 / n
    return np.trace(k @ h @ ell @ h) / n**2


def _mode(x):
    vals, counts = np.unique(x, return_counts=True)
    return float(vals[counts.argmax()])


def _exact(x, y, sy=None):
    """(p, n^2 HSIC_b) of one pair; y's bandwidth ``sy`` (default: its own median rule)."""
    sig = np.array([ind.bandwidth(x), ind.bandwidth(y) if sy is None else sy])
    t = nulls.active_table(np.c_[x, y], np.array([_mode(x), _mode(y)]), sig, "gaussian")
    p, s2 = nulls.exact_pvalues(t, np.array([0]), np.array([1]), "gaussian")
    return float(p[0]), float(s2[0])


def _relu(rng, n, frac):
    return np.maximum(rng.standard_normal(n) - stats.norm.isf(frac), 0)


def test_exact_statistic_equals_the_plain_formula():
    rng = np.random.default_rng(0)
    for x, y in (
        (_relu(rng, 300, 0.05), _relu(rng, 300, 0.2)),
        (1.0 * (rng.random(300) < 0.1), _relu(rng, 300, 0.5)),
        (_relu(rng, 300, 0.05) + 7.0, rng.standard_normal(300)),  # mode 7, dense y
    ):
        p, s2 = _exact(x, y)
        want = _plain_hsic(x, y, ind.bandwidth(x), ind.bandwidth(y))
        assert s2 / x.size**2 == pytest.approx(want, rel=1e-9)
        assert 0 < p <= 1


def test_binary_pair_exact_null_is_the_hypergeometric_law():
    """Binary columns: n HSIC_b is a function of the overlap M alone, so the bound is exact and
    the p-value is twice the smaller of two hypergeometric tails (Bonferroni of two exact ones)."""
    rng = np.random.default_rng(1)
    n, kx, ky = 400, 30, 45
    x = np.zeros(n)
    x[rng.choice(n, kx, replace=False)] = 1
    y = np.zeros(n)
    y[np.r_[np.nonzero(x)[0][:12], rng.choice(np.nonzero(x == 0)[0], ky - 12, replace=False)]] = 1
    m_obs = int((x * y).sum())
    h = stats.hypergeom(n, kx, ky)
    mu = kx * ky / n
    m = np.arange(0, min(kx, ky) + 1)
    p_stat = h.pmf(m)[np.abs(m - mu) >= abs(m_obs - mu) - 1e-9].sum()
    p_over = 2 * min(h.sf(m_obs - 1), h.cdf(m_obs))
    p, _ = _exact(x, y)
    assert p == pytest.approx(min(1, 2 * min(p_stat, p_over)), rel=1e-9)
    assert p < 1e-4


@pytest.mark.parametrize("kind", ["relu", "binary-relu"])
def test_exact_null_is_a_valid_p_value_under_permutation(kind):
    """P(p <= u) <= u over 3000 random permutations of y (the null the test conditions on)."""
    rng = np.random.default_rng(2)
    n, b = 200, 3000
    x = _relu(rng, n, 0.08) if kind == "relu" else 1.0 * (rng.random(n) < 0.1)
    y = _relu(rng, n, 0.12)
    cols = np.c_[x, np.stack([rng.permutation(y) for _ in range(b)], 1)]
    sig = np.r_[ind.bandwidth(x), np.full(b, ind.bandwidth(y))]  # marginal: permutation-free
    t = nulls.active_table(cols, np.array([_mode(x)] + [0.0] * b), sig, "gaussian")
    ps, _ = nulls.exact_pvalues(t, np.zeros(b, int), np.arange(1, b + 1), "gaussian")
    for u in (0.01, 0.05, 0.2, 0.5):
        assert (ps <= u).mean() <= u + 3 * math.sqrt(u * (1 - u) / ps.size), u


def test_smallest_attainable_p_value_holds_over_all_permutations():
    x = np.array([0, 0, 0, 0, 1.0, 2.0, 0])
    y = np.array([0, 3.0, 0, 0, 0, 1.5, 0.5])
    perms = np.array(list(itertools.permutations(range(7))))
    cols = np.c_[x, y[perms].T]
    sig = np.r_[ind.bandwidth(x), np.full(len(perms), ind.bandwidth(y))]
    t = nulls.active_table(cols, np.zeros(cols.shape[1]), sig, "gaussian")
    ps, _ = nulls.exact_pvalues(
        t, np.zeros(len(perms), int), np.arange(1, len(perms) + 1), "gaussian"
    )
    lowest = ps.min()
    assert lowest >= nulls.min_attainable(np.array([2]), np.array([3]), 7)[0] - 1e-12


def test_tarone_keep_matches_its_definition():
    rng = np.random.default_rng(3)
    for always in (0, 5, 40):
        pmin = 10 ** rng.uniform(-6, 0, 200)
        got = nulls.tarone_keep(always, pmin, 0.05)
        k = next(
            k for k in range(max(1, always), always + 201) if always + (pmin <= 0.05 / k).sum() <= k
        )
        np.testing.assert_array_equal(got, pmin <= 0.05 / k)


def test_saddlepoint_is_warning_free_at_the_extremes():
    w = np.array([[1.0, 0.5, 0, 0], [1e-300, 0, 0, 0], [0, 0, 0, 0], [3.0, 3.0, 3.0, 3.0]])
    x = np.array([1e6, 1e-290, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = nulls.saddlepoint_sf(x, w)
        p2 = nulls.saddlepoint_sf(np.array([0.0, -1.0, 1e-320, 1e300]), np.ones((4, 64)))
    assert p[0] == 0.0 or p[0] < 1e-100
    assert np.isnan(p[2]) and p[3] == 1.0
    np.testing.assert_array_equal(p2[:2], [1.0, 1.0])
    assert p2[3] == 0.0


@pytest.mark.parametrize("n", [300, 1000, 2000])
def test_criterion_predicts_binary_tail_errors(n):
    """For binary pairs the exact permutation law is hypergeometric: where the criterion keeps
    the spectral null (E <= EDGEWORTH_TOL) the chi-square tail at 1e-6 is within 1.6x of the
    truth, and every pair off by more than 2x is flagged."""
    rng = np.random.default_rng(4)
    fracs = [0.01, 0.03, 0.05, 0.1, 0.2, 0.3, 0.5]
    cols = []
    for f in fracs:
        c = np.zeros(n)
        c[rng.choice(n, max(1, round(f * n)), replace=False)] = 1
        cols.append(c)
    z = torch.as_tensor(np.stack(cols, 1))
    sig, _ = _column_sigmas(z, "median", 256)
    prof = nulls.column_profiles(z, sig, "gaussian", 2**30)
    i, j = np.triu_indices(len(fracs))
    err = nulls.spectral_tail_error(i, j, prof, n, 1e-6)
    zq = stats.norm.isf(0.5e-6)
    for a, b, e in zip(i, j, err, strict=True):
        h = stats.hypergeom(n, int(cols[a].sum()), int(cols[b].sum()))
        lo, hi = h.mean() - zq * h.std(), h.mean() + zq * h.std()
        ratio = (h.cdf(math.floor(lo)) + h.sf(math.ceil(hi) - 1)) / 1e-6
        if e <= nulls.EDGEWORTH_TOL:
            assert ratio <= 1.6, (n, fracs[a], fracs[b], e, ratio)
        if ratio > 2:
            assert e > nulls.EDGEWORTH_TOL, (n, fracs[a], fracs[b], e, ratio)


def test_choose_null():
    err = np.array([0.1, 1.0, 1.0, 50.0, 50.0])
    ki = np.array([10, 10, 900, 10, 900])
    kj = np.array([10, 10, 10, 10, 900])
    got = nulls.choose_null(err, ki, kj, 1000)
    want = [nulls.SPECTRAL, nulls.EXACT, nulls.CORRECTED, nulls.EXACT, nulls.EXACT]
    np.testing.assert_array_equal(got, want)


def test_vectorised_pairs_equal_one_at_a_time():
    """Many pairs at once (chunked self-joins, padded supports) = each pair alone."""
    rng = np.random.default_rng(5)
    n = 400
    cols = [_relu(rng, n, f) for f in (0.02, 0.05, 0.1, 0.3)] + [1.0 * (rng.random(n) < 0.04)]
    x = np.stack(cols, 1)
    modes = np.array([_mode(c) for c in cols])
    sig = np.array([ind.bandwidth(c) for c in cols])
    t = nulls.active_table(x, modes, sig, "gaussian")
    i, j = np.triu_indices(len(cols), 1)
    p, s2 = nulls.exact_pvalues(t, i, j, "gaussian")
    for a, b, pa, sa in zip(i, j, p, s2, strict=True):
        want_p, want_s = _exact(cols[a], cols[b])
        assert pa == pytest.approx(want_p, rel=1e-12) and sa == pytest.approx(want_s, rel=1e-12)
        assert sa / n**2 == pytest.approx(_plain_hsic(cols[a], cols[b], sig[a], sig[b]), rel=1e-9)
