"""Independent Component Analysis with VCReg (claim C5 of Mialon, Balestriero & LeCun).

Method (:class:`VCRegICA`):

1. **Whiten** ``X`` (n, p): centre, project on the top ``k = n_components`` principal axes and
   scale to unit variance, ``X_w = (X − mean) K`` with ``Cov(X_w) = I`` (unbiased, ``n − 1``
   normalisation; ``whiten="unit-variance"`` as in scikit-learn's FastICA).
2. **Unmix with an orthogonal matrix**: ``Y = X_w W`` with ``W = Q₀·expm(A − Aᵀ)`` (``Q₀`` a random
   rotation, ``A`` the free parameter). Every orthogonal ``W`` keeps ``Cov(Y) = I`` exactly, so
   VCReg's variance term and the off-diagonal covariance of ``Y`` itself are constant: the only
   thing left to minimise is the covariance term of the *projected* outputs ``Z = g(Y)``, with
   ``g`` a frozen random projector. This removes the collapse/scale degeneracy without tuning
   ``μ``, and keeps the optimisation on a smooth manifold (no penalty weights, no retraction).
3. **Objective** (``objective="pairwise"``, default for the random-feature projector): the
   off-diagonal *blocks* of VCReg's covariance term,
   ``L(W) = Σ_{i≠j} ‖Cov(φ(Y_i), φ(Y_j))‖_F² / (k(k−1))``, which by the paper's bridge equals the
   mean pairwise HSIC of the outputs under the random-feature kernel κ̂ (normalised by
   ``1/(n−1)²``). The full covariance term ``c(g(Y))`` (``objective="covariance"``, via
   :func:`vcreg.functional.covariance_loss`) adds the within-block terms, which depend only on
   each output's marginal; measured: for sub-Gaussian sources (uniform, bimodal) they dominate and
   are *minimised by mixtures*, so ``"covariance"`` fails there while ``"pairwise"`` succeeds
   (see ``docs/sections/ica.md``). For linear mixtures pairwise independence of the outputs
   suffices to identify the sources (Comon 1994).
4. **Finite-sample debiasing**: the same-sample terms of ``‖Σ_a z̃_i(a) z̃_j(a)ᵀ‖²`` (the Gram
   form of the fast path) are removed; their ``O(1/n)`` bias depends on the marginals and, left
   in, makes small samples prefer mixtures.
5. **Optimisation** (``optimizer="jacobi+lbfgs"``, default): the contrast has spurious,
   fully-mixed local minima (measured, ``docs/sections/ica.md``: for sub-Gaussian sources at
   ``k ≥ 5`` L-BFGS from a random rotation usually ends in one). First, RADICAL-style Jacobi
   sweeps (Learned-Miller & Fisher 2003, :func:`_jacobi_sweeps`) on at most
   ``max_warmup_samples`` samples: for every pair of outputs a grid of ``n_angles`` Givens angles
   in ``[0, π/2)`` is scored at once (batched over angles) by the pair's own block
   ``‖Cov(φ(y_i), φ(y_j))‖²`` (debiased), and the best angle is applied; sweeps stop when no
   rotation exceeds ``angle_tol``. This reaches the basin of the true unmixing, where the total
   contrast is lower. Then full-batch L-BFGS (strong-Wolfe line search) on ``A`` from there, on
   all samples; the loss is divided by its absolute value at the start so that ``tol`` is a
   *relative* change. ``bandwidth`` is in units of the whitened (unit-variance) data, so it
   adapts to the data's scale; a sequence of bandwidths is optimised in order (continuation).

Metrics: :func:`amari_distance` (classic normalised form in [0, 1], or Picard's squared form)
and :func:`mean_corr_coef` (Hungarian matching of |correlations|).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from vcreg.functional import covariance_loss
from vcreg.projectors import MLPProjector, RandomFeatureProjector

__all__ = [
    "VCRegICA",
    "amari_distance",
    "mean_corr_coef",
    "whiten_unit_variance",
    "ica_objective",
    "make_ica_problem",
    "SOURCE_FAMILIES",
    "nonlinear_ica_experiment",
]

_PROJECTORS = ("random-features", "mlp")
_OBJECTIVES = ("auto", "pairwise", "covariance")
_OPTIMIZERS = ("auto", "jacobi+lbfgs", "jacobi", "lbfgs")


# --------------------------------------------------------------------------------------- metrics


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
    if not (np.isfinite(S_hat).all() and np.isfinite(S).all()):
        raise ValueError("S_hat and S must not contain NaN or Inf")
    if method == "spearman":
        S_hat = rankdata(S_hat, axis=0)
        S = rankdata(S, axis=0)
    a = S_hat - S_hat.mean(axis=0)
    b = S - S.mean(axis=0)
    na = np.linalg.norm(a, axis=0)
    nb = np.linalg.norm(b, axis=0)
    if (na == 0).any() or (nb == 0).any():
        raise ValueError("a column of S_hat or S is constant; its correlation is undefined")
    corr = np.abs((a / na).T @ (b / nb))
    rows, cols = linear_sum_assignment(corr, maximize=True)
    return float(corr[rows, cols].sum() / max(S_hat.shape[1], S.shape[1]))


# ------------------------------------------------------------------------------------- whitening


def whiten_unit_variance(
    X: np.ndarray, n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA whitening: returns ``(X_w, K, mean)`` with ``X_w = (X − mean) K`` of unit (n−1) covariance.

    ``K`` (p, k) keeps the top ``k`` principal axes. Computed in float64 by an SVD of the centred
    data (no squared condition number). Raises ``ValueError`` if the kept axes have zero variance
    (rank-deficient data: reduce ``n_components``).
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    mean = X.mean(axis=0)
    Xc = X - mean
    _, s, Vt = np.linalg.svd(Xc, full_matrices=False)
    s = s[:n_components]
    tol = max(X.shape) * np.finfo(np.float64).eps * (s[0] if s.size and s[0] > 0 else 1.0)
    if s.size < n_components or s[-1] <= tol:
        rank = int((s > tol).sum())
        raise ValueError(
            f"X has rank {rank} after centring, less than n_components={n_components}; "
            "reduce n_components (constant or collinear features, or too few samples)"
        )
    K = Vt[:n_components].T * (math.sqrt(n - 1) / s)
    return Xc @ K, K, mean


# ------------------------------------------------------------------------------------- objective


def _pairwise_blocks(z: torch.Tensor, k: int, m: int, debias: bool = True) -> torch.Tensor:
    """``Σ_{i≠j} ‖Cov(z_i-block, z_j-block)‖_F² / (k(k−1))`` for ``z`` (n, k·m) in blocks of m.

    ``debias`` removes the same-sample terms ``Σ_a ‖z̃_i(a)‖²‖z̃_j(a)‖²`` of
    ``‖Σ_a z̃_i(a) z̃_j(a)ᵀ‖_F²`` (the Gram form of the paper's fast path): that ``O(1/n)`` bias
    is ``≈ tr C_ii · tr C_jj / n``, depends on each output's marginal, and otherwise lets small
    samples prefer mixtures. The debiased value can be slightly negative.
    """
    n = z.shape[0]
    zc = z - z.mean(dim=0, keepdim=True)
    cov = (zc.T @ zc).reshape(k, m, k, m).pow(2).sum(dim=(1, 3))  # (k, k) block norms
    if debias:
        r = zc.reshape(n, k, m).pow(2).sum(dim=2)
        cov = cov - r.T @ r
    off = cov.sum() - cov.diagonal().sum()
    return off / ((n - 1) ** 2 * k * (k - 1))


def ica_objective(y: torch.Tensor, projector: torch.nn.Module, objective: str) -> torch.Tensor:
    """VCReg ICA contrast of outputs ``y`` (n, k) through a frozen projector.

    ``"pairwise"`` (element-wise random-feature projector only): cross-output blocks of the
    covariance of ``g(y)`` — equal to ``c(g(y))·k·m − Σ_i c(φ(y_i))·m`` up to the factor
    ``1/(k(k−1))``, i.e. the mean pairwise HSIC_κ̂ / (n−1)². ``"covariance"``: VCReg's full
    covariance term ``c(g(y))`` (:func:`vcreg.functional.covariance_loss`).
    """
    z = projector(y)
    if objective == "covariance":
        return covariance_loss(z, method="auto", check_finite=False)
    if objective == "pairwise":
        k = y.shape[1]
        if not isinstance(projector, RandomFeatureProjector):
            raise ValueError("objective='pairwise' needs the element-wise random-feature projector")
        if k < 2:
            return z.sum() * 0.0
        return _pairwise_blocks(z, k, projector.features_per_dim)
    raise ValueError(f"unknown objective {objective!r}; choose one of {_OBJECTIVES}")


def _jacobi_sweeps(
    x: torch.Tensor,
    w: torch.Tensor,
    proj: RandomFeatureProjector,
    n_angles: int,
    max_sweeps: int,
    angle_tol: float = 0.0,
    rel_tol: float = 1e-7,
    pair_only: bool = True,
) -> tuple[torch.Tensor, int, bool]:
    """Jacobi sweeps of global line searches over Givens rotations (RADICAL-style).

    For every pair ``(i, j)`` of outputs of ``Y = x·w`` the rotation ``(y_i, y_j) ←
    (c·y_i + s·y_j, −s·y_i + c·y_j)`` is scored on a grid of ``n_angles`` angles ``θ ∈ [0, π/2)``
    (``θ = 0`` = no change; the contrast is ≈ π/2-periodic: a π/2 rotation only permutes and
    flips the two outputs), vectorised over the angles, and the best angle is applied.

    ``pair_only=True`` (used by :class:`VCRegICA`) scores the pair's own debiased block of
    :func:`_pairwise_blocks`, ``‖Cov(φ(y_i), φ(y_j))‖²`` (the pairwise HSIC of ``(y_i, y_j)``);
    ``False`` scores every block that changes, ``(i, j)``, ``(i, l)`` and ``(j, l)`` (coordinate
    descent on the total contrast). Measured: the total version stalls in the same spurious
    fully-mixed minima as L-BFGS for sub-Gaussian sources at ``k ≥ 5`` (uniform, d = 5: Amari
    ≈ 0.6), the pair-only version reaches the basin of the true unmixing (≈ 0.03), where the
    total contrast is lower.

    Sweeps stop when no pair improves by more than ``rel_tol`` (relative to the total contrast),
    when the largest rotation applied in a sweep is ``≤ angle_tol`` radians, or after
    ``max_sweeps``. Returns ``(w, sweeps, converged)``; no gradients.
    """
    n, k = x.shape
    m = proj.features_per_dim
    dtype = x.dtype
    omega = proj.omega.to(dtype)
    phase = proj.phase.to(dtype)
    amp = proj.amplitude  # the projector owns its feature scale

    def feats(v: torch.Tensor) -> torch.Tensor:  # (..., n) -> centred (..., n, m)
        z = amp * torch.cos(v.unsqueeze(-1) * omega + phase)
        return z - z.mean(dim=-2, keepdim=True)

    w = w.clone()
    y = x @ w  # (n, k)
    Z = feats(y.T)  # (k, n, m)
    R = Z.pow(2).sum(-1)  # (k, n) same-sample norms (debiasing)
    theta = torch.arange(n_angles, dtype=dtype, device=x.device) * (math.pi / 2 / n_angles)
    cs, sn = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    with torch.no_grad():
        total = float(_pairwise_blocks(Z.permute(1, 0, 2).reshape(n, k * m), k, m))
    threshold = rel_tol * max(abs(total), 1e-12) * (n - 1) ** 2 * k * (k - 1) / 2
    sweeps, converged = 0, False
    while sweeps < max_sweeps:
        sweeps += 1
        improved = False
        max_angle = 0.0
        for i in range(k - 1):
            for j in range(i + 1, k):
                rest = [r for r in range(k) if r != i and r != j]
                yi = cs * y[:, i] + sn * y[:, j]  # (T, n)
                yj = cs * y[:, j] - sn * y[:, i]
                Zi, Zj = feats(yi), feats(yj)  # (T, n, m)
                Ri, Rj = Zi.pow(2).sum(-1), Zj.pow(2).sum(-1)  # (T, n)
                cost = (Zi.transpose(1, 2) @ Zj).pow(2).sum(dim=(1, 2)) - (Ri * Rj).sum(-1)
                if rest and not pair_only:
                    Zr = Z[rest].permute(1, 0, 2).reshape(n, -1)  # (n, (k-2)m)
                    Rr = R[rest].sum(0)  # (n,)
                    cost = cost + (Zi.transpose(1, 2) @ Zr).pow(2).sum(dim=(1, 2))
                    cost = cost + (Zj.transpose(1, 2) @ Zr).pow(2).sum(dim=(1, 2))
                    cost = cost - (Ri + Rj) @ Rr
                b = int(torch.argmin(cost))
                if b == 0 or not float(cost[0] - cost[b]) > threshold:
                    continue
                improved = True
                max_angle = max(max_angle, min(b, n_angles - b))
                c, s = float(cs[b, 0]), float(sn[b, 0])
                wi, wj = w[:, i].clone(), w[:, j].clone()
                w[:, i], w[:, j] = c * wi + s * wj, c * wj - s * wi
                y[:, i], y[:, j] = yi[b], yj[b]
                Z[i], Z[j], R[i], R[j] = Zi[b], Zj[b], Ri[b], Rj[b]
        if not improved or max_angle * math.pi / 2 / n_angles <= angle_tol:
            converged = True
            break
    return w, sweeps, converged


# ------------------------------------------------------------------------------------- estimator


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class VCRegICA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Linear ICA by minimising VCReg's covariance term through a frozen random projector.

    Drop-in for :class:`sklearn.decomposition.FastICA` (``fit``, ``transform``,
    ``inverse_transform``, ``components_``, ``mixing_``, ``mean_``, ``whitening_``, ``n_iter_``).
    The method and its conventions are described in the module docstring: unit-variance PCA
    whitening, orthogonal unmixing ``W = Q₀·expm(A − Aᵀ)``, contrast = pairwise blocks of the
    covariance of ``g(X_w W)`` (debiased pairwise HSIC under the random-feature kernel), Jacobi
    sweeps of Givens-angle grid searches followed by an L-BFGS polish.

    Parameters:
        n_components: number of sources ``k`` (default: number of features).
        projector: ``"random-features"`` (element-wise random Fourier features,
            :class:`vcreg.projectors.RandomFeatureProjector`, Gaussian kernel) or ``"mlp"``
            (frozen random ReLU MLP, :class:`vcreg.projectors.MLPProjector`, no batch-norm).
        width: random features per output (random-features; default 16) or hidden/output width
            of the MLP (default 512).
        depth: number of Linear layers of the MLP projector (ignored for random features).
        bandwidth: Gaussian-kernel bandwidth(s) in units of the whitened (unit-variance) data; a
            sequence is a continuation schedule, optimised in order (default 1.0).
        objective: ``"pairwise"`` (cross-output blocks only), ``"covariance"`` (full ``c(g(Y))``)
            or ``"auto"`` (pairwise for random features, covariance for the MLP).
        whiten: ``"unit-variance"`` (PCA whitening) or ``False`` (X is already white: only
            centred, and ``n_components`` must equal the number of features).
        optimizer: ``"jacobi+lbfgs"`` (Jacobi sweeps of global Givens-angle searches, then an
            L-BFGS polish on all samples), ``"jacobi"`` (sweeps only), ``"lbfgs"`` (L-BFGS from
            the random rotation, the pre-Jacobi method) or ``"auto"`` (``"jacobi+lbfgs"`` for the
            pairwise objective, ``"lbfgs"`` otherwise; the sweeps need the pairwise blocks).
        n_angles: Givens angles per pair in ``[0, π/2)`` scored in each Jacobi step (default 16).
        max_sweeps: maximum Jacobi sweeps per bandwidth stage.
        angle_tol: stop the sweeps when no rotation of a sweep exceeds ``angle_tol`` radians
            (default 0.1 ≈ 5.7°; the L-BFGS polish does the fine adjustment).
        max_iter: maximum L-BFGS iterations per bandwidth stage.
        tol: stop a stage when the relative loss change (or step) falls below ``tol``.
        n_restarts: random initial rotations; the one with the lowest final loss is kept (the
            loss is a noisy estimate, so the lowest loss is not always the best unmixing).
        max_warmup_samples: the Jacobi sweeps, and the L-BFGS stages before the last, use at
            most this many samples (a random subset; ``None`` = all). The last L-BFGS stage
            always uses every sample.
        device: torch device (default: CUDA when available, else CPU).
        random_state: seed for the projector, the initial rotations and the warm-up subset.

    Attributes:
        components_ (k, p): unmixing matrix, ``S = (X − mean_) @ components_.T``.
        mixing_ (p, k): pseudo-inverse of ``components_``.
        mean_ (p,), whitening_ (k, p), unmixing_ (k, k) orthogonal: ``components_ = unmixing_ @
        whitening_``.
        n_iter_: L-BFGS iterations of the kept restart (all stages; Jacobi sweeps for
        ``optimizer="jacobi"``). ``n_sweeps_``: its Jacobi sweeps (0 for L-BFGS only).
        ``loss_``: its final contrast value. ``converged_``: whether its last stage's sweeps
        stopped before ``max_sweeps`` and its L-BFGS on ``tol`` (not on ``max_iter``).
    """

    def __init__(
        self,
        n_components: int | None = None,
        *,
        projector: str = "random-features",
        width: int | None = None,
        depth: int = 2,
        bandwidth: float | Sequence[float] = 1.0,
        objective: str = "auto",
        whiten: str | bool = "unit-variance",
        optimizer: str = "auto",
        n_angles: int = 16,
        max_sweeps: int = 15,
        angle_tol: float = 0.1,
        max_iter: int = 200,
        tol: float = 1e-6,
        n_restarts: int = 1,
        max_warmup_samples: int | None = 2000,
        device: str | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_components = n_components
        self.projector = projector
        self.width = width
        self.depth = depth
        self.bandwidth = bandwidth
        self.objective = objective
        self.whiten = whiten
        self.optimizer = optimizer
        self.n_angles = n_angles
        self.max_sweeps = max_sweeps
        self.angle_tol = angle_tol
        self.max_iter = max_iter
        self.tol = tol
        self.n_restarts = n_restarts
        self.max_warmup_samples = max_warmup_samples
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ parameter validation
    def _check_params(self, n_features: int) -> tuple[int, list[float], str, int, str]:
        k = self.n_components
        if k is None:
            k = n_features
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"n_components must be a positive integer or None, got {k!r}")
        if k > n_features:
            raise ValueError(
                f"n_components={k} must be <= n_features={n_features} (ICA cannot recover more "
                "sources than observed mixtures)"
            )
        if self.projector not in _PROJECTORS:
            raise ValueError(f"unknown projector {self.projector!r}; choose one of {_PROJECTORS}")
        if self.objective not in _OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of {_OBJECTIVES}")
        objective = self.objective
        if objective == "auto":
            objective = "pairwise" if self.projector == "random-features" else "covariance"
        if objective == "pairwise" and self.projector != "random-features":
            raise ValueError(
                "objective='pairwise' needs projector='random-features' (the MLP projector mixes "
                "outputs, so its covariance has no per-output blocks); use objective='covariance'"
            )
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {_OPTIMIZERS}")
        optimizer = self.optimizer
        if optimizer == "auto":
            optimizer = "jacobi+lbfgs" if objective == "pairwise" else "lbfgs"
        if optimizer != "lbfgs" and objective != "pairwise":
            raise ValueError(
                f"optimizer={optimizer!r} needs objective='pairwise' (random-feature projector); "
                "use optimizer='lbfgs'"
            )
        if self.whiten not in ("unit-variance", False):
            raise ValueError(f"whiten must be 'unit-variance' or False, got {self.whiten!r}")
        if self.whiten is False and k != n_features:
            raise ValueError("whiten=False requires n_components == n_features")
        bws = (
            [self.bandwidth]
            if isinstance(self.bandwidth, numbers.Real)
            else list(self.bandwidth)
            if isinstance(self.bandwidth, Sequence) and not isinstance(self.bandwidth, str)
            else None
        )
        if not bws or any(
            not isinstance(b, numbers.Real) or not (b > 0 and math.isfinite(b)) for b in bws
        ):
            raise ValueError(
                f"bandwidth must be a positive number or a non-empty sequence of them, got "
                f"{self.bandwidth!r}"
            )
        width = self.width
        if width is None:
            width = 16 if self.projector == "random-features" else 512
        for name, value in (
            ("width", width),
            ("depth", self.depth),
            ("max_iter", self.max_iter),
            ("n_restarts", self.n_restarts),
            ("n_angles", self.n_angles),
            ("max_sweeps", self.max_sweeps),
        ):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.angle_tol, numbers.Real) or not self.angle_tol >= 0:
            raise ValueError(f"angle_tol must be a non-negative number, got {self.angle_tol!r}")
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        mws = self.max_warmup_samples
        if mws is not None and (
            not isinstance(mws, numbers.Integral) or isinstance(mws, bool) or mws < 2
        ):
            raise ValueError(f"max_warmup_samples must be an integer >= 2 or None, got {mws!r}")
        return int(k), [float(b) for b in bws], objective, int(width), optimizer

    def _make_projector(self, k: int, width: int, bandwidth: float, seed: int):
        if self.projector == "random-features":
            return RandomFeatureProjector(
                k, width, kernel="gaussian", bandwidth=bandwidth, seed=seed, scale="kernel"
            )
        # Frozen random MLP without batch-norm (its batch statistics would re-standardise the
        # features and hide the dependence); the bandwidth is a scale on its input.
        mlp = MLPProjector(
            k, [width] * self.depth, batch_norm=False, frozen=True, seed=seed, last_bias=True
        )
        return _Scaled(mlp, 1.0 / bandwidth)

    # ------------------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> VCRegICA:
        """Fit the unmixing matrix on ``X`` (n_samples, n_features); ``y`` is ignored."""
        self._fit(X)
        return self

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the estimated sources (n_samples, n_components)."""
        Xv = self._fit(X)
        return self._transform_validated(Xv)

    def _fit(self, X: Any) -> np.ndarray:
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, ensure_all_finite=True
        )
        n, p = X.shape
        k, bandwidths, objective, width, optimizer = self._check_params(p)
        if n <= k:
            raise ValueError(
                f"VCRegICA needs more samples than components to whiten, got n_samples={n} and "
                f"n_components={k}"
            )
        rng = check_random_state(self.random_state)
        if self.whiten == "unit-variance":
            Xw, K, mean = whiten_unit_variance(X, k)
        else:
            mean = X.astype(np.float64).mean(axis=0)
            Xw, K = X.astype(np.float64) - mean, np.eye(p)

        device = _resolve_device(self.device)
        dtype = torch.float32  # the contrast is a smooth average: float32 is accurate and 2x faster
        x_full = torch.as_tensor(Xw, dtype=dtype, device=device)
        warm_idx = None
        if self.max_warmup_samples is not None and n > self.max_warmup_samples:
            warm_idx = torch.as_tensor(
                np.sort(rng.choice(n, self.max_warmup_samples, replace=False)), device=device
            )
        proj_seeds = rng.randint(0, 2**31 - 1, size=len(bandwidths))
        best: tuple[float, np.ndarray, int, bool, int] | None = None
        for _ in range(self.n_restarts):
            q0 = _random_rotation(k, rng)
            result = self._optimise(
                x_full,
                warm_idx,
                q0,
                k,
                width,
                bandwidths,
                proj_seeds,
                objective,
                optimizer,
                device,
                dtype,
            )
            if best is None or result[0] < best[0]:
                best = result
        loss, W, n_iter, converged, n_sweeps = best

        components = (K @ W).T  # (k, p) in float64
        self.mean_ = mean.astype(X.dtype)
        self.whitening_ = K.T.astype(X.dtype)
        self.unmixing_ = W.T.astype(X.dtype)
        self.components_ = components.astype(X.dtype)
        self.mixing_ = np.linalg.pinv(components).astype(X.dtype)
        self.n_iter_ = int(n_iter)
        self.n_sweeps_ = int(n_sweeps)
        self.loss_ = float(loss)
        self.converged_ = bool(converged)
        if not converged:
            limits = []
            if optimizer != "lbfgs":
                limits.append(f"max_sweeps={self.max_sweeps} Jacobi sweeps")
            if optimizer != "jacobi":
                limits.append(f"max_iter={self.max_iter} L-BFGS iterations (tol={self.tol})")
            warnings.warn(
                f"VCRegICA did not converge within {' / '.join(limits)}; increase them.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return X

    def _optimise(
        self, x_full, warm_idx, q0, k, width, bandwidths, seeds, objective, optimizer, device, dtype
    ):
        """One restart: continuation over ``bandwidths``; each stage runs Jacobi sweeps on at most
        ``max_warmup_samples`` samples and/or L-BFGS; returns (loss, W, n_iter, converged,
        n_sweeps)."""
        q0 = torch.as_tensor(q0, dtype=dtype, device=device)
        if k == 1:
            return 0.0, np.ones((1, 1)), 0, True, 0
        a = torch.zeros(k, k, dtype=dtype, device=device, requires_grad=True)
        n_iter, n_sweeps, converged, loss = 0, 0, True, 0.0
        for stage, (bw, seed) in enumerate(zip(bandwidths, seeds, strict=True)):
            last = stage == len(bandwidths) - 1
            x = x_full if (last or warm_idx is None) else x_full[warm_idx]
            proj = self._make_projector(k, width, bw, int(seed)).to(device)
            converged = True
            if optimizer != "lbfgs":
                with torch.no_grad():
                    w0 = q0 @ torch.linalg.matrix_exp(a - a.T)
                    xj = x_full if warm_idx is None else x_full[warm_idx]
                    q0, sweeps, jacobi_converged = _jacobi_sweeps(
                        xj,
                        w0,
                        proj,
                        int(self.n_angles),
                        int(self.max_sweeps),
                        angle_tol=float(self.angle_tol),
                    )
                    a.zero_()
                n_sweeps += sweeps
                converged = jacobi_converged

            def contrast(a=a, x=x, proj=proj, q0=q0):
                w = q0 @ torch.linalg.matrix_exp(a - a.T)
                return ica_objective(x @ w, proj, objective)

            if optimizer == "jacobi":
                if last:
                    with torch.no_grad():
                        loss = float(contrast())
                continue
            with torch.no_grad():
                scale = float(contrast())
            scale = abs(scale) if scale != 0 and math.isfinite(scale) else 1.0
            opt = torch.optim.LBFGS(
                [a],
                lr=1.0,
                max_iter=self.max_iter,
                max_eval=2 * self.max_iter,
                tolerance_grad=1e-9,
                tolerance_change=float(self.tol),
                history_size=20,
                line_search_fn="strong_wolfe",
            )

            def closure(opt=opt, contrast=contrast, scale=scale):
                opt.zero_grad()
                value = contrast() / scale
                value.backward()
                return value

            opt.step(closure)
            state = opt.state[a]
            stage_iter = int(state.get("n_iter", 0))
            n_iter += stage_iter
            converged = (
                converged
                and stage_iter < self.max_iter
                and int(state.get("func_evals", 0)) < 2 * self.max_iter
            )
            if last:
                with torch.no_grad():
                    loss = float(contrast())
        w = (q0 @ torch.linalg.matrix_exp(a - a.T)).detach().cpu().double().numpy()
        u, _, vt = np.linalg.svd(w)  # re-orthonormalise in float64 (polar factor)
        if optimizer == "jacobi":
            n_iter = n_sweeps
        return loss, u @ vt, max(n_iter, 1), converged, n_sweeps

    # ---------------------------------------------------------------------------- transforms
    def _transform_validated(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) @ self.components_.T).astype(X.dtype, copy=False)

    def transform(self, X: Any) -> np.ndarray:
        """Estimated sources ``(X − mean_) @ components_.T`` (n_samples, n_components)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._transform_validated(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map sources back to the data space: ``S @ mixing_.T + mean_``."""
        check_is_fitted(self)
        from sklearn.utils import check_array

        S = check_array(X, dtype=[np.float64, np.float32])
        if S.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"X has {S.shape[1]} components, but VCRegICA was fitted with "
                f"{self.components_.shape[0]}"
            )
        return (S @ self.mixing_.T + self.mean_).astype(S.dtype, copy=False)

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]


class _Scaled(torch.nn.Module):
    """``x ↦ g(x·s)``: applies a bandwidth (input scale) to a projector without one."""

    def __init__(self, module: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.module = module
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x * self.scale)


def _random_rotation(k: int, rng: np.random.RandomState) -> np.ndarray:
    """Haar-distributed orthogonal matrix (QR of a Gaussian matrix with sign correction)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))


