"""Did a run reach the VCReg constraint? The regime summary of ``run.json`` / ``eval.json``.

The paper's claims are about networks trained *to* the constraint: the projector output has
per-dimension std at VICReg's hinge γ — or, for an embedding too wide for its batch to hold γ,
at the std the variance/covariance balance allows (:func:`vcreg.diagnostics.hinge_target`) —
and small off-diagonal covariance. :func:`regime_summary` collects, for a finished run, the
embedding diagnostics of :mod:`vcreg.diagnostics` on held-out samples (mean std, fraction of
dimensions at the hinge and at the target, off-diagonal correlation relative to its
independent-features level) and the covariance term's trend over training (first vs last
epoch), and applies the one rule :func:`vcreg.diagnostics.constraint_met`.
:func:`hinge_balance` reads what sets the target (batch, μ, ν) from a run's loss. The trainer writes it
to ``run.json["regime"]`` and warns (:class:`RegimeWarning`) when a loss with a variance hinge
ended outside the constraint; ``vcreg evaluate`` writes the same measures to ``eval.json``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from vcreg.diagnostics import (
    HINGE_TOL,
    MAX_OFFDIAG_EXCESS,
    MIN_HINGE_FRAC,
    HingeBalance,
    constraint_met,
    embedding_diagnostics,
)
from vcreg.evaluation import dataset_tensors, encode
from vcreg.losses import TwoViewVCRegLoss, VICRegLoss, build_loss

__all__ = [
    "RegimeWarning",
    "CONVERGED_TOL",
    "variance_term_change",
    "hinge_balance",
    "measure_regime",
    "regime_summary",
    "regime_message",
]

_DIAG_KEYS = (
    "emb_std_mean",
    "emb_hinge_frac",
    "emb_at_hinge_frac",
    "emb_offdiag_corr2",
    "emb_offdiag_excess",
    "emb_hinge_target",
    "emb_at_target_frac",
    "emb_dim",
)


# The variance term (mean std deficit below γ, in units of γ) may change by at most this much over
# the last quarter of the epochs for the run to count as settled at its balance.
CONVERGED_TOL = 0.02


def variance_term_change(history: list[dict[str, Any]], last: float = 0.25) -> float | None:
    """|v(last epoch) − v(epoch at 1 − ``last`` of the run)| of the logged variance term
    ``loss_variance`` (the mean std deficit below the hinge); None without it or with < 2 epochs."""
    v = [_finite(h.get("loss_variance")) for h in history]
    if len(v) < 2 or v[-1] is None:
        return None
    i = min(int(len(v) * (1.0 - last)), len(v) - 2)
    return None if v[i] is None else abs(v[-1] - v[i])


def hinge_balance(
    loss: nn.Module | str, batch_size: int, params: dict[str, Any] | None = None
) -> HingeBalance | None:
    """The :class:`~vcreg.diagnostics.HingeBalance` of a loss (a module, or a registry name with
    its ``params``) trained at global batch ``batch_size``; None for losses without VICReg's
    variance hinge and covariance term (Barlow Twins, W-MSE, InfoNCE, supervised)."""
    if isinstance(loss, str):
        if loss not in ("vicreg", "vcreg"):
            return None
        loss = build_loss(loss, params or {})
    if isinstance(loss, VICRegLoss):  # variance averaged over the views, covariance summed
        return HingeBalance(int(batch_size), float(loss.mu), 2.0 * float(loss.nu))
    if isinstance(loss, TwoViewVCRegLoss):  # both averaged
        return HingeBalance(int(batch_size), float(loss.mu), float(loss.nu))
    return None


class RegimeWarning(UserWarning):
    """A run with a variance-hinge loss ended without reaching the VCReg constraint."""


@torch.no_grad()
def measure_regime(
    encoder: nn.Module,
    projector: nn.Module,
    test_data,
    samples: int,
    device,
    batch_size=512,
    balance: HingeBalance | None = None,
) -> dict[str, Any]:
    """Embedding diagnostics of ``projector(encoder(x))`` on the first ``samples`` test samples
    (the hinge target under ``balance``, :func:`hinge_balance`)."""
    x, _ = dataset_tensors(test_data, samples)
    feats = encode(encoder, x, batch_size, device)
    diag = embedding_diagnostics(projector, feats, balance=balance)
    out = {k: diag.get(k) for k in _DIAG_KEYS}
    out["n_samples"] = len(feats)
    out["constraint_met"] = constraint_met(out)
    return out


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def regime_summary(history: list[dict[str, Any]], diag: dict[str, Any]) -> dict[str, Any]:
    """The regime of a finished run from its per-epoch ``history`` and end-of-run ``diag``.

    ``has_hinge``: the loss has a variance term (``loss_variance`` logged), the only losses the
    constraint is defined for; ``cov_term_first/last``: the logged covariance term of the first
    and last epoch (``cov_term_falling``: last < first).
    """
    has_hinge = bool(history) and "loss_variance" in history[-1]
    cov = [_finite(h.get("loss_covariance")) for h in history]
    cov = [c for c in cov if c is not None]
    out: dict[str, Any] = {"has_hinge": has_hinge, **diag}
    out["variance_term_last"] = _finite(history[-1].get("loss_variance")) if has_hinge else None
    out["cov_term_first"] = cov[0] if cov else None
    out["cov_term_last"] = cov[-1] if cov else None
    out["cov_term_falling"] = (cov[-1] < cov[0]) if len(cov) >= 2 else None
    change = variance_term_change(history) if has_hinge else None
    out["variance_term_change"] = change
    out["variance_converged"] = None if change is None else change <= CONVERGED_TOL
    out["rule"] = RULE_TEXT
    out["warning"] = regime_message(out)
    return out


RULE_TEXT = (
    f">= {MIN_HINGE_FRAC:.0%} of embedding dims with std >= {1 - HINGE_TOL:g} x the hinge target "
    "gamma*(1 + F)^(-1/3), F = 4*nu_eff*gamma^3*(k-1)/(mu*(n-1)) (nu_eff = 2*nu for VICReg; n the "
    "training batch: the covariance term's sampling pull, so a projector of any width can meet it), "
    f"and mean squared off-diagonal correlation < {MAX_OFFDIAG_EXCESS:g}x its independent-features "
    "level 1/(n-1)"
)


def regime_message(summary: dict[str, Any]) -> str | None:
    """The end-of-run warning for a hinge loss outside the constraint (None when it is met)."""
    if not summary.get("has_hinge") or summary.get("constraint_met") is not False:
        return None
    frac, std = summary.get("emb_at_target_frac"), summary.get("emb_std_mean")
    target = summary.get("emb_hinge_target")
    if frac is None:
        frac, target = summary.get("emb_at_hinge_frac"), 1.0
    exc = summary.get("emb_offdiag_excess")
    parts = [
        f"{100 * frac:.0f} % of embedding dims at the variance hinge (std >= "
        f"{1 - HINGE_TOL:g} x target {target:.2f}; mean std {std:.2f})"
    ]
    if exc is not None:
        parts.append(f"off-diagonal correlation {exc:.1f}x the independent-features level")
    c0, c1 = summary.get("cov_term_first"), summary.get("cov_term_last")
    if c0 is not None and c1 is not None:
        parts.append(f"covariance term {c0:.3g} -> {c1:.3g}")
    return (
        "the run did not reach the VCReg constraint ("
        + "; ".join(parts)
        + f"; rule: {summary['rule']}). The std settles where the variance hinge's pull mu "
        "balances the covariance and invariance terms' pulls: train longer (the off-diagonal "
        "correlation falls slowly), and lower the invariance weight relative to mu "
        "(configs/mnist1d_vicreg.yaml: k = 256, lambda 10, mu 50, 900 steps): see "
        "docs/sections/training.md, 'Reaching the VCReg constraint'"
    )
