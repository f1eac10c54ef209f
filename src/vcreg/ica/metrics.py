"""ICA quality metrics: the Amari distance of ``W·A`` and the mean correlation coefficient."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata

__all__ = ["amari_distance", "check_sources", "mean_corr_coef"]


def amari_distance(W: Any, A: Any, kind: str = "classic") -> float:
    """Amari distance between an unmixing ``W`` (k, p) and a mixing ``A`` (p, k); 0 iff ``W·A`` is a
    scaled permutation.

    With ``P = |W·A|`` (k × k):

    * ``kind="classic"`` (default; Amari et al. 1996, normalised as in Bach & Jordan 2002):
      ``[Σ_i (Σ_j P_ij / max_j P_ij − 1) + Σ_j (Σ_i P_ij / max_i P_ij − 1)] / (2k(k−1))`` in [0, 1].
    * ``kind="squared"``: python-picard's form on squared entries,
      ``[Σ_i (Σ_j P_ij² / max_j P_ij² − 1) + Σ_j (Σ_i P_ij² / max_i P_ij² − 1)] / (2k)``,
      in [0, k − 1].

    For a fitted :class:`VCRegICA` (or FastICA) on ``X = S·Aᵀ`` use
    ``amari_distance(est.components_, A)``.
    """
    if kind not in ("classic", "squared"):
        raise ValueError(f"unknown Amari kind {kind!r}; choose 'classic' or 'squared'")
    W = np.asarray(W, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    if W.ndim != 2 or A.ndim != 2:
        raise ValueError(f"W and A must be 2-D, got shapes {W.shape} and {A.shape}")
    if W.shape[1] != A.shape[0] or W.shape[0] != A.shape[1]:
        raise ValueError(
            f"W (k, p) and A (p, k) must give a square product W·A, got {W.shape} and {A.shape}"
        )
    if not (np.isfinite(W).all() and np.isfinite(A).all()):
        raise ValueError("W and A must not contain NaN or Inf")
    P = np.abs(W @ A)
    k = P.shape[0]
    if k == 1:
        return 0.0
    if kind == "squared":
        P = P**2
    if (P.max(axis=0) == 0).any() or (P.max(axis=1) == 0).any():
        raise ValueError("W·A has an all-zero row or column; the Amari distance is undefined")
    rows = (P.sum(axis=1) / P.max(axis=1) - 1.0).sum()
    cols = (P.sum(axis=0) / P.max(axis=0) - 1.0).sum()
    if kind == "squared":
        return float((rows + cols) / (2 * k))
    return float((rows + cols) / (2 * k * (k - 1)))


def mean_corr_coef(S_hat: Any, S: Any, method: str = "pearson") -> float:
    """Mean correlation coefficient (MCC) between estimated and true sources, both (n, k).

    The absolute correlation matrix ``|corr(Ŝ_i, S_j)|`` is matched one-to-one by the Hungarian
    algorithm (maximum total correlation) and the matched values are averaged; in [0, 1], 1 for a
    perfect recovery up to permutation, sign and scale. ``method="spearman"`` uses rank
    correlations (invariant to monotone distortions of each source).
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"unknown method {method!r}; choose 'pearson' or 'spearman'")
    S_hat = np.asarray(S_hat, dtype=np.float64)
    S = np.asarray(S, dtype=np.float64)
    if S_hat.ndim != 2 or S.ndim != 2 or S_hat.shape[0] != S.shape[0]:
        raise ValueError(
            f"S_hat and S must be 2-D with the same number of rows, got {S_hat.shape} and {S.shape}"
        )
    if S.shape[0] < 2:
        raise ValueError(f"correlations need at least 2 samples, got n_samples={S.shape[0]}")
    check_sources(S_hat, "S_hat")
    check_sources(S, "S")
    if method == "spearman":
        S_hat = rankdata(S_hat, axis=0)
        S = rankdata(S, axis=0)
    a = S_hat - S_hat.mean(axis=0)
    b = S - S.mean(axis=0)
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    corr = np.abs((a / na).T @ (b / nb))
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return float(corr[rows, cols].sum() / max(S_hat.shape[1], S.shape[1]))


def check_sources(S: np.ndarray, name: str = "S") -> None:
    """Raise ``ValueError`` unless ``S`` (n, k) can be scored by :func:`mean_corr_coef`: finite,
    and no constant column (its correlation with anything is undefined)."""
    S = np.asarray(S, dtype=np.float64)
    if not np.isfinite(S).all():
        raise ValueError(f"{name} contains NaN or Inf")
    constant = np.flatnonzero(np.ptp(S, axis=0) == 0) if S.ndim == 2 and len(S) else []
    if len(constant):
        raise ValueError(
            f"column(s) {list(map(int, constant))} of {name} are constant; their correlation is "
            "undefined"
        )