# ----------------------------------------------------------------------- benchmark problems

SOURCE_FAMILIES = (
    "laplace",
    "uniform",
    "student-t3",
    "exponential",
    "bimodal",
    "mixed",
    "signals",
)


def _family_sources(family: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if family == "laplace":
        return rng.laplace(size=(n, k))
    if family == "uniform":
        return rng.uniform(-1.0, 1.0, size=(n, k))
    if family == "student-t3":
        return rng.standard_t(3, size=(n, k))
    if family == "exponential":
        return rng.exponential(size=(n, k))
    if family == "bimodal":  # symmetric two-Gaussian mixture: sub-Gaussian (kurtosis < 0)
        return rng.normal(size=(n, k)) * 0.5 + rng.choice([-1.0, 1.0], size=(n, k))
    if family == "mixed":  # cycle through sub- and super-Gaussian sources
        cycle = ("uniform", "laplace", "bimodal", "exponential", "student-t3")
        cols = [_family_sources(cycle[j % len(cycle)], n, 1, rng) for j in range(k)]
        return np.hstack(cols)
    if family == "signals":
        # scikit-learn's blind-source-separation example (sin, square, sawtooth + 0.2 noise on
        # t ∈ [0, 8]); for k > 3 the three shapes repeat at other frequencies and phases.
        from scipy import signal

        t = np.linspace(0, 8, n)
        cols = []
        for j in range(k):
            f = (2.0, 3.0, 1.0)[j % 3] * (1.0 + 0.37 * (j // 3))
            ph = 0.0 if j < 3 else rng.uniform(0, 2 * np.pi)
            kind = j % 3
            if kind == 0:
                cols.append(np.sin(f * t + ph))
            elif kind == 1:
                cols.append(np.sign(np.sin(f * t + ph)))
            else:
                cols.append(signal.sawtooth(2 * np.pi * (t + ph) / (2 * np.pi / f)))
        S = np.stack(cols, axis=1)
        return S + 0.2 * rng.normal(size=S.shape)
    raise ValueError(f"unknown source family {family!r}; choose one of {SOURCE_FAMILIES}")


def make_ica_problem(
    family: str,
    n_samples: int,
    n_sources: int,
    conditioning: str = "well",
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear ICA benchmark problem ``X = S·Aᵀ``; returns ``(S, A, X)``.

    Sources ``S`` (n, k) of one of :data:`SOURCE_FAMILIES` are standardised (zero mean, unit
    variance). ``A = U·diag(s)·Vᵀ`` with Haar-random ``U, V``; ``conditioning="well"`` has
    singular values log-spaced in [1, 0.5] (condition number 2), ``"ill"`` in [1, 1e-3]
    (condition number 1000).
    """
    if conditioning not in ("well", "ill"):
        raise ValueError(f"conditioning must be 'well' or 'ill', got {conditioning!r}")
    if n_samples < 2 or n_sources < 1:
        raise ValueError(f"need n_samples >= 2 and n_sources >= 1, got {n_samples}, {n_sources}")
    rng = np.random.default_rng(random_state)
    S = _family_sources(family, n_samples, n_sources, rng)
    S = (S - S.mean(axis=0)) / S.std(axis=0, ddof=1)
    rs = np.random.RandomState(rng.integers(2**31 - 1))
    U, V = _random_rotation(n_sources, rs), _random_rotation(n_sources, rs)
    low = 0.5 if conditioning == "well" else 1e-3
    s = np.logspace(0, np.log10(low), n_sources) if n_sources > 1 else np.ones(1)
    A = (U * s) @ V.T
    return S, A, S @ A.T


# -------------------------------------------------------------------------- nonlinear ICA


def _leaky_mlp_mixing(S: np.ndarray, n_layers: int, slope: float, rng: np.random.Generator):
    """Random invertible MLP: ``x ← leaky_relu(x·M_l)`` with well-conditioned square ``M_l``
    (no activation after the last layer). Leaky-ReLU with ``slope > 0`` is a bijection."""
    rs = np.random.RandomState(rng.integers(2**31 - 1))
    X = S
    k = S.shape[1]
    for layer in range(n_layers):
        M = (_random_rotation(k, rs) * np.linspace(1.0, 0.5, k)) @ _random_rotation(k, rs).T
        X = X @ M
        if layer < n_layers - 1:
            X = np.where(X > 0, X, slope * X)
        X = (X - X.mean(axis=0)) / X.std(axis=0)
    return X


def nonlinear_ica_experiment(
    n_sources: int = 4,
    n_samples: int = 4000,
    n_layers: int = 3,
    family: str = "laplace",
    slope: float = 0.2,
    hidden: int = 64,
    features_per_dim: int = 16,
    epochs: int = 300,
    lr: float = 1e-2,
    mu: float = 25.0,
    nu: float = 1.0,
    random_state: int = 0,
) -> dict[str, float]:
    """Nonlinear ICA negative result (PAPER.md, claim C5): sources mixed by a random invertible
    leaky-ReLU MLP are *not* recovered by VCReg.

    A small MLP encoder ``f`` (``n → hidden → hidden → n_sources``, ReLU) is trained full-batch
    with Adam on ``VCReg(g(f(X)))`` (``μ·v + ν·c``, :func:`vcreg.functional.vcreg_loss`) through a
    frozen element-wise random-feature projector ``g`` (on the batch-standardised encoder
    outputs). Returns MCCs (Pearson and Spearman, :func:`mean_corr_coef`) of: the nonlinear
    encoder, linear :class:`VCRegICA`, FastICA, the raw mixtures (no unmixing) and a random
    linear map, plus the linear-ICA MCC on the *linear* mixture of the same sources as a
    positive control.
    """
    from sklearn.decomposition import FastICA

    from vcreg.functional import vcreg_loss

    rng = np.random.default_rng(random_state)
    S = _family_sources(family, n_samples, n_sources, rng)
    S = (S - S.mean(axis=0)) / S.std(axis=0)
    X = _leaky_mlp_mixing(S, n_layers, slope, rng)

    gen = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
    x = torch.as_tensor(X, dtype=torch.float32)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(n_sources, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, n_sources),
    )
    with torch.no_grad():
        for p in encoder.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / math.sqrt(max(p.shape[-1], 1))))
    proj = RandomFeatureProjector(
        n_sources, features_per_dim, bandwidth=1.0, seed=random_state, scale="kernel"
    )
    opt = torch.optim.Adam(encoder.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        opt.zero_grad()
        h = encoder(x)
        # VCReg's variance term acts on the projector's output; the encoder's outputs are
        # standardised first so the kernel bandwidth is meaningful (as in VCRegICA's whitening).
        hs = (h - h.mean(0)) / (h.std(0) + 1e-6)
        loss = vcreg_loss(proj(hs), mu=mu, nu=nu)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        H = encoder(x).numpy().astype(np.float64)

    seed = int(rng.integers(2**31 - 1))
    lin = VCRegICA(random_state=seed).fit(X)
    S_lin = lin.transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        S_fast = FastICA(whiten="unit-variance", random_state=seed, max_iter=1000).fit_transform(X)
    X_linear = S @ _random_rotation(n_sources, np.random.RandomState(seed)).T
    S_ctrl = VCRegICA(random_state=seed).fit_transform(X_linear)
    R = X @ np.random.default_rng(seed).normal(size=(n_sources, n_sources))

    out: dict[str, float] = {}
    for name, est in (
        ("vcreg_nonlinear_encoder", H),
        ("vcreg_ica_linear", S_lin),
        ("fastica", S_fast),
        ("mixtures", X),
        ("random_linear", R),
        ("vcreg_ica_on_linear_mixture", S_ctrl),
    ):
        out[f"mcc_{name}"] = mean_corr_coef(est, S)
        out[f"mcc_spearman_{name}"] = mean_corr_coef(est, S, method="spearman")
    out["encoder_loss_first"] = losses[0]
    out["encoder_loss_final"] = losses[-1]
    out.update(n_sources=n_sources, n_samples=n_samples, n_layers=n_layers, slope=slope)
    return out
