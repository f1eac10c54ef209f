"""vcreg.functional against plain NumPy float64 references written here from PAPER.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vcreg import functional as VF

RTOL = 1e-5


# ----------------------------------------------------------------------------- references
def ref_cov_matrix(z: np.ndarray) -> np.ndarray:
    return np.cov(z, rowvar=False, ddof=1)


def ref_variance(z, gamma=1.0, eps=1e-4):
    c = ref_cov_matrix(z)
    return np.mean(np.maximum(0.0, gamma - np.sqrt(np.diag(c) + eps)))


def ref_covariance(z):
    c = ref_cov_matrix(z)
    k = c.shape[0]
    return (np.sum(c**2) - np.sum(np.diag(c) ** 2)) / k


def ref_vicreg(a, b, lam=25.0, mu=25.0, nu=1.0):
    inv = np.mean((a - b) ** 2)
    var = (ref_variance(a) + ref_variance(b)) / 2
    cov = ref_covariance(a) + ref_covariance(b)
    return lam * inv + mu * var + nu * cov, inv, var, cov


def ref_barlow(a, b, lam=0.0051, eps=1e-5):
    n = a.shape[0]
    an = (a - a.mean(0)) / np.sqrt(a.var(0) + eps)  # np.var is biased (ddof=0)
    bn = (b - b.mean(0)) / np.sqrt(b.var(0) + eps)
    c = an.T @ bn / n
    on = np.sum((1 - np.diag(c)) ** 2)
    off = np.sum(c**2) - np.sum(np.diag(c) ** 2)
    return on + lam * off, on, off


def ref_whiten(x, eps=0.0):
    xc = x - x.mean(0)
    c = np.cov(x, rowvar=False)
    c = (1 - eps) * c + eps * np.eye(c.shape[0])
    L = np.linalg.cholesky(c)
    return np.linalg.solve(L, xc.T).T


def ref_wmse(a, b, perms, w_size, eps=0.0):
    total = 0.0
    for perm in perms:
        wa = np.zeros_like(a)
        wb = np.zeros_like(b)
        for idx in perm.reshape(-1, w_size):
            wa[idx] = ref_whiten(a[idx], eps)
            wb[idx] = ref_whiten(b[idx], eps)
        wa /= np.linalg.norm(wa, axis=1, keepdims=True)
        wb /= np.linalg.norm(wb, axis=1, keepdims=True)
        total += np.mean(np.sum((wa - wb) ** 2, axis=1))
    return total / len(perms)


def _data(n, k, dtype, seed=0, corr=True):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, k, generator=g, dtype=torch.float64)
    if corr:  # correlated, non-unit-variance, well-conditioned (mixing has cond < ~5)
        z = (
            z
            @ (
                torch.eye(k, dtype=torch.float64)
                + 0.3 * torch.randn(k, k, generator=g, dtype=torch.float64) / k**0.5
            )
            * 0.5
        )
    return z.to(dtype)


def _np(t):
    return t.detach().double().numpy()


DTYPES = [torch.float32, torch.float64]
SHAPES = [(16, 48), (40, 12), (7, 7)]


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_terms_match_reference(dtype, shape):
    z = _data(*shape, dtype)
    assert VF.variance_loss(z).dtype == dtype
    np.testing.assert_allclose(VF.variance_loss(z).item(), ref_variance(_np(z)), rtol=RTOL)
    np.testing.assert_allclose(
        VF.variance_loss(z, gamma=2.0, eps=1e-2).item(),
        ref_variance(_np(z), 2.0, 1e-2),
        rtol=RTOL,
    )
    for method in ("auto", "cov", "gram"):
        np.testing.assert_allclose(
            VF.covariance_loss(z, method=method).item(), ref_covariance(_np(z)), rtol=RTOL
        )
    out = VF.vcreg_loss(z, mu=3.0, nu=2.0)
    np.testing.assert_allclose(
        out.item(), 3 * ref_variance(_np(z)) + 2 * ref_covariance(_np(z)), rtol=RTOL
    )
    assert set(out.terms) == {"variance", "covariance"}
    assert not out.terms["covariance"].requires_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_vicreg_matches_reference(dtype, shape):
    a = _data(*shape, dtype, seed=1)
    b = a + 0.3 * _data(*shape, dtype, seed=2, corr=False)
    out = VF.vicreg_loss(a, b)
    total, inv, var, cov = ref_vicreg(_np(a), _np(b))
    np.testing.assert_allclose(out.item(), total, rtol=RTOL)
    np.testing.assert_allclose(out.terms["invariance"].item(), inv, rtol=RTOL)
    np.testing.assert_allclose(out.terms["variance"].item(), var, rtol=RTOL)
    np.testing.assert_allclose(out.terms["covariance"].item(), cov, rtol=RTOL)
    np.testing.assert_allclose(VF.invariance_loss(a, b).item(), inv, rtol=RTOL)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_barlow_twins_matches_reference(dtype, shape):
    a = _data(*shape, dtype, seed=3)
    b = a + 0.5 * _data(*shape, dtype, seed=4, corr=False)
    total, on, off = ref_barlow(_np(a), _np(b))
    for method in ("auto", "cov", "gram"):
        out = VF.barlow_twins_loss(a, b, method=method)
        np.testing.assert_allclose(out.item(), total, rtol=RTOL)
        np.testing.assert_allclose(out.terms["invariance"].item(), on, rtol=RTOL)
        np.testing.assert_allclose(out.terms["redundancy"].item(), off, rtol=RTOL)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wmse_matches_reference(dtype):
    n, k, w = 48, 6, 16
    a = _data(n, k, dtype, seed=5)
    b = a + 0.5 * _data(n, k, dtype, seed=6, corr=False)
    perm = torch.stack(
        [torch.randperm(n, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    )
    out = VF.wmse_loss(a, b, w_size=w, w_iter=2, perm=perm)
    ref = ref_wmse(_np(a), _np(b), perm.numpy(), w)
    np.testing.assert_allclose(out.item(), ref, rtol=RTOL)
    out = VF.wmse_loss(a, b, w_size=None, eps=0.1)
    np.testing.assert_allclose(
        out.item(), ref_wmse(_np(a), _np(b), [np.arange(n)], n, eps=0.1), rtol=RTOL
    )


def test_whiten_gives_identity_covariance():
    x = _data(64, 8, torch.float64, seed=7)
    w = VF.whiten(x)
    np.testing.assert_allclose(np.cov(_np(w), rowvar=False), np.eye(8), atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wmse_singular_covariance_does_not_crash(dtype):
    a = _data(32, 8, dtype, seed=8)
    a[:, 1] = a[:, 0]  # rank-deficient: Cholesky of C fails (or gives a rounding-level pivot)
    b = a + 0.1 * _data(32, 8, dtype, seed=9, corr=False)
    with pytest.warns(RuntimeWarning, match="singular"):
        out = VF.wmse_loss(a, b, w_size=None)
    assert torch.isfinite(out)
    with pytest.warns(RuntimeWarning, match="singular"):
        w = VF.whiten(a)
    assert w.abs().max() < 100  # no blow-up from a near-zero pivot
    # an explicit shrinkage makes it well-posed without a warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(VF.wmse_loss(a, b, w_size=None, eps=0.05))


# ----------------------------------------------------------------------------- Gram trick
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(12, 40), (40, 12)])
def test_gram_and_cov_paths_equal_values_and_gradients(dtype, rtol, shape):
    z = _data(*shape, dtype, seed=10)
    grads, vals = {}, {}
    for method in ("cov", "gram"):
        x = z.clone().requires_grad_(True)
        v = VF.covariance_loss(x, method=method)
        v.backward()
        vals[method], grads[method] = v.item(), x.grad
    np.testing.assert_allclose(vals["gram"], vals["cov"], rtol=rtol)
    scale = grads["cov"].abs().max().item()
    np.testing.assert_allclose(_np(grads["gram"]), _np(grads["cov"]), rtol=rtol, atol=rtol * scale)
    # Barlow Twins' off-diagonal term too
    b = _data(*shape, dtype, seed=11)
    bt_grads = {}
    for method in ("cov", "gram"):
        x = z.clone().requires_grad_(True)
        VF.barlow_twins_loss(x, b, method=method).backward()
        bt_grads[method] = x.grad
    scale = bt_grads["cov"].abs().max().item()
    np.testing.assert_allclose(
        _np(bt_grads["gram"]), _np(bt_grads["cov"]), rtol=10 * rtol, atol=10 * rtol * scale
    )


def test_gradient_matches_reference_autograd():
    # autograd through the plain k×k formula written here (float64)
    z = _data(10, 30, torch.float64, seed=12).requires_grad_(True)
    zc = z - z.mean(0)
    c = zc.T @ zc / 9
    off = c - torch.diag(torch.diag(c))
    ref = (off**2).sum() / 30
    (g_ref,) = torch.autograd.grad(ref, z)
    (g,) = torch.autograd.grad(VF.covariance_loss(z), z)
    np.testing.assert_allclose(_np(g), _np(g_ref), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["auto", "cov", "gram"])
@pytest.mark.parametrize("shape", [(10, 30), (30, 10)])
def test_vcreg_gradient_matches_plain_autograd(method, shape):
    n, k = shape
    # feature scales from 0.3 to 1.8: the variance hinge is active for some features only
    scales = torch.linspace(0.3, 1.8, k, dtype=torch.float64)
    z = (_data(n, k, torch.float64, seed=16) * scales).requires_grad_(True)
    zc = z - z.mean(0)
    c = zc.T @ zc / (n - 1)
    var = torch.relu(1 - torch.sqrt(torch.diag(c) + 1e-4)).mean()
    cov = ((c - torch.diag(torch.diag(c))) ** 2).sum() / k
    (g_ref,) = torch.autograd.grad(25 * var + cov, z)
    (g,) = torch.autograd.grad(VF.vcreg_loss(z, method=method), z)
    np.testing.assert_allclose(_np(g), _np(g_ref), rtol=1e-9, atol=1e-12)
    assert 0 < (torch.diag(c) < 1).sum() < k


class _MaxNumel(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.max_numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.max_numel = max(self.max_numel, t.numel())
        return out


@pytest.mark.parametrize("fn", ["cov", "bt", "vicreg"])
def test_auto_never_forms_k_by_k_matrix_when_n_small(fn):
    n, k = 16, 1024
    a = torch.randn(n, k, requires_grad=True)
    b = torch.randn(n, k)
    with _MaxNumel() as mode:
        if fn == "cov":
            loss = VF.covariance_loss(a)
        elif fn == "bt":
            loss = VF.barlow_twins_loss(a, b)
        else:
            loss = VF.vicreg_loss(a, b)
        loss.backward()
    assert mode.max_numel <= n * k  # the k×k matrix would be 64× larger
    with _MaxNumel() as mode:
        VF.covariance_loss(a, method="cov")
    assert mode.max_numel >= k * k


# ----------------------------------------------------------------------------- dtypes, shapes
@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_computed_in_float32(half):
    z = _data(16, 32, torch.float32, seed=13).to(half)
    b = _data(16, 32, torch.float32, seed=14).to(half)
    for fn, args in [
        (VF.variance_loss, (z,)),
        (VF.covariance_loss, (z,)),
        (VF.vcreg_loss, (z,)),
        (VF.vicreg_loss, (z, b)),
        (VF.barlow_twins_loss, (z, b)),
    ]:
        out = fn(*args)
        ref = fn(*(t.float() for t in args))
        assert out.dtype == torch.float32
        np.testing.assert_allclose(out.item(), ref.item(), rtol=1e-6)
    x = z.clone().requires_grad_(True)
    VF.vcreg_loss(x).backward()
    assert x.grad.dtype == half and torch.isfinite(x.grad.float()).all()


def test_autocast_region_still_computes_in_float32():
    a = _data(16, 64, torch.float32, seed=17)
    b = _data(16, 64, torch.float32, seed=18)
    ref = VF.vicreg_loss(a, b).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = VF.vicreg_loss(a, b)
        bt = VF.barlow_twins_loss(a, b)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.item(), ref, rtol=1e-6)
    np.testing.assert_allclose(bt.item(), VF.barlow_twins_loss(a, b).item(), rtol=1e-6)


def test_leading_dims_are_flattened():
    z = _data(24, 10, torch.float64, seed=15)
    np.testing.assert_allclose(
        VF.vcreg_loss(z.reshape(6, 4, 10)).item(), VF.vcreg_loss(z).item(), rtol=1e-12
    )


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.randn(1, 8), "batch size 1"),
        (torch.randn(8), "shape"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or Inf"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "NaN or Inf"),
    ],
)
def test_bad_input_raises_value_error(bad, match):
    for fn in (VF.variance_loss, VF.covariance_loss, VF.vcreg_loss):
        with pytest.raises(ValueError, match=match):
            fn(bad)


def test_bad_input_other_errors():
    with pytest.raises(TypeError, match="floating-point"):
        VF.covariance_loss(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        VF.covariance_loss(np.ones((4, 3)))
    with pytest.raises(ValueError, match="unknown covariance method"):
        VF.covariance_loss(torch.randn(4, 3), method="fast")
    with pytest.raises(ValueError, match="same shape"):
        VF.vicreg_loss(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="same shape"):
        VF.barlow_twins_loss(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="too small"):
        VF.wmse_loss(torch.randn(64, 40), torch.randn(64, 40), w_size=64)
    with pytest.raises(ValueError, match="multiple of w_size"):
        VF.wmse_loss(torch.randn(40, 4), torch.randn(40, 4), w_size=16)
