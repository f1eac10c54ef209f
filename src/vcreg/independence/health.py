"""Representation health: effective rank (RankMe) and per-feature std / collapsed features."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from vcreg.independence._common import DEFAULT_DTYPE, _as_variable, _rescale, _resolve_device

RANKME_EPS = 1e-7


def _health_matrix(Z: Any, name: str = "Z") -> tuple[Tensor, int]:
    """Finite float64 (n, d) matrix, exactly rescaled by 2^-e if extreme (returns e)."""
    z = _as_variable(Z, name, DEFAULT_DTYPE, _resolve_device(Z, None))
    if z.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples (rows), got {z.shape[0]}")
    z, e = _rescale(z, name, True, per_column=False)
    return z, int(e[0])


def effective_rank(Z: Any, eps: float = RANKME_EPS, center: bool = False) -> float:
    """RankMe effective rank of a representation Z (n, d) (Garrido et al. 2023).

    exp(-sum_k p_k log p_k) with p_k = sigma_k / sum_l sigma_l + eps, sigma the singular values
    of Z. Conventions (RankMe's): no centring by default (``center=True`` removes the column
    means first, so that a shared offset does not count as a direction) and eps = 1e-7 added
    to every p_k. In [1, min(n, d)] up to eps; an all-zero Z gives 1.0 (complete collapse).
    Computed in float64.
    """
    if not (isinstance(eps, int | float) and 0 <= eps < 1):
        raise ValueError(f"eps must be a number in [0, 1), got {eps!r}")
    z, _ = _health_matrix(Z)  # scale-invariant
    if center:
        z = z - z.mean(0)
    sv = torch.linalg.svdvals(z)
    total = float(sv.sum())
    if total <= 0:
        return 1.0
    p = sv / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def feature_std_summary(Z: Any, threshold: float = 1e-2) -> dict[str, Any]:
    """Per-feature standard deviation of Z (n, d) and the features that have collapsed.

    ``std`` (list, ddof = 1); its ``min/median/mean/max``. Feature j is *collapsed* when
    std_j <= threshold * s with s = sqrt(mean(Z^2)) the root mean square of all entries: a
    scale-free rule, so a complete collapse to one point (every std ~ 0, s = |point|) flags every
    feature and an all-zero Z too. ``normalized_std`` is the std of the L2-normalised rows times
    sqrt(d) averaged over features (the collapse monitor of lightly/solo-learn: ~1 for spread-out
    embeddings, 0 for a complete collapse; 0 rows are left at 0).
    """
    if not (isinstance(threshold, int | float) and not isinstance(threshold, bool)):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if not (0 <= threshold < math.inf):
        raise ValueError(f"threshold must be >= 0 and finite, got {threshold!r}")
    z, e = _health_matrix(Z)
    n, d = z.shape
    std = torch.ldexp(z.std(0, correction=1), torch.tensor(float(e), dtype=z.dtype))
    scale = math.ldexp(float(z.square().mean().sqrt()), e)
    collapsed = torch.nonzero(std <= threshold * scale).flatten().tolist()
    norms = z.norm(dim=1, keepdim=True)
    zn = torch.where(norms > 0, z / norms.clamp_min(1e-300), torch.zeros_like(z))
    return {
        "n_samples": int(n),
        "n_features": int(d),
        "std": std.cpu().tolist(),
        "std_min": float(std.min()),
        "std_median": float(torch.quantile(std, 0.5)),
        "std_mean": float(std.mean()),
        "std_max": float(std.max()),
        "rms": scale,
        "threshold": float(threshold),
        "rule": "std_j <= threshold * rms(Z)",
        "n_collapsed": len(collapsed),
        "collapsed": collapsed,
        "normalized_std": float(zn.std(0, correction=1).mean() * math.sqrt(d)),
    }
