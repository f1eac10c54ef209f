"""Representation health: effective rank (RankMe), per-feature std / collapsed features, dead and
near-dead (degenerate) features."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg.independence._common import DEFAULT_DTYPE, _as_variable, _rescale, _resolve_device
from vcreg.independence.nulls import column_modes

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


NEAR_CONSTANT_ROWS = 5  # near-constant: at most this many rows off the most common value ...
NEAR_CONSTANT_FRACTION = 0.01  # ... or this fraction of the rows, whichever is larger
FEW_DISTINCT = 3  # features with 2..FEW_DISTINCT distinct values are reported as discrete


def near_constant_limit(n: int) -> int:
    """Rows off the most common value below which a feature is near-constant at n rows."""
    return max(NEAR_CONSTANT_ROWS, math.ceil(NEAR_CONSTANT_FRACTION * n))


def _value_counts(block: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.sort(block, axis=0)
    distinct = 1 + (s[1:] != s[:-1]).sum(0)
    mode, off = column_modes(torch.from_numpy(s))
    return distinct, off, mode


def value_counts(Z: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of Z (n, d): the number of distinct values, the rows off the most common
    value (:func:`vcreg.independence.nulls.column_modes`, the pair tests' rule) and that value.
    Exact (values as given), in blocks of 256 columns."""
    z = Z.detach().cpu().numpy() if isinstance(Z, Tensor) else np.asarray(Z)
    if z.ndim != 2 or z.shape[0] < 1:
        raise ValueError(f"Z must be a non-empty 2-D (n, d) array, got shape {z.shape}")
    blocks = [_value_counts(z[:, c : c + 256]) for c in range(0, z.shape[1], 256)]
    return tuple(np.concatenate(p) for p in zip(*blocks, strict=True))  # type: ignore[return-value]


def degenerate_features(
    Z: Any,
    near_constant_rows: int | None = None,
    counts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Dead and near-dead features of Z (n, d), in Z's own column numbering.

    Each feature is listed under the first rule it meets: ``constant`` (all n values equal: a
    dead unit); ``near_constant`` (at most ``near_constant_rows`` rows differ from the
    feature's most common value, default :func:`near_constant_limit` = max(5, ceil(0.01 n)):
    a unit that fires on a few inputs, e.g. a ReLU unit zero on > 99 % of them;
    ``single_spike`` lists those with exactly one such row); ``few_distinct`` (2 to
    FEW_DISTINCT distinct values: a discrete / quantized feature). Exact: values are compared
    as given (a shift or a scale of a feature changes nothing). ``details`` gives, for every
    listed non-constant feature, its number of distinct values, rows off the mode and the mode.
    ``counts``: :func:`value_counts` of Z when the caller has them already.
    """
    distinct, off, mode = value_counts(Z) if counts is None else counts
    n, d = np.shape(Z)
    limit = near_constant_limit(n) if near_constant_rows is None else int(near_constant_rows)
    constant = np.flatnonzero(distinct == 1)
    near = np.flatnonzero((distinct > 1) & (off <= limit))
    few = np.flatnonzero((distinct > 1) & (off > limit) & (distinct <= FEW_DISTINCT))
    return {
        "n_samples": int(n),
        "n_features": int(d),
        "rules": {
            "constant": "all values equal (a dead unit)",
            "near_constant": f"at most {limit} of the {n} rows differ from the feature's most "
            f"common value (max({NEAR_CONSTANT_ROWS}, {NEAR_CONSTANT_FRACTION:g} n)): a unit "
            "that fires on a few inputs; single_spike: exactly one row differs. Their pairs get a "
            "null chosen by the pair test's measured criterion, or are counted 'not tested' "
            "where no null can reach the corrected threshold",
            "few_distinct": f"2 to {FEW_DISTINCT} distinct values (discrete or quantized)",
        },
        "near_constant_rows": int(limit),
        "constant": constant.tolist(),
        "near_constant": near.tolist(),
        "single_spike": near[off[near] == 1].tolist(),
        "few_distinct": few.tolist(),
        "details": [
            {
                "feature": int(j),
                "n_distinct": int(distinct[j]),
                "rows_off_mode": int(off[j]),
                "mode": float(mode[j]),
            }
            for j in np.concatenate((near, few))
        ],  # fmt: skip
    }
