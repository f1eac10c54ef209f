"""Issue 13 edges of vcreg.independence: extreme magnitudes, integer tensors, median_samples.

Each test failed on main before the fix (NaN / 0 results, IndexError) except the integer one,
which guards the cast to float64 (an int64 tensor must give the float result).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vcreg import independence as ind


@pytest.fixture
def pair():
    rng = np.random.default_rng(50)
    x = rng.standard_normal(120)
    return x, x**2 + 0.5 * rng.standard_normal(120)


@pytest.mark.parametrize("scale", [1e160, 1e200, 1e-160, 1e-200])
def test_extreme_magnitudes_are_rescaled_exactly(pair, scale):
    x, y = pair
    assert ind.hsic(x * scale, y) == pytest.approx(ind.hsic(x, y), rel=1e-12)
    r = ind.hsic_test(x * scale, y * scale, "permutation", 99, random_state=1)
    ref = ind.hsic_test(x, y, "permutation", 99, random_state=1)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-12) and r.p_value == ref.p_value
    z = np.c_[x, y, np.cos(x)]
    zs = z.copy()
    zs[:, 1] *= scale  # one column scaled: per-column rescaling
    np.testing.assert_allclose(ind.pairwise_hsic(zs), ind.pairwise_hsic(z), rtol=1e-10)
    assert ind.dhsic(zs) == pytest.approx(ind.dhsic(z), rel=1e-10)
    t = ind.dhsic_test(zs, n_permutations=49)
    assert math.isfinite(t.statistic) and t.p_value == ind.dhsic_test(z, n_permutations=49).p_value
    assert ind.bandwidth(x * scale) == pytest.approx(ind.bandwidth(x) * scale, rel=1e-12)
    res = ind.pairwise_hsic_test(zs, correction="none")
    np.testing.assert_allclose(
        res["p_values"], ind.pairwise_hsic_test(z, correction="none")["p_values"], rtol=1e-8
    )
    assert ind.mutual_dependence(zs) == pytest.approx(ind.mutual_dependence(z), rel=1e-10)
    assert ind.effective_rank(z * scale) == pytest.approx(ind.effective_rank(z), rel=1e-10)
    s = ind.feature_std_summary(zs)
    assert s["std"][1] == pytest.approx(np.std(y, ddof=1) * scale, rel=1e-10)


def test_fixed_bandwidth_or_linear_kernel_with_extreme_values_raise(pair):
    x, y = pair
    with pytest.raises(ValueError, match="over/underflow"):
        ind.hsic(x * 1e200, y, bandwidth=1.0)
    with pytest.raises(ValueError, match="over/underflow"):
        ind.hsic(x * 1e200, y, kernel="linear")
    with pytest.raises(ValueError, match="over/underflow"):
        ind.dhsic(np.c_[x * 1e-200, y], bandwidth=0.5)


def test_integer_tensors_are_cast_to_float(pair):
    x, y = pair
    xi = torch.as_tensor(np.round(x * 100)).to(torch.int64)
    yi = torch.as_tensor(np.round(y * 100)).to(torch.int64)
    want = ind.hsic(xi.double(), yi.double())
    assert ind.hsic(xi, yi) == pytest.approx(want, rel=1e-12)
    assert want > 0.01
    m = ind.pairwise_hsic(torch.stack([xi, yi], 1), normalized=False)
    assert float(m[0, 1]) == pytest.approx(want, rel=1e-10)


@pytest.mark.parametrize("bad", [0, 1, -3])
def test_median_samples_below_two_is_a_value_error(pair, bad):
    x, y = pair
    with pytest.raises(ValueError, match="median_samples"):
        ind.hsic(x, y, median_samples=bad)
    with pytest.raises(ValueError, match="median_samples"):
        ind.pairwise_hsic(np.c_[x, y], median_samples=bad)
    with pytest.raises(ValueError, match="median_samples"):
        ind.dhsic(np.c_[x, y], median_samples=bad)
    with pytest.raises(ValueError, match="median_samples"):
        ind.bandwidth(x, median_samples=bad)
    with pytest.raises(TypeError, match="median_samples"):
        ind.hsic(x, y, median_samples=2.5)


def test_permutation_pvalue_is_never_computed_from_nan():
    from vcreg.independence.hsic import _perm_pvalue

    with pytest.raises(ValueError, match="not finite"):
        _perm_pvalue(math.nan, np.zeros(9))
    with pytest.raises(ValueError, match="not finite"):
        _perm_pvalue(0.1, np.array([0.0, np.nan]))
    assert _perm_pvalue(1.0, np.zeros(9)) == pytest.approx(0.1)
