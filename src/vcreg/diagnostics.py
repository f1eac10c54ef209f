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

**The hinge a batch allows** (:func:`hinge_target`). With every dimension at std s and the
per-dimension correlation T = (k − 1)·r̄² (r̄²: mean squared off-diagonal correlation), VICReg's
variance and covariance terms are ``μ·(1 − s) + ν_eff·T·s⁴`` (ν_eff = 2ν: VICReg sums the
covariance term over its two views and averages the variance term); below the hinge their pulls
on s balance at ``s³ = μ / (4·ν_eff·T)`` (:func:`balance_std`). In a training batch of n samples
T is at least its sampling part ``(k − 1)/(n − 1)`` (independent features), so an embedding
wider than ~μ(n − 1)/(4ν_eff) (k ≳ 3n at μ = 50, ν = 1) cannot hold std γ however long it
trains. The rule "std ≥ 0.9·γ" was set where that sampling part is negligible; there it
tolerates the residual correlation R₀ = μ/(4·ν_eff·γ³) that balances the hinge exactly at γ.
The hinge target of a k-wide embedding is the balance std with the same residual allowance on
top of its batch's sampling part: ``γ·(1 + F)^(−1/3)``, ``F = 4·ν_eff·γ³·(k − 1)/(μ·(n − 1))``
(F: the sampling part's pull at std γ in units of μ). It depends on the design only (k, n, μ,
ν), is γ as F → 0 and tends to the independent-features balance for k ≫ n: every width is held
to the same residual correlation, and a projector of any width can meet it. The invariance
term's pull is left out on purpose (the 10 % tolerance absorbs up to 27 % of μ): a run whose
views disagree so much that the invariance term holds the std down is not at the VCReg
constraint.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from vcreg.projectors import RandomFeatureProjector

