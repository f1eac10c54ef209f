"""Shift and scale invariance of the kernel statistics (issue 30, item 4).

HSIC with translation-invariant kernels (and the linear kernel, through the centring matrix) does
not change when a constant is added to a variable; with median-type bandwidths it does not
change when a variable is rescaled either. Every column is centred (and, where the statistic is
scale-free, scaled by a power of two) in float64 before any float32 step, so these hold in
floating point too, up to the rounding of the shifted input itself.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from vcreg import independence as ind


def _planted(n=300, d=6, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    z[:, 1] = np.cos(2 * z[:, 0]) + 0.3 * rng.standard_normal(n)
    return z


@pytest.mark.parametrize("method", ["exact", "lowrank"])
def test_offset_1e8_changes_no_tested_pair_or_p_value(method):
    z = _planted()
    base = ind.pairwise_hsic_test(z, method=method, correction="holm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no constant column, no numpy warning
        shifted = ind.pairwise_hsic_test(z + 1e8, method=method, correction="holm")
    assert shifted["n_pairs"] == base["n_pairs"] == 15
    assert shifted["n_significant"] == base["n_significant"] == 1
    iu = np.triu_indices(6, 1)
    assert not np.isnan(shifted["p_values"][iu]).any()
    # the shifted input is rounded to ulp(1e8) = 1.5e-8: statistics move at that level only
    np.testing.assert_allclose(shifted["p_values"][iu], base["p_values"][iu], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(shifted["hsic"], base["hsic"], rtol=1e-5, atol=1e-12)


def test_scale_of_each_feature_changes_nothing():
    z = _planted()
    scales = np.array([1e-30, 3.0, 1e30, 7e-5, 1.0, 2.5e12])
    base = ind.pairwise_hsic_test(z)
    scaled = ind.pairwise_hsic_test(z * scales)
    iu = np.triu_indices(6, 1)
    np.testing.assert_allclose(scaled["p_values"][iu], base["p_values"][iu], rtol=1e-9)
    np.testing.assert_allclose(
        ind.pairwise_hsic(z * scales), ind.pairwise_hsic(z), rtol=1e-9, atol=1e-15
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_single_pair_and_dhsic_statistics_are_shift_invariant(dtype):
    z = _planted(n=200)
    x, y = z[:, 0], z[:, 1]
    for kernel in ("gaussian", "laplacian", "linear"):
        for est in ("biased", "unbiased"):
            a = ind.hsic(x, y, kernel=kernel, estimator=est, dtype=dtype)
            b = ind.hsic(x + 1e8, y - 5e7, kernel=kernel, estimator=est, dtype=dtype)
            assert b == pytest.approx(a, rel=2e-3 if dtype == torch.float32 else 1e-5)
    assert ind.dhsic(z[:, :3] + 1e8, dtype=dtype) == pytest.approx(
        ind.dhsic(z[:, :3], dtype=dtype), rel=2e-3 if dtype == torch.float32 else 1e-6
    )


def test_near_constant_column_is_tested_not_dropped():
    """A column varying at 1e-12 of its level is real data in float64: all 55 pairs tested."""
    rng = np.random.default_rng(1)
    z = rng.standard_normal((300, 11))
    z[:, 3] = 1 + 1e-12 * rng.standard_normal(300)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ind.pairwise_hsic_test(z)
    assert res["n_pairs"] == 55
    assert not np.isnan(res["p_values"][np.triu_indices(11, 1)]).any()


def test_constant_up_to_input_rounding_is_constant():
    """float32 data equal up to float32 rounding (a saturated unit) is a constant column."""
    rng = np.random.default_rng(2)
    z = rng.standard_normal((200, 4)).astype(np.float32)
    z[:, 2] = np.float32(0.7) + np.float32(0.7) * np.finfo(np.float32).eps * rng.integers(0, 2, 200)
    with pytest.warns(ind.ConstantVariableWarning, match="column 2"):
        res = ind.pairwise_hsic_test(z)
    assert res["n_pairs"] == 3
    assert np.isnan(res["p_values"][2, 0])
