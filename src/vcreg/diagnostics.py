"""Embedding diagnostics: can the VCReg constraint be met by this projector on this data?

:func:`embedding_diagnostics` measures, on a held-out batch of representations ``X`` and the
embedding ``Z = g(X)``: the mean per-dimension std of ``Z`` (``sqrt(Var + ε)``, as VICReg's
variance term), the fraction of embedding dimensions meeting VICReg's hinge ``std ≥ γ``
(official γ = 1, ε = 1e-4), the median feature std of ``X``, and — for the element-wise
random-feature projector — the scale of what its cosines see relative to the kernel bandwidth
(the standardized input has scale 1; a raw representation much wider than the bandwidth makes
the kernel see noise). The trainer's monitor logs them every monitored epoch.

It also measures the covariance side of the constraint: ``emb_offdiag_corr2``, the mean squared
off-diagonal *correlation* of ``Z`` (scale-free, so it is comparable across runs whose stds
differ), and ``emb_offdiag_excess = (n − 1)·emb_offdiag_corr2``, that value in units of its
level for independent features (``E[r²] = 1/(n − 1)`` for a sample correlation of independent
Gaussians): ≈ 1 means "as decorrelated as n samples can show". With ``k > n − 1`` the sample
covariance has rank ≤ n − 1 and ``Σ_{i≠j} r_ij² ≥ k²/(n − 1) − k``, so the excess cannot go
below ``(k/(n − 1) − 1)·(n − 1)/(k − 1)`` (≈ 1 for ``k ≫ n``): the rank floor is at the
independent-features level, and the measure stays meaningful for any width.

:func:`constraint_met` is the one rule for "trained to the VCReg constraint" (used by the
trainer's end-of-run warning and by the gated verdicts of ``vcreg reproduce``).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from vcreg.projectors import RandomFeatureProjector

__all__ = [
    "HINGE_GAMMA",
    "HINGE_EPS",
    "HINGE_TOL",
    "MIN_HINGE_FRAC",
    "MAX_OFFDIAG_EXCESS",
    "constraint_met",
    "embedding_diagnostics",
]

HINGE_GAMMA = 1.0  # VICReg's target std γ
HINGE_EPS = 1e-4  # VICReg's ε inside the square root
# A dimension is "at the hinge" when its std is within 10 % of γ. The hinge's pull (μ) is
# balanced at std < γ by the covariance term's, whose sampling-noise part alone is
# 8·(k − 1)/(n − 1) at std = γ for independent features (E r² = 1/(n − 1)): the official
# ImageNet recipe (μ = 25, k = 8192, n = 2048: 32 > 25) sits at std ≈ (25/32)^(1/3) = 0.92,
# so a 10 % tolerance admits the official regime and nothing looser
# (docs/sections/training.md, "Reaching the VCReg constraint").
HINGE_TOL = 0.1
MIN_HINGE_FRAC = 0.9  # the constraint is met when >= 90 % of the dims are at the hinge ...
MAX_OFFDIAG_EXCESS = 10.0  # ... and the off-diagonal correlation is < 10x the independent level


def _projector_input_scale(projector: nn.Module, x: Tensor) -> float | None:
    if not isinstance(projector, RandomFeatureProjector):
        return None
    std = 1.0 if projector.standardize else float(x.std(0).quantile(0.5))
    return std / projector.bandwidth


@torch.no_grad()
def embedding_diagnostics(
    projector: nn.Module, feats: Tensor, gamma: float = HINGE_GAMMA, eps: float = HINGE_EPS
) -> dict[str, float | None]:
    """``emb_std_mean``, ``emb_hinge_frac``, ``repr_std_median``, ``rf_scale_over_bw`` (None
    for other projectors) of ``Z = projector(feats)`` (module docstring).

    The projector runs in training mode (batch statistics, as in the loss) on a CPU copy, so the
    caller's module, its mode and its BatchNorm running statistics are untouched.
    """
    x = feats.detach().float().cpu()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"need representations of shape (n >= 2, d), got {tuple(x.shape)}")
    z = _local_copy(projector)(x).float()
    std = torch.sqrt(z.var(0) + eps)
    corr2 = _offdiag_corr2(z)
    return {
        "emb_std_mean": float(std.mean()),
        "emb_hinge_frac": float((std >= gamma).float().mean()),
        "emb_at_hinge_frac": float((std >= (1.0 - HINGE_TOL) * gamma).float().mean()),
        "emb_offdiag_corr2": corr2,
        "emb_offdiag_excess": None if corr2 is None else corr2 * (z.shape[0] - 1),
        "repr_std_median": float(x.std(0).quantile(0.5)),
        "rf_scale_over_bw": _projector_input_scale(projector, x),
    }


_LOCAL_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _local_copy(projector: nn.Module) -> nn.Module:
    """A CPU copy in training mode whose batch norms use this process's batch only: a
    synchronized / all-reduce batch norm (DDP) would wait for ranks that are not measuring."""
    proj = copy.deepcopy(projector).cpu().train()
    for name, mod in list(proj.named_modules()):
        if isinstance(mod, nn.modules.batchnorm._BatchNorm) and not isinstance(mod, _LOCAL_BN):
            local = nn.BatchNorm1d(
                mod.num_features, mod.eps, mod.momentum, mod.affine, mod.track_running_stats
            )
            local.load_state_dict(mod.state_dict())
            if not name:
                return local.train()
            parent, _, attr = name.rpartition(".")
            setattr(proj.get_submodule(parent) if parent else proj, attr, local)
    return proj.train()


def _offdiag_corr2(z: Tensor) -> float | None:
    """Mean over i ≠ j of the squared sample correlation of ``z``'s columns (constant columns
    dropped; None with fewer than 2 varying columns). Computed with the n × n Gram matrix:
    ``Σ_ij r_ij² = ‖ẐẐᵀ‖_F²`` for columns standardized to unit norm."""
    zc = (z - z.mean(0)).double()
    norms = zc.norm(dim=0)
    keep = norms > 1e-8 * norms.max().clamp_min(1e-30)
    k = int(keep.sum())
    if k < 2:
        return None
    zn = zc[:, keep] / norms[keep]
    total = float((zn @ zn.T).pow(2).sum())  # Σ_ij r_ij², diagonal included (= k)
    return (total - k) / (k * (k - 1))


def constraint_met(diag: dict, min_frac: float = MIN_HINGE_FRAC) -> bool | None:
    """Whether embedding diagnostics (:func:`embedding_diagnostics`) show the VCReg constraint:
    ≥ ``min_frac`` of the dimensions at the hinge (std ≥ (1 − HINGE_TOL)·γ) and the mean squared
    off-diagonal correlation below ``MAX_OFFDIAG_EXCESS`` × its independent-features level.
    None when the diagnostics are missing."""
    frac, excess = diag.get("emb_at_hinge_frac"), diag.get("emb_offdiag_excess")
    if frac is None:
        return None
    return bool(frac >= min_frac and (excess is None or excess < MAX_OFFDIAG_EXCESS))
