"""Projectors: MLP structure / frozen weights, random Fourier features and PAPER.md's bridge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vcreg import MLPProjector, RandomFeatureProjector
from vcreg import functional as VF


# ----------------------------------------------------------------------------- MLPProjector
def test_mlp_structure_matches_official_vicreg_projector():
    p = MLPProjector(16, "32-24-8")
    kinds = [type(m) for m in p.net]
    assert kinds == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Linear,
    ]
    dims = [(m.in_features, m.out_features) for m in p.net if isinstance(m, nn.Linear)]
    assert dims == [(16, 32), (32, 24), (24, 8)]
    assert p.net[-1].bias is None and p.net[0].bias is not None
    assert p.out_dim == 8
    assert p(torch.randn(5, 16)).shape == (5, 8)
    # list spec == string spec; options
    q = MLPProjector(16, [32, 24, 8], batch_norm=False, activation="gelu", bias=False)
    assert [type(m) for m in q.net] == [nn.Linear, nn.GELU, nn.Linear, nn.GELU, nn.Linear]
    assert all(m.bias is None for m in q.net if isinstance(m, nn.Linear))
    assert [type(m) for m in MLPProjector(4, "6").net] == [nn.Linear]


def test_mlp_seed_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = MLPProjector(8, "16-4", seed=3)
    after = torch.rand(3)
    b = MLPProjector(8, "16-4", seed=3)
    c = MLPProjector(8, "16-4", seed=4)
    assert torch.equal(after, expected)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.net[0].weight, c.net[0].weight)


def test_frozen_mlp_excluded_from_optimizer_and_stays_random():
    torch.manual_seed(0)
    encoder = nn.Linear(6, 8)
    proj = MLPProjector(8, "32-32", frozen=True, seed=1)
    assert list(proj.trainable_parameters()) == []
    assert all(not p.requires_grad for p in proj.parameters())
    before = {k: v.clone() for k, v in proj.named_parameters()}
    enc_before = encoder.weight.clone()
    params = [p for p in [*encoder.parameters(), *proj.parameters()] if p.requires_grad]
    assert len(params) == 2  # encoder weight + bias only
    opt = torch.optim.SGD(params, lr=0.1)
    loss_fn = VF.vcreg_loss
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(proj(encoder(torch.randn(32, 6))))
        loss.backward()
        opt.step()
    assert encoder.weight.grad is not None
    assert not torch.equal(encoder.weight, enc_before)
    for k, v in proj.named_parameters():
        assert torch.equal(v, before[k]), k
    # a trainable projector does get updated parameters
    assert len(list(MLPProjector(8, "32-32").trainable_parameters())) == 5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"spec": "8192-x"}, "spec"),
        ({"spec": ""}, "spec"),
        ({"spec": [0, 4]}, "positive"),
        ({"activation": "swish2"}, "unknown activation"),
    ],
)
def test_mlp_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLPProjector(8, **kwargs)


def test_projectors_reject_wrong_input_shape():
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        MLPProjector(8, "4")(torch.randn(3, 7))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        RandomFeatureProjector(3, 4)(torch.randn(5))
    with pytest.raises(ValueError, match="kernel"):
        RandomFeatureProjector(3, 4, kernel="poly")
    with pytest.raises(ValueError, match="bandwidth"):
        RandomFeatureProjector(3, 4, bandwidth=0.0)


# ----------------------------------------------------------------------------- random features
def phi_numpy(
    x: np.ndarray, omega: np.ndarray, phase: np.ndarray, scale: str = "kernel"
) -> np.ndarray:
    """φ(t) = a·cos(ω t + b), a = sqrt(2/m) ("kernel") or sqrt(2) ("unit"): (n, d) -> (n, d, m)."""
    m = omega.shape[0]
    a = np.sqrt(2.0 / m) if scale == "kernel" else np.sqrt(2.0)
    return a * np.cos(x[:, :, None] * omega[None, None, :] + phase)


def test_random_features_deterministic_buffers_and_layout():
    p1 = RandomFeatureProjector(3, features_per_dim=5, seed=7, scale="kernel")
    p2 = RandomFeatureProjector(3, features_per_dim=5, seed=7, scale="kernel")
    p3 = RandomFeatureProjector(3, features_per_dim=5, seed=8, scale="kernel")
    x = torch.randn(6, 3, dtype=torch.float64)
    assert torch.equal(p1(x), p2(x))
    assert not torch.equal(p1(x), p3(x))
    assert list(p1.parameters()) == []
    assert set(p1.state_dict()) == {"omega", "phase"}
    assert p1.out_dim == 15 and p1(x).shape == (6, 15)
    fm = p1.feature_map(x)
    assert fm.shape == (6, 3, 5)
    for i in range(3):  # contiguous blocks [φ(x_1) | φ(x_2) | φ(x_3)]
        assert torch.equal(p1(x)[:, 5 * i : 5 * (i + 1)], fm[:, i])
    ref = phi_numpy(x.numpy(), p1.omega.double().numpy(), p1.phase.double().numpy())
    np.testing.assert_allclose(fm.numpy(), ref, rtol=1e-12, atol=1e-12)
    # gradients reach the input (needed for ICA), never the buffers
    xi = x.clone().requires_grad_(True)
    p1(xi).sum().backward()
    assert xi.grad is not None and not p1.omega.requires_grad
    assert p1.to(torch.float64).omega.dtype == torch.float64


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian"])
def test_random_feature_kernel_approximation(kernel):
    bw = 0.8
    p = RandomFeatureProjector(
        1, features_per_dim=40000, kernel=kernel, bandwidth=bw, seed=0, scale="kernel"
    )
    s = torch.linspace(-2, 2, 9, dtype=torch.float64).unsqueeze(1)
    f = p.feature_map(s)[:, 0]  # (9, m)
    approx = (f @ f.T).numpy()
    diff = s - s.T
    exact = (
        np.exp(-(diff.numpy() ** 2) / (2 * bw**2))
        if kernel == "gaussian"
        else np.exp(-np.abs(diff.numpy()) / bw)
    )
    np.testing.assert_allclose(approx, exact, atol=0.03)


def _dependent_sample(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    x2 = np.sin(2 * x1) + 0.3 * rng.normal(size=n)  # dependent but uncorrelated-ish
    x3 = rng.uniform(-1.5, 1.5, size=n)  # independent of both
    return np.stack([x1, x2, x3], axis=1)


def test_bridge_identity_covariance_blocks_equal_random_feature_hsic():
    n, d, m = 30, 3, 16
    x = _dependent_sample(n, 0)
    proj = RandomFeatureProjector(d, features_per_dim=m, bandwidth=1.0, seed=1, scale="kernel")
    z = proj(torch.from_numpy(x)).numpy()  # (n, d·m), float64
    phi = phi_numpy(x, proj.omega.double().numpy(), proj.phase.double().numpy())
    cov = np.cov(z, rowvar=False)
    H = np.eye(n) - np.ones((n, n)) / n
    K = [phi[:, i] @ phi[:, i].T for i in range(d)]
    pair_sum, marginal = 0.0, 0.0
    for i in range(d):
        for j in range(d):
            block = cov[i * m : (i + 1) * m, j * m : (j + 1) * m]
            hsic_hat = np.trace(K[i] @ H @ K[j] @ H) / (n - 1) ** 2
            if i != j:
                np.testing.assert_allclose(np.sum(block**2), hsic_hat, rtol=1e-10)
                pair_sum += hsic_hat
            else:
                marginal += np.sum(block**2) - np.sum(np.diag(block) ** 2)
    # c(g(X)) = (1/(dm)) [Σ_{i≠j} HSIC_κ̂(X_i, X_j) + Σ_i ‖offdiag Cov(φ(X_i))‖²]
    c = VF.covariance_loss(torch.from_numpy(z)).item()
    np.testing.assert_allclose(c, (pair_sum + marginal) / (d * m), rtol=1e-10)
    # dependent pair (1, 2) has a larger HSIC than the independent pair (1, 3)
    h12 = np.trace(K[0] @ H @ K[1] @ H)
    h13 = np.trace(K[0] @ H @ K[2] @ H)
    assert h12 > 3 * h13


def test_bridge_approaches_gaussian_kernel_hsic_as_m_grows():
    n, bw = 60, 1.0
    x = _dependent_sample(n, 2)[:, :2]
    H = np.eye(n) - np.ones((n, n)) / n
    diff = x[:, None, :] - x[None, :, :]
    Kg = np.exp(-(diff**2) / (2 * bw**2))  # exact Gaussian kernels, (n, n, 2)
    exact = np.trace(Kg[:, :, 0] @ H @ Kg[:, :, 1] @ H) / (n - 1) ** 2
    errors = {}
    for m in (8, 128, 4096):
        errs = []
        for seed in range(3):
            proj = RandomFeatureProjector(
                2, features_per_dim=m, bandwidth=bw, seed=seed, scale="kernel"
            )
            z = proj(torch.from_numpy(x)).numpy()
            zc = z - z.mean(0)
            block = zc[:, :m].T @ zc[:, m:] / (n - 1)  # off-diagonal covariance block
            errs.append(abs(np.sum(block**2) - exact) / exact)
        errors[m] = float(np.mean(errs))
    assert errors[4096] < errors[128] < errors[8]
    assert errors[4096] < 0.05


def test_random_features_unit_scale_and_standardize_match_plain_formulas():
    x = torch.randn(50, 3, dtype=torch.float64) * 4.0 + 2.0
    unit = RandomFeatureProjector(3, features_per_dim=7, seed=3, scale="unit")
    kern = RandomFeatureProjector(3, features_per_dim=7, seed=3, scale="kernel")
    om, ph = unit.omega.double().numpy(), unit.phase.double().numpy()
    np.testing.assert_allclose(
        unit.feature_map(x).numpy(), phi_numpy(x.numpy(), om, ph, "unit"), rtol=1e-12
    )
    np.testing.assert_allclose(unit(x).numpy(), kern(x).numpy() * np.sqrt(7), rtol=1e-12)
    std = RandomFeatureProjector(3, features_per_dim=7, seed=3, standardize=True, scale="unit")
    xn = x.numpy()
    xs = (xn - xn.mean(0)) / np.sqrt(xn.var(0) + 1e-5)  # biased batch variance, no affine
    np.testing.assert_allclose(
        std.feature_map(x).numpy(), phi_numpy(xs, om, ph, "unit"), rtol=1e-10, atol=1e-12
    )
    # standardization makes the output invariant to an affine rescaling of each input
    # (up to the 1e-5 epsilon in the variance)
    np.testing.assert_allclose(std(3.0 * x - 5.0).numpy(), std(x).numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="scale"):
        RandomFeatureProjector(3, 4, scale="big")
    with pytest.raises(ValueError, match="at least 2"):
        std(x[:1])


def test_standardized_scale_matches_plain_formula_and_meets_the_hinge():
    """Default "standardized": every cosine feature standardized over the batch."""
    x = torch.randn(64, 3, dtype=torch.float64) * 0.3 + 1.0  # few periods: "unit" stays small
    proj = RandomFeatureProjector(3, features_per_dim=16, seed=2)
    assert proj.scale == "standardized"
    c = np.cos(x.numpy()[:, :, None] * proj.omega.double().numpy() + proj.phase.double().numpy())
    ref = (c - c.mean(0)) / np.sqrt(c.var(0) + 1e-5)
    np.testing.assert_allclose(proj.feature_map(x).numpy(), ref, rtol=1e-9, atol=1e-9)
    z = proj(x)
    assert z.shape == (64, 48)
    std = torch.sqrt(z.var(0) + 1e-4)  # VICReg's std of each embedding dimension
    resolved = torch.from_numpy(c.reshape(64, 48).var(0) > 1e-3)  # cosine not ~constant
    assert bool((std[resolved] >= 1.0).all()) and float(resolved.float().mean()) > 0.8
    unit = torch.sqrt(RandomFeatureProjector(3, 16, seed=2, scale="unit")(x).var(0) + 1e-4)
    assert float((unit >= 1.0).float().mean()) < 0.1  # why "unit" is not the default
    with pytest.raises(ValueError, match="at least 2"):
        proj(x[:1])


def test_unit_scale_features_can_meet_the_variance_hinge_kernel_scale_cannot():
    """ "unit" per-feature std → 1 over many periods; "kernel" ≈ 1/sqrt(m)."""
    m = 256
    x = torch.randn(4000, 2, dtype=torch.float64) * 3.0  # many periods of cos(ωt + b)
    unit = RandomFeatureProjector(2, m, seed=0, scale="unit")(x).std(0)
    kern = RandomFeatureProjector(2, m, seed=0, scale="kernel")(x).std(0)
    # a feature with ω·std(x) ≫ 1 has std → 1 (unit) / sqrt(1/m) (kernel); low-ω features less
    assert float(unit.max()) == pytest.approx(1.0, abs=0.05)
    assert float(kern.max()) == pytest.approx(1.0 / np.sqrt(m), rel=0.05)
    assert float((unit > 0.9).float().mean()) > 0.5


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh"])
@pytest.mark.parametrize("spec", ["128-128", "512-512-512"])
def test_frozen_mlp_output_can_meet_the_hinge(activation, spec):
    """A frozen MLP's own BatchNorm fixes its output scale, so the encoder cannot move it: the
    init must put the output std at VICReg's hinge γ = 1 (PyTorch's default gives ≈ 0.34)."""
    x = torch.randn(4096, 64) * 7.0  # any input scale: the BatchNorm removes it
    frozen = MLPProjector(64, spec, activation=activation, frozen=True, seed=0)
    std = frozen(x).std(0)
    assert 0.9 < float(std.mean()) < 1.1
    # the default init, with the analytic std for ReLU: sqrt(Var(relu(z)) / 3) for z ~ N(0, 1)
    if activation == "relu":
        default = MLPProjector(64, spec, activation=activation, seed=0)
        expected = np.sqrt((0.5 - 1 / (2 * np.pi)) / 3)
        assert float(default(x).std(0).mean()) == pytest.approx(expected, rel=0.1)
