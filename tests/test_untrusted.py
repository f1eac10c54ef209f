"""Untrusted input: exported encoder files that cannot steer vcreg, and independence-function
inputs (dtype, complex data, extreme bandwidths) that give the right number or a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcreg import independence as ind


def _hsic_reference(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Biased HSIC written plainly: tr(K H L H) / n², Gaussian kernels exp(-d²/(2 sigma²))."""
    n = len(x)
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * sigma**2))
    l_ = np.exp(-((y[:, None] - y[None, :]) ** 2) / (2 * sigma**2))
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l_ @ h)) / n**2


# ----------------------------------------------------------------------------- independence input


def test_integer_data_is_converted_and_gives_the_float_answer():
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, size=80)
    y = x**2 + rng.integers(-2, 3, size=80)
    ref = _hsic_reference(x.astype(float), y.astype(float), 3.0)
    for xi, yi in ((x, y), (torch.from_numpy(x), torch.from_numpy(y))):
        assert ind.hsic(xi, yi, bandwidth=3.0) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.bool, "float64"])
def test_a_non_float_compute_dtype_is_a_clear_error(dtype):
    x = np.arange(20.0)
    calls = [
        lambda: ind.hsic(x, x**2, dtype=dtype),
        lambda: ind.pairwise_hsic(np.stack([x, x**2], 1), dtype=dtype),
        lambda: ind.dhsic([x, x**2], dtype=dtype),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
            call()


def test_complex_input_is_refused_everywhere():
    z = np.arange(20.0) + 1j * np.arange(20.0)[::-1]
    calls = [
        lambda v: ind.hsic(v, np.arange(20.0)),
        lambda v: ind.pairwise_hsic(np.stack([v, v], 1)),
        lambda v: ind.dhsic([v, np.arange(20.0)]),
        lambda v: ind.bandwidth(v),
    ]
    for call in calls:
        for v in (z, torch.from_numpy(z)):
            with pytest.raises(TypeError, match="complex data"):
                call(v)


# Gaussian: 2·sigma² must be a normal float32; Laplacian: sigma itself
@pytest.mark.parametrize(
    ("bw", "kernel"),
    [(1e-300, "gaussian"), (1e-30, "gaussian"), (1e30, "gaussian"), (1e300, "gaussian")]
    + [(1e-300, "laplacian"), (1e-45, "laplacian"), (1e300, "laplacian")],
)
def test_a_bandwidth_that_under_or_overflows_is_a_clear_error(bw, kernel):
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    calls = [
        lambda: ind.hsic(x, y, kernel=kernel, bandwidth=bw),
        lambda: ind.hsic_test(x, y, kernel=kernel, bandwidth=bw),
        lambda: ind.pairwise_hsic(np.stack([x, y], 1), kernel=kernel, bandwidth=bw),
        lambda: ind.dhsic([x, y], kernel=kernel, bandwidth=bw),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="under/overflows"):
            call()


def test_a_small_but_representable_bandwidth_gives_the_formula_value():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = x + 0.1 * rng.normal(size=40)
    for sigma in (1e-3, 0.5, 1e3):
        assert ind.hsic(x, y, bandwidth=sigma) == pytest.approx(
            _hsic_reference(x, y, sigma), rel=1e-9, abs=1e-15
        )
