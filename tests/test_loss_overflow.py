"""Every public loss at |z| ∈ {1e4, 1e10, 1e20} in float64/float32/float16/bfloat16, forward
and backward: the value and gradient of a float64 reference written out below (on the same,
dtype-rounded input), or a ValueError naming the overflowing term and the input's scale —
never a silent inf/NaN or a wrong number (issues 23 and 24)."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

import vcreg
from vcreg import functional as VF
from vcreg.losses import SupervisedLoss, TwoViewVCRegLoss

SCALES = (1e4, 1e10, 1e20, 1e-30)  # (and tiny: scale-free losses must not see eps there)
DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)


# -- float64 references, written out -------------------------------------------------------------


def _v(z, gamma=1.0, eps=1e-4):
    return F.relu(gamma - torch.sqrt(z.var(0, unbiased=True) + eps)).mean()


def _c(z):
    zc = z - z.mean(0)
    cov = zc.T @ zc / (len(z) - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / z.shape[1]


def _mse(a, b):
    return (a - b).pow(2).mean()


def _bn(z):
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)


def _white(z):
    zc = z - z.mean(0)
    chol = torch.linalg.cholesky(zc.T @ zc / (len(z) - 1))
    return zc @ torch.linalg.inv(chol).T


def _ref_vcreg(a, b):
    return {"variance": _v(a), "covariance": _c(a)}, 25 * _v(a) + _c(a)


def _ref_twoview(a, b):
    terms = {"invariance": _mse(a, b), "covariance": (_c(a) + _c(b)) / 2}
    return terms, (25 * _v(a) + _c(a) + 25 * _v(b) + _c(b)) / 2 + _mse(a, b)


def _ref_vicreg(a, b):
    terms = {"invariance": _mse(a, b), "covariance": _c(a) + _c(b)}
    return terms, 25 * _mse(a, b) + 25 * (_v(a) + _v(b)) / 2 + _c(a) + _c(b)


def _ref_barlow(a, b):
    c = _bn(a).T @ _bn(b) / len(a)
    on = (1 - c.diagonal()).pow(2).sum()
    return {"invariance": on}, on + 0.0051 * (c.pow(2).sum() - c.diagonal().pow(2).sum())


def _ref_wmse(a, b):
    loss = 2 - 2 * F.cosine_similarity(_white(a), _white(b), dim=1).mean()
    return {"invariance": loss}, loss


def _ref_infonce(a, b, tau=0.5):
    u = torch.cat([a, b])
    u = u / u.norm(dim=1, keepdim=True)
    logits = (u @ u.T / tau).masked_fill(torch.eye(len(u), dtype=torch.bool), float("-inf"))
    n = len(a)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    loss = -logits.log_softmax(1)[torch.arange(2 * n), target].mean()
    return {"contrastive": loss}, loss


def _labels(n, k):
    return torch.arange(n) % k


def _ref_supervised(a, b):
    y = _labels(*a.shape)
    ce = lambda z: -z.log_softmax(1)[torch.arange(len(z)), y].mean()  # noqa: E731
    loss = (ce(a) + ce(b)) / 2
    return {"cross_entropy": loss}, loss


# name -> (what is called, its float64 reference)
LOSSES = {
    "VCRegLoss": (lambda a, b: vcreg.VCRegLoss()(a), _ref_vcreg),
    "vcreg_loss": (lambda a, b: VF.vcreg_loss(a), _ref_vcreg),
    "covariance_loss": (
        lambda a, b: VF.covariance_loss(a),
        lambda a, b: ({"covariance": _c(a)}, _c(a)),
    ),
    "variance_loss": (lambda a, b: VF.variance_loss(a), lambda a, b: ({}, _v(a))),
    "invariance_loss": (
        lambda a, b: VF.invariance_loss(a, b),
        lambda a, b: ({"invariance": _mse(a, b)}, _mse(a, b)),
    ),
    "TwoViewVCRegLoss": (lambda a, b: TwoViewVCRegLoss(invariance=1.0)(a, b), _ref_twoview),
    "VICRegLoss": (lambda a, b: vcreg.VICRegLoss()(a, b), _ref_vicreg),
    "vicreg_loss": (lambda a, b: VF.vicreg_loss(a, b), _ref_vicreg),
    "BarlowTwinsLoss": (lambda a, b: vcreg.BarlowTwinsLoss()(a, b), _ref_barlow),
    "barlow_twins_loss": (lambda a, b: VF.barlow_twins_loss(a, b), _ref_barlow),
    "WMSELoss": (lambda a, b: vcreg.WMSELoss(w_size=None)(a, b), _ref_wmse),
    "wmse_loss": (lambda a, b: VF.wmse_loss(a, b, w_size=None), _ref_wmse),
    "InfoNCELoss": (lambda a, b: vcreg.InfoNCELoss()(a, b), _ref_infonce),
    "SupervisedLoss": (lambda a, b: SupervisedLoss()(a, b, _labels(*a.shape)), _ref_supervised),
}


def _views(n, k, scale, dtype):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, k, generator=g, dtype=torch.float64) + torch.randn(k, generator=g)
    b = a + 0.3 * torch.randn(n, k, generator=g, dtype=torch.float64)
    return (a * scale).to(dtype), (b * scale).to(dtype)


def _check_overflow_error(err: ValueError, overflowing: list[str], a, b):
    msg = str(err)
    for name in overflowing:
        assert name in msg, msg
    # the message gives the input's scale: |z| = <its max over the view(s) passed, 3 digits>
    amax = float(a.double().abs().max())
    zmax = max(amax, float(b.double().abs().max()))
    shown = re.search(r"\|z\| = ([0-9.e+]+)", msg)
    assert shown, msg
    assert float(shown.group(1)) in (pytest.approx(amax, rel=1e-2), pytest.approx(zmax, rel=1e-2))


# n > k (covariance paths) and n < k (Gram paths; W-MSE needs n >= 2k, so not there)
CASES = [
    pytest.param(loss, scale, shape, id=f"{loss}-{scale:g}-{tag}")
    for loss in LOSSES
    for scale in SCALES
    for shape, tag in (((32, 8), "n>k"), ((8, 24), "n<k"))
    if not (loss.lower().startswith("wmse") and tag == "n<k")
]


@pytest.mark.parametrize("loss,scale,shape", CASES)
def test_loss_at_huge_scale_is_right_or_a_clear_error(loss, scale, shape):
    call, reference = LOSSES[loss]
    for dtype in DTYPES:
        if dtype == torch.float16 and scale < 1:  # 1e-30 is 0 in float16: nothing to test
            continue
        a, b = _views(*shape, scale, dtype)
        if not (torch.isfinite(a).all() and torch.isfinite(b).all()):  # beyond float16's range
            with pytest.raises(ValueError, match="contains NaN or Inf"):
                call(a, b)
            continue
        ra, rb = a.double().clone().requires_grad_(), b.double().clone()
        terms, total = reference(ra, rb)
        terms = {name: float(value.detach()) for name, value in terms.items()}
        ref_grad = torch.autograd.grad(total, ra)[0]
        compute = torch.float64 if dtype == torch.float64 else torch.float32
        big = torch.finfo(compute).max
        overflowing = [name for name, value in terms.items() if abs(value) > big]
        if overflowing or abs(float(total.detach())) > big:
            with pytest.raises(ValueError, match="overflows") as err:
                call(a, b)
            _check_overflow_error(err.value, overflowing, a, b)
            continue
        za = a.clone().requires_grad_()
        out = call(za, b)
        assert out.dtype == compute
        torch.testing.assert_close(out.double(), total.detach(), rtol=1e-4, atol=1e-6)
        if float(ref_grad.abs().max()) > torch.finfo(dtype).max:
            with pytest.raises(ValueError, match=r"gradient w\.r\.t\. z.* overflows") as err:
                out.backward()
            assert "|z" in str(err.value)
            continue
        out.backward()
        assert za.grad.dtype == dtype
        tol = 1e-5 if dtype in (torch.float64, torch.float32) else 2e-2
        # a gradient in float16's subnormal range is resolved to its spacing there (~6e-8)
        ulp = torch.finfo(dtype).tiny * torch.finfo(dtype).eps
        atol = tol * float(ref_grad.abs().max()) + ulp
        torch.testing.assert_close(
            za.grad.double(), ref_grad, rtol=tol, atol=atol, msg=f"{loss} {dtype}"
        )


def test_a_zero_covariance_at_huge_scale_is_zero_not_nan():
    """Issue 24: two orthogonal columns at scale s and two constant ones: c = 0, v = 0.495
    (float64: 12.375; float32 at 1e20 gave NaN). float32 cannot resolve the covariance there
    (its entries are rounded to ≈ ε·s²): a ValueError saying so, never NaN. Where it can, the
    term is ≥ 0 and within the rounding of its path of 0, and the total is 25·0.495 + c."""
    a = torch.tensor([1.0, -1, 1, -1, 1, -1, 1, -1])
    b = torch.tensor([1.0, 1, -1, -1, 1, 1, -1, -1])

    def z(scale, dtype):
        cols = [a * scale, b * scale, torch.full((8,), 3.0), torch.zeros(8)]
        return torch.stack(cols, 1).to(dtype).requires_grad_()

    for scale, dtype in ((1e20, torch.float64), (1e4, torch.float32), (1e4, torch.bfloat16)):
        eps = torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).eps
        for method in ("cov", "gram"):
            zz = z(scale, dtype)
            out = vcreg.VCRegLoss(method=method)(zz)
            assert float(out.terms["variance"]) == pytest.approx(0.495, rel=1e-6)
            cov = float(out.terms["covariance"])
            # ‖C‖_F² = 2·(8 s²/7)², the Gram path's cancellation error is ε·‖C‖_F²/k
            assert 0.0 <= cov <= 8 * eps * 2 * (8 * scale**2 / 7) ** 2 / 4
            assert float(out.detach()) == pytest.approx(25 * 0.495 + cov, rel=1e-6)
            out.backward()
            assert bool(torch.isfinite(zz.grad).all())
    with pytest.raises(ValueError, match=r"covariance term overflows.*resolved"):
        vcreg.VCRegLoss()(z(1e20, torch.float32))


def test_barlow_twins_is_scale_free_in_float32():
    """Issue 24: float32 Barlow Twins on inputs x 1e20 returned the dimension (16.0) with zero
    gradient. BN makes the loss scale-free up to its eps (1e-5, added to the variance): at any
    scale it must equal the float64 formula on the same inputs, with a nonzero gradient."""
    g = torch.Generator().manual_seed(0)
    za = torch.randn(64, 16, generator=g)
    zb = za + 0.5 * torch.randn(64, 16, generator=g)
    for scale in (1.0, 1e10, 1e20, 1e30):
        x = (za * scale).requires_grad_()
        out = vcreg.BarlowTwinsLoss()(x, zb * scale)
        ref = _ref_barlow((za * scale).double(), (zb * scale).double())[1]
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=0)
        assert float(out.detach()) < 1.0  # far from the collapsed value 16 (C = 0)
        out.backward()
        assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().max()) > 0


def test_a_float16_gradient_overflow_is_an_error_on_the_gathering_path_too(monkeypatch):
    """Under DDP the views are upcast before the all-gather; the float16 gradient check must
    be registered there as well (gather_with_grad is the identity without a process group)."""
    monkeypatch.setattr(vcreg.losses, "should_gather", lambda option: True)
    a, b = _views(32, 8, 1e4, torch.float16)
    za = a.clone().requires_grad_()
    out = vcreg.VICRegLoss()(za, b)
    with pytest.raises(ValueError, match=r"gradient w\.r\.t\. z_a overflows torch.float16"):
        out.backward()
    za.grad = None
    vcreg.VICRegLoss(check_finite=False)(za, b).backward()  # unchecked: as documented, inf
    assert not bool(torch.isfinite(za.grad).all())
