"""The losses under torch.compile: one graph, no breaks, same values and gradients as eager.

``check_finite=True`` (the default) raises on NaN/Inf in eager mode; under compile the check is
skipped (it needs a host sync, i.e. a graph break) and a NaN input gives a NaN loss instead.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from vcreg import functional as VF
from vcreg import losses as L


def _cases():
    # the single-view VCReg loss and every registered (two-view) loss, default configuration
    # (n = 128 rows: W-MSE's default w_size)
    # (the supervised control takes labels and checks them on the host: not a VCReg loss)
    registered = [
        (name, L.loss_class(name), 2, {})
        for name in L.available_losses()
        if not getattr(L.loss_class(name), "needs_labels", False)
    ]
    return [("vcreg_single_view", L.VCRegLoss, 1, {}), *registered]


def _views(n_views: int, n: int = 128, k: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, k, generator=g, dtype=torch.float64) for _ in range(n_views)]


@pytest.mark.parametrize(("name", "cls", "n_views", "kw"), _cases(), ids=[c[0] for c in _cases()])
def test_default_forward_is_one_graph(name, cls, n_views, kw):
    torch._dynamo.reset()
    views = [v.float() for v in _views(n_views)]
    explained = torch._dynamo.explain(cls(**kw))(*views)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    assert explained.graph_count == 1


@pytest.mark.parametrize(("name", "cls", "n_views", "kw"), _cases(), ids=[c[0] for c in _cases()])
def test_compiled_matches_eager(name, cls, n_views, kw):
    torch._dynamo.reset()
    eager_in = [v.requires_grad_() for v in _views(n_views)]
    comp_in = [v.detach().clone().requires_grad_() for v in eager_in]
    loss = cls(**kw)
    torch.manual_seed(3)  # W-MSE's sub-batch split (global RNG: a torch.Generator breaks graphs)
    ref = loss(*eager_in)
    ref.backward()
    torch.manual_seed(3)
    out = torch.compile(loss, backend="aot_eager", fullgraph=True)(*comp_in)
    out.backward()
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    assert set(out.terms) == set(ref.terms)
    for a, b in zip(comp_in, eager_in, strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-12)


def test_compiled_wmse_singular_covariance_uses_the_eager_shrinkage():
    # duplicated features: a singular sub-batch covariance; eager raises eps with a warning,
    # the compiled graph must pick the same level by tensor ops
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(1)
    base = torch.randn(64, 8, generator=g, dtype=torch.float64)
    z_a = torch.cat([base, base], dim=1)
    z_b = z_a + 0.1 * torch.randn(64, 16, generator=g, dtype=torch.float64)
    perm = torch.arange(64)[None]
    with pytest.warns(RuntimeWarning, match="singular"):
        ref = VF.wmse_loss(z_a, z_b, w_size=32, perm=perm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = torch.compile(VF.wmse_loss, backend="aot_eager", fullgraph=True)(
            z_a, z_b, w_size=32, perm=perm
        )
    assert torch.isfinite(out)
    torch.testing.assert_close(out, ref, rtol=1e-8, atol=1e-10)


def test_nan_input_raises_eager_and_gives_nan_loss_compiled():
    torch._dynamo.reset()
    z_a, z_b = _views(2)
    z_a[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        L.VICRegLoss()(z_a, z_b)
    out = torch.compile(L.VICRegLoss(), backend="aot_eager", fullgraph=True)(z_a, z_b)
    assert not torch.isfinite(out)
