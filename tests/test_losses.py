"""Loss modules against lightly's implementations (a test dependency) and their behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightly.loss import BarlowTwinsLoss as LightlyBarlowTwins
from lightly.loss import NTXentLoss
from lightly.loss import VICRegLoss as LightlyVICReg
from lightly.loss.wmse_loss import WMSELoss as LightlyWMSE

import vcreg
from vcreg import BarlowTwinsLoss, InfoNCELoss, LossOutput, VCRegLoss, VICRegLoss, WMSELoss

DTYPES = [torch.float32, torch.float64]


def _views(n, k, dtype, seed=0, noise=0.4):
    g = torch.Generator().manual_seed(seed)
    mix = (
        torch.eye(k, dtype=torch.float64)
        + 0.4 * torch.randn(k, k, generator=g, dtype=torch.float64) / k**0.5
    )
    a = torch.randn(n, k, generator=g, dtype=torch.float64) @ mix * 0.7
    b = a + noise * torch.randn(n, k, generator=g, dtype=torch.float64)
    return a.to(dtype), b.to(dtype)


# ----------------------------------------------------------------------------- vs lightly
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(32, 64), (64, 16)])
def test_vicreg_equals_lightly(dtype, shape):
    a, b = _views(*shape, dtype)
    ours = VICRegLoss()(a, b)
    ref = LightlyVICReg()(a, b)
    assert ours.dtype == dtype
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-5)
    # gradients too
    xa, xb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    VICRegLoss()(xa, xb).backward()
    ya, yb = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    LightlyVICReg()(ya, yb).backward()
    scale = ya.grad.abs().max().item()
    np.testing.assert_allclose(xa.grad.numpy(), ya.grad.numpy(), rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(32, 64), (64, 16)])
def test_barlow_twins_equals_lightly(dtype, shape):
    a, b = _views(*shape, dtype, seed=1)
    # lightly's default lambda is 5e-3; the official value (ours) is 0.0051
    ours = BarlowTwinsLoss()(a, b)
    ref = LightlyBarlowTwins(lambda_param=0.0051)(a, b)
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-5)
    ours = BarlowTwinsLoss(lambda_=0.02)(a, b)
    ref = LightlyBarlowTwins(lambda_param=0.02)(a, b)
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_wmse_equals_lightly(dtype):
    n, k, w = 64, 8, 16
    a, b = _views(n, k, dtype, seed=2)
    for w_iter in (1, 2):
        torch.manual_seed(123)  # both draw their sub-batch split with torch.randperm
        ours = WMSELoss(w_size=w, w_iter=w_iter)(a, b)
        torch.manual_seed(123)
        ref = LightlyWMSE(embedding_dim=k, w_size=w, w_iter=w_iter, num_samples=2).to(dtype)(
            torch.cat([a, b])
        )
        np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-5)


# ----------------------------------------------------------------------------- behaviour
@pytest.mark.parametrize(
    "loss_fn,two_views,keys",
    [
        (VCRegLoss(), False, {"variance", "covariance"}),
        (VICRegLoss(), True, {"invariance", "variance", "covariance"}),
        (BarlowTwinsLoss(), True, {"invariance", "redundancy"}),
        (WMSELoss(w_size=16), True, {"invariance"}),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_output_is_float32_scalar_with_detached_terms(loss_fn, two_views, keys, dtype):
    a, b = _views(32, 8, torch.float32, seed=3)
    a = a.to(dtype).requires_grad_(True)
    b = b.to(dtype)
    out = loss_fn(a, b) if two_views else loss_fn(a)
    assert isinstance(out, LossOutput)
    assert out.dim() == 0 and out.dtype == torch.float32
    assert set(out.terms) == keys
    assert all(t.dim() == 0 and not t.requires_grad for t in out.terms.values())
    out.backward()
    assert a.grad is not None and a.grad.dtype == dtype


def test_terms_combine_to_loss():
    a, b = _views(24, 12, torch.float64, seed=4)
    out = VICRegLoss(lambda_=2.0, mu=3.0, nu=5.0)(a, b)
    t = out.terms
    np.testing.assert_allclose(
        out.item(), 2 * t["invariance"] + 3 * t["variance"] + 5 * t["covariance"], rtol=1e-12
    )
    out = VCRegLoss(mu=7.0, nu=0.5)(a)
    np.testing.assert_allclose(
        out.item(), 7 * out.terms["variance"] + 0.5 * out.terms["covariance"], rtol=1e-12
    )
    out = BarlowTwinsLoss(lambda_=0.1)(a, b)
    np.testing.assert_allclose(
        out.item(), out.terms["invariance"] + 0.1 * out.terms["redundancy"], rtol=1e-12
    )


def test_gather_option_without_process_group_is_identity():
    a, b = _views(16, 8, torch.float64, seed=5)
    for g in (None, True, False):
        np.testing.assert_allclose(
            VICRegLoss(gather_distributed=g)(a, b).item(), VICRegLoss()(a, b).item()
        )
    assert not vcreg.distributed.is_distributed()
    assert vcreg.distributed.gather_with_grad(a) is a


def test_public_api_exports():
    for name in ("VCRegLoss", "VICRegLoss", "BarlowTwinsLoss", "WMSELoss", "LossOutput"):
        assert getattr(vcreg, name) is getattr(vcreg.losses, name)
    assert callable(vcreg.functional.covariance_loss)
    assert callable(vcreg.distributed.gather_with_grad)


def test_module_errors_are_clear():
    a = torch.randn(8, 4)
    with pytest.raises(ValueError, match="same shape"):
        VICRegLoss()(a, torch.randn(8, 5))
    with pytest.raises(ValueError, match="batch size 1"):
        VCRegLoss()(torch.randn(1, 4))
    with pytest.raises(ValueError, match="batch size 1"):
        BarlowTwinsLoss()(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(ValueError, match="NaN or Inf"):
        VICRegLoss()(a, torch.full((8, 4), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        VCRegLoss()(torch.randn(8))
    with pytest.raises(ValueError, match="too small"):
        WMSELoss(w_size=16)(torch.randn(32, 16), torch.randn(32, 16))
    with pytest.raises(ValueError, match="multiple of w_size"):
        WMSELoss(w_size=16)(torch.randn(24, 4), torch.randn(24, 4))
    with pytest.raises(ValueError, match="gather_distributed"):
        VCRegLoss(gather_distributed="yes")
    with pytest.raises(ValueError, match="unknown covariance method"):
        VCRegLoss(method="fft")
    with pytest.raises(ValueError, match="w_iter"):
        WMSELoss(w_iter=0)


def _nt_xent_plain(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """SimCLR NT-Xent written out with loops: mean over the 2n anchors of −log softmax."""
    u = np.concatenate([a, b])
    u = u / np.linalg.norm(u, axis=1, keepdims=True)
    n2 = len(u)
    total = 0.0
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        sims = [u[i] @ u[j] / tau for j in range(n2) if j != i]
        total += -(u[i] @ u[pos] / tau) + np.log(np.sum(np.exp(sims)))
    return total / n2


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_infonce_equals_plain_formula_and_lightly(tau):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(12, 5, generator=g, dtype=torch.float64)
    b = a + 0.5 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    ours = InfoNCELoss(temperature=tau)(a, b)
    assert float(ours) == pytest.approx(_nt_xent_plain(a.numpy(), b.numpy(), tau), rel=1e-10)
    ref = NTXentLoss(temperature=tau)(a.float(), b.float())
    assert float(ours) == pytest.approx(float(ref), rel=1e-5)
    assert set(ours.terms) == {"contrastive", "positive_cosine"}
    cos = torch.nn.functional.cosine_similarity(a, b).mean()
    assert float(ours.terms["positive_cosine"]) == pytest.approx(float(cos), rel=1e-10)
    # gradient flows to both views
    a2, b2 = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    InfoNCELoss(temperature=tau)(a2, b2).backward()
    assert a2.grad.abs().sum() > 0 and b2.grad.abs().sum() > 0


def test_infonce_errors_are_clear():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(temperature=0.0)
    with pytest.raises(ValueError, match="same shape"):
        InfoNCELoss()(torch.randn(8, 4), torch.randn(8, 5))
    with pytest.raises(ValueError, match="NaN"):
        InfoNCELoss()(torch.full((8, 4), float("nan")), torch.randn(8, 4))


# ----------------------------------------------------------------------------- two-view VCReg
def _plain_vcreg(z: torch.Tensor, mu: float, nu: float, gamma: float = 1.0, eps: float = 1e-4):
    # the paper's formula written out: hinge on the per-feature std, mean squared off-diagonal
    n, k = z.shape
    zc = z - z.mean(0)
    std = torch.sqrt(zc.var(0, unbiased=True) + eps)
    v = torch.relu(gamma - std).mean()
    cov = zc.T @ zc / (n - 1)
    c = (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / k
    return mu * v + nu * c


def test_two_view_vcreg_equals_plain_formula():
    from vcreg.losses import TwoViewVCRegLoss

    a, b = _views(40, 12, torch.float64, seed=7)
    a = a * 0.6  # some features below the std target: the hinge is active
    out = TwoViewVCRegLoss(invariance=3.0, mu=5.0, nu=2.0)(a, b)
    want = (_plain_vcreg(a, 5.0, 2.0) + _plain_vcreg(b, 5.0, 2.0)) / 2 + 3.0 * (a - b).pow(2).mean()
    np.testing.assert_allclose(out.item(), want.item(), rtol=1e-10)
    np.testing.assert_allclose(out.terms["invariance"].item(), (a - b).pow(2).mean().item())
    # invariance 0 (the trainer's default) is VCReg on each view, averaged
    pure = TwoViewVCRegLoss(mu=5.0, nu=2.0)(a, b).item()
    np.testing.assert_allclose(
        pure, ((VCRegLoss(mu=5.0, nu=2.0)(a) + VCRegLoss(mu=5.0, nu=2.0)(b)) / 2).item()
    )


# ----------------------------------------------------------------------------- registry
def test_registry_is_what_trainer_and_config_use():
    from vcreg import losses
    from vcreg.training import TrainConfig, build_loss

    assert losses.available_losses()[:4] == ("vicreg", "vcreg", "barlow", "wmse")
    assert losses.loss_class("vcreg") is losses.TwoViewVCRegLoss
    assert losses.loss_params("vcreg") == {"invariance", "mu", "nu", "gamma", "eps"}
    cfg = TrainConfig.from_dict({"loss": {"name": "barlow", "params": {"lambda_": 0.01}}})
    built = build_loss(cfg)
    assert type(built) is BarlowTwinsLoss and built.lambda_ == 0.01 and not built.check_finite
    with pytest.raises(ValueError, match="unknown loss 'simclr'; available"):
        losses.loss_class("simclr")


def test_register_loss_extends_trainer_and_config():
    from vcreg import losses
    from vcreg.training import TrainConfig, build_loss

    class Cosine(torch.nn.Module):
        def __init__(self, scale: float = 1.0) -> None:
            super().__init__()
            self.scale = scale

        def forward(self, z_a, z_b):
            loss = self.scale * (1 - torch.nn.functional.cosine_similarity(z_a, z_b).mean())
            loss.terms = {"invariance": loss.detach()}
            return loss

    with pytest.raises(ValueError, match="loss.name: expected"):
        TrainConfig.from_dict({"loss": {"name": "cosine-test"}})
    losses.register_loss("cosine-test", Cosine)
    try:
        with pytest.raises(ValueError, match="already registered"):
            losses.register_loss("cosine-test", VICRegLoss)
        losses.register_loss("cosine-test", Cosine)  # the same class again is a no-op
        cfg = TrainConfig.from_dict({"loss": {"name": "cosine-test", "params": {"scale": 2.0}}})
        fn = build_loss(cfg)  # no check_finite argument: not passed
        assert isinstance(fn, Cosine) and fn.scale == 2.0
        with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['mu'\]"):
            TrainConfig.from_dict({"loss": {"name": "cosine-test", "params": {"mu": 1.0}}})
        a, b = _views(16, 4, torch.float32, seed=1)
        assert fn(a, b).item() == pytest.approx(
            2 * (1 - torch.cosine_similarity(a, b).mean().item())
        )
    finally:
        losses._REGISTRY.pop("cosine-test")
    with pytest.raises(TypeError, match="nn.Module subclass"):
        losses.register_loss("bad", object)