__all__ = [
    "HingeBalance",
    "hinge_target",
    "balance_std",
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
# A dimension is "at the hinge" when its std is within 10 % of the hinge target (γ for narrow
# projectors; hinge_target for the rest). Within 10 % of the balance std the invariance term may
# pull up to 1 − 0.9³ = 27 % of μ, the rest must be the covariance term's
# (docs/sections/training.md, "Reaching the VCReg constraint").
HINGE_TOL = 0.1
MIN_HINGE_FRAC = 0.9  # the constraint is met when >= 90 % of the dims are at the hinge ...
MAX_OFFDIAG_EXCESS = 10.0  # ... and the off-diagonal correlation is < 10x the independent level


@dataclass(frozen=True)
class HingeBalance:
    """What sets the std a VCReg-family loss can hold: the training batch ``batch_size`` (the
    global batch under DDP: the terms are computed on gathered embeddings), the variance weight
    ``mu`` and the effective covariance weight ``nu_eff`` (VICReg: 2ν, its covariance term is
    summed over the two views; the trainer's two-view ``vcreg`` loss: ν, averaged)."""

    batch_size: int
    mu: float
    nu_eff: float

    def __post_init__(self) -> None:
        if self.batch_size < 2 or not (self.mu > 0) or not (self.nu_eff >= 0):
            raise ValueError(
                f"HingeBalance needs batch_size >= 2, mu > 0 and nu_eff >= 0, got {self}"
            )


def balance_std(k: int, balance: HingeBalance, corr_per_dim: float | None = None) -> float:
    """The std at which the variance hinge's pull μ balances the covariance term's,
    ``(μ / (4·ν_eff·T))^(1/3)``, for per-dimension correlation ``T = (k − 1)·r̄²`` (default: the
    sampling part of independent features in the training batch, ``(k − 1)/(n − 1)``). Not capped
    at γ (above γ the hinge no longer pulls)."""
    t = (k - 1) / (balance.batch_size - 1) if corr_per_dim is None else corr_per_dim
    if t <= 0 or balance.nu_eff == 0:
        return math.inf
    return (balance.mu / (4.0 * balance.nu_eff * t)) ** (1.0 / 3.0)


def hinge_target(k: int, balance: HingeBalance | None, gamma: float = HINGE_GAMMA) -> float:
    """The std a k-wide embedding is held to (module docstring): ``γ·(1 + F)^(−1/3)`` with
    ``F = 4·ν_eff·γ³·(k − 1)/(μ·(n − 1))``, the balance std for the batch's sampling correlation
    plus the residual allowance ``μ/(4·ν_eff·γ³)``. γ when ``balance`` is None (not a hinge loss),
    ``k < 2`` or ``nu_eff = 0``."""
    if balance is None or k < 2 or balance.nu_eff == 0:
        return gamma
    allowance = balance.mu / (4.0 * balance.nu_eff * gamma**3)
    return balance_std(k, balance, (k - 1) / (balance.batch_size - 1) + allowance)


def _projector_input_scale(projector: nn.Module, x: Tensor) -> float | None:
    if not isinstance(projector, RandomFeatureProjector):
        return None
    std = 1.0 if projector.standardize else float(x.std(0).quantile(0.5))
    return std / projector.bandwidth


@torch.no_grad()
def embedding_diagnostics(
    projector: nn.Module,
    feats: Tensor,
    gamma: float = HINGE_GAMMA,
    eps: float = HINGE_EPS,
    balance: HingeBalance | None = None,
) -> dict[str, float | None]:
    """``emb_std_mean``, ``emb_hinge_frac``, ``emb_at_hinge_frac`` (std ≥ 0.9·γ), the
    off-diagonal correlation and its excess, ``emb_hinge_target`` (:func:`hinge_target` under
    ``balance``: γ without one), ``emb_at_target_frac`` (std ≥ 0.9·target), ``emb_dim``,
    ``repr_std_median``, ``rf_scale_over_bw`` (None for other projectors) of
    ``Z = projector(feats)`` (module docstring).

    The projector runs in training mode (batch statistics, as in the loss) on a CPU copy, so the
    caller's module, its mode and its BatchNorm running statistics are untouched.
    """
    x = feats.detach().float().cpu()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"need representations of shape (n >= 2, d), got {tuple(x.shape)}")
    z = _local_copy(projector)(x).float()
    std = torch.sqrt(z.var(0) + eps)
    corr2 = _offdiag_corr2(z)
    excess = None if corr2 is None else corr2 * (z.shape[0] - 1)
    target = hinge_target(z.shape[1], balance, gamma)
    return {
        "emb_std_mean": float(std.mean()),
        "emb_hinge_frac": float((std >= gamma).float().mean()),
        "emb_at_hinge_frac": float((std >= (1.0 - HINGE_TOL) * gamma).float().mean()),
        "emb_offdiag_corr2": corr2,
        "emb_offdiag_excess": excess,
        "emb_hinge_target": target,
        "emb_at_target_frac": float((std >= (1.0 - HINGE_TOL) * target).float().mean()),
        # the std ≥ MIN_HINGE_FRAC of the dims reach: the rule for any other target, post hoc
        "emb_std_q10": float(std.sort().values[int((1.0 - MIN_HINGE_FRAC) * len(std) + 1e-9)]),
        "emb_dim": int(z.shape[1]),
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
    ≥ ``min_frac`` of the dimensions at the hinge the batch allows (std ≥ (1 − HINGE_TOL) ×
    :func:`hinge_target`, ``emb_at_target_frac``; diagnostics without it: std ≥ (1 −
    HINGE_TOL)·γ, ``emb_at_hinge_frac``) and the mean squared off-diagonal correlation below
    ``MAX_OFFDIAG_EXCESS`` × its independent-features level. None when the diagnostics are
    missing."""
    frac = diag.get("emb_at_target_frac")
    if frac is None:
        frac = diag.get("emb_at_hinge_frac")
    excess = diag.get("emb_offdiag_excess")
    if frac is None or (isinstance(frac, float) and math.isnan(frac)):
        return None
    return bool(frac >= min_frac and (excess is None or excess < MAX_OFFDIAG_EXCESS))
