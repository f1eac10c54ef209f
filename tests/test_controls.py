"""The reproduction's equal-budget controls are ordinary `vcreg train` configurations."""

from __future__ import annotations

import math

import pytest
import torch

from vcreg.projectors import RandomFeatureProjector
from vcreg.training import TrainConfig, train


def _cfg(**over) -> dict:
    cfg = {
        "epochs": 1,
        "batch_size": 64,
        "seed": 0,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 400, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
        "projector": {"spec": "32-32"},
        "monitor": {"every": 0},
    }
    for key, value in over.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


@pytest.mark.parametrize(
    "over",
    [
        {"loss.params": {"nu": 0.0}},  # VICReg without the covariance term
        {"projector.kind": "identity"},  # no projector
        {"loss.name": "infonce", "loss.params": {"temperature": 0.2}},  # contrastive control
        # supervised control: the projector is the linear classification head
        {"loss.name": "supervised", "projector.spec": "10", "projector.batch_norm": False},
        {
            "projector.kind": "random_features",
            "projector.features_per_dim": 8,
            "projector.scale": "unit",
            "projector.standardize": True,
        },
    ],
)
def test_controls_train_from_a_config(over):
    res = train(_cfg(**over), progress=False)
    assert res.status == "completed" and math.isfinite(res.final_metrics["loss"])
    if over.get("loss.name") == "infonce":
        assert "loss_positive_cosine" in res.final_metrics
    if over.get("projector.kind") == "random_features":
        assert isinstance(res.projector, RandomFeatureProjector)
        assert res.projector.scale == "unit" and res.projector.standardize
        z = res.projector(torch.randn(32, 8))
        assert float(z.abs().max()) <= math.sqrt(2.0) + 1e-6  # sqrt(2)·cos


def test_control_config_errors_are_clear():
    with pytest.raises(ValueError, match="temperature"):
        TrainConfig.from_dict(_cfg(**{"loss.name": "infonce", "loss.params": {"tau": 0.1}}))
    with pytest.raises(ValueError, match="projector.scale"):
        TrainConfig.from_dict(_cfg(**{"projector.kind": "random_features", "projector.scale": "x"}))


def test_embedding_diagnostics_match_plain_formulas():
    import numpy as np

    from vcreg.diagnostics import embedding_diagnostics

    g = torch.Generator().manual_seed(0)
    x = 5.0 * torch.randn(300, 4, generator=g, dtype=torch.float64)
    proj = RandomFeatureProjector(4, 16, bandwidth=2.0, seed=1)
    d = embedding_diagnostics(proj, x)
    z = proj(x.float()).double().numpy()
    std = np.sqrt(z.var(0, ddof=1) + 1e-4)  # VICReg: unbiased variance, ε inside the root
    assert d["emb_std_mean"] == pytest.approx(std.mean(), rel=1e-5)
    assert d["emb_hinge_frac"] == pytest.approx((std >= 1.0).mean())
    assert d["rf_scale_over_bw"] == pytest.approx(
        np.median(x.numpy().std(0, ddof=1)) / 2.0, rel=1e-5
    )
    std_proj = RandomFeatureProjector(4, 16, bandwidth=0.5, seed=1, standardize=True)
    assert embedding_diagnostics(std_proj, x)["rf_scale_over_bw"] == pytest.approx(2.0)
    assert embedding_diagnostics(torch.nn.Identity(), x)["rf_scale_over_bw"] is None


def test_monitor_logs_embedding_diagnostics_every_epoch():
    res = train(
        _cfg(**{"epochs": 2, "monitor": {"every": 1, "samples": 64, "probe": "none"}}),
        progress=False,
    )
    for h in res.history:
        assert 0.0 <= h["emb_hinge_frac"] <= 1.0 and h["emb_std_mean"] > 0


def test_supervised_loss_equals_plain_cross_entropy():
    from vcreg.losses import SupervisedLoss

    g = torch.Generator().manual_seed(0)
    za, zb = torch.randn(20, 10, generator=g), torch.randn(20, 10, generator=g)
    y = torch.randint(0, 10, (20,), generator=g)
    out = SupervisedLoss()(za, zb, y)
    logp_a, logp_b = za.log_softmax(1), zb.log_softmax(1)
    plain = -(logp_a[torch.arange(20), y].mean() + logp_b[torch.arange(20), y].mean()) / 2
    assert float(out) == pytest.approx(float(plain), rel=1e-6)
    acc = ((za.argmax(1) == y).float().mean() + (zb.argmax(1) == y).float().mean()) / 2
    assert float(out.terms["accuracy"]) == pytest.approx(float(acc))
    with pytest.raises(ValueError, match="classification head"):
        SupervisedLoss()(za[:, :3], zb[:, :3], y.clamp(min=5))


def test_supervised_training_learns_the_labels():
    cfg = _cfg(
        **{
            "epochs": 3,
            "loss.name": "supervised",
            "projector.spec": "10",
            "projector.batch_norm": False,
            "optimizer.lr": 3e-3,
        }
    )
    res = train(cfg, progress=False)
    assert res.history[-1]["loss_accuracy"] > 0.2  # 10 classes: chance is 0.1


def test_checkpoint_config_without_scale_reads_as_the_old_kernel_formula():
    from vcreg.training.config import saved_config

    old = {"projector": {"kind": "random_features", "features_per_dim": 8}}
    with pytest.warns(UserWarning, match="scale='kernel'"):
        up = saved_config(old, "run/checkpoint.pt")
    assert up["projector"]["scale"] == "kernel"
    assert "scale" not in old["projector"]  # the caller's dict is not modified
    explicit = {"projector": {"kind": "random_features", "scale": "unit"}}
    mlp = {"projector": {"kind": "mlp", "spec": "8-8"}}
    assert saved_config(explicit, "x") == explicit and saved_config(mlp, "x") == mlp
    assert TrainConfig.from_dict(up).projector.scale == "kernel"
    assert TrainConfig.from_dict({}).projector.scale == "standardized"
