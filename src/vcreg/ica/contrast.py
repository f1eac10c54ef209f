"""The VCReg ICA contrast: whitening, the frozen projector, and the cross-output covariance blocks.

Conventions: ``X_w`` (n, k) is PCA-whitened data of unit (n−1) covariance; outputs
``Y = X_w·W`` with ``W`` orthogonal; ``g`` a frozen projector whose bandwidth is in units of the
whitened data. The pairwise contrast is the mean off-diagonal block of VCReg's covariance term of
``g(Y)`` (:func:`vcreg.functional.block_covariance_norms`), i.e. the mean pairwise HSIC of the
outputs under the random-feature kernel κ̂ (the paper's bridge), debiased.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from vcreg.functional import block_covariance_norms, covariance_loss
from vcreg.projectors import MLPProjector, RandomFeatureProjector

__all__ = [
    "FEATURE_SCALES",
    "OBJECTIVES",
    "PROJECTORS",
    "RandomFeatures",
    "ica_objective",
    "make_projector",
    "whiten_unit_variance",
]

PROJECTORS = ("random-features", "mlp")
FEATURE_SCALES = ("standardized", "kernel")
_TINY_VARIANCE = 1e-30
OBJECTIVES = ("auto", "pairwise", "covariance")


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


def pairwise_blocks(z: torch.Tensor, k: int, m: int, debias: bool = True) -> torch.Tensor:
    """``Σ_{i≠j} ‖Cov(z_i-block, z_j-block)‖_F² / (k(k−1))`` for ``z`` (n, k·m) in blocks of m.

    ``debias`` removes the same-sample terms of the Gram form (see
    :func:`vcreg.functional.block_covariance_norms`); left in, their ``O(1/n)`` bias, which
    depends on each output's marginal, lets small samples prefer mixtures.
    """
    blocks = block_covariance_norms(z.reshape(z.shape[0], k, m), debias=debias)
    return (blocks.sum() - blocks.diagonal().sum()) / (k * (k - 1))


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
        if not isinstance(projector, RandomFeatureProjector | RandomFeatures):
            raise ValueError("objective='pairwise' needs the element-wise random-feature projector")
        if k < 2:
            return z.sum() * 0.0
        return pairwise_blocks(z, k, projector.features_per_dim)
    raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")


class RandomFeatures(torch.nn.Module):
    """Element-wise random Fourier features ``φ(t) = a·cos(ω t + b)`` of several Gaussian
    bandwidths at once: the frequencies of one :class:`~vcreg.projectors.RandomFeatureProjector`
    per bandwidth (``scale="kernel"``), concatenated, with ``a = sqrt(2/m)`` for the total
    ``m``, so ``φ(s)ᵀφ(t)`` approximates the *average* of the Gaussian kernels. One bandwidth
    gives exactly that projector's features. Output ``(n, k·m)`` in per-output blocks, like the
    projector, so the pairwise contrast is the cross-output blocks of its VCReg covariance.

    ``standardize=True``: each feature is centred and divided by ``sqrt(σ² + λ·a²/2)``, ``σ²`` its
    sample variance (``n − 1`` normalisation), ``λ = variance_floor`` in units of ``a²/2 = 1/m``,
    the largest variance a cosine of amplitude ``a`` can have. With ``λ = 0`` that is the
    ``scale="standardized"`` of the projector, the scale VICReg's variance term gives an
    embedding, and the cross-output blocks are squared correlations; ``λ > 0`` keeps nearly
    constant features from being blown up to unit variance (a ridge, as in kernel CCA).
    """

    def __init__(
        self,
        k: int,
        width: int,
        bandwidths: Sequence[float],
        seed: int,
        standardize: bool = False,
        variance_floor: float = 0.0,
    ) -> None:
        super().__init__()
        self.standardize = bool(standardize)
        self.variance_floor = float(variance_floor)
        sizes = [
            width // len(bandwidths) + (i < width % len(bandwidths)) for i in range(len(bandwidths))
        ]
        projs = [
            RandomFeatureProjector(1, m, bandwidth=bw, seed=seed + i, scale="kernel")
            for i, (m, bw) in enumerate(zip(sizes, bandwidths, strict=True))
            if m > 0
        ]
        self.register_buffer("omega", torch.cat([p.omega for p in projs]))
        self.register_buffer("phase", torch.cat([p.phase for p in projs]))
        self.in_dim = k
        self.features_per_dim = int(self.omega.numel())
        self.amplitude = math.sqrt(2.0 / self.features_per_dim)

    def _arg(self, v: torch.Tensor) -> torch.Tensor:
        # (..., n) -> (..., m, n): samples innermost, so that the sums over features and the
        # broadcasts run along contiguous memory (measured 2x faster than (..., n, m)). The
        # broadcast keeps the layout of its input, so a transposed ``y.T`` is copied first: as a
        # view it put the samples outermost (the cache-unfriendly layout at n = 10,000).
        v = v.contiguous()
        return (v.unsqueeze(-2) * self.omega[:, None]).add_(self.phase[:, None])

    def _scaled(
        self, v: torch.Tensor, arg: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Centred (and, with ``standardize``, standardised) features of ``v`` (..., n) (``arg``:
        its ``_arg``, if computed already), with their standard deviations (..., m, 1)
        (``None`` without ``standardize``)."""
        z = torch.cos(self._arg(v) if arg is None else arg).mul_(self.amplitude)
        z = z.sub_(z.mean(dim=-1, keepdim=True))
        if not self.standardize:
            return z, None
        # a constant feature (sd 0) stays 0 instead of becoming 0/0
        # out of place: forward() may run under autograd
        var = z.pow(2).sum(-1, keepdim=True) / max(v.shape[-1] - 1, 1)
        sd = (var + self.variance_floor * self.amplitude**2 / 2).clamp(_TINY_VARIANCE).sqrt()
        return z / sd, sd

    def weighted(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(c̄, c̄², w)``: the centred cosines ``c̄`` (..., m, n) of ``v`` (..., n), without the
        amplitude, their squares, and per-feature weights ``w`` (..., m) with
        ``centred(v) = c̄·w`` (``w = a``, or ``1/sqrt(σ_c² + λ/2)`` with ``standardize``). The
        weights are applied to the small (m × m) blocks instead of the (m, n) features, so the
        Jacobi sweeps pass over the (m, n) features five times instead of eight."""
        c = torch.cos_(self._arg(v))
        c = c.sub_(c.mean(dim=-1, keepdim=True))
        sq = c * c
        if not self.standardize:
            return c, sq, torch.full(c.shape[:-1], self.amplitude, dtype=c.dtype, device=c.device)
        var = sq.sum(-1) / max(v.shape[-1] - 1, 1)
        return c, sq, (var + self.variance_floor / 2).clamp(_TINY_VARIANCE).rsqrt()

    def centred(self, v: torch.Tensor) -> torch.Tensor:
        """Features of ``v`` (..., n), centred over the samples (standardised with
        ``standardize``): (..., m, n)."""
        return self._scaled(v)[0]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            z = self.centred(y.T)  # (k, m, n)
        else:
            z = self.amplitude * torch.cos(self._arg(y.T))
        return z.permute(2, 0, 1).reshape(y.shape[0], -1)

    def value_and_grad(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The debiased pairwise contrast of ``y`` (n, k) (= :func:`pairwise_blocks` of
        ``self(y)``) and its gradient ``∂L/∂y`` (n, k), in closed form (no autograd graph).

        With ``Φ̄`` the centred features, ``G = Φ̄ᵀΦ̄``, ``M`` the mask of off-diagonal blocks,
        ``r_ai = ‖Φ̄_i(a)‖²`` and ``c = 1/((n−1)²k(k−1))``: ``L = c·(Σ M⊙G² − Σ_{i≠j}(rᵀr)_ij)``,
        ``∂L/∂Φ̄ = 4c·(Φ̄(M⊙G) − (Σ_l r_al − r_ai)·Φ̄_i(a))``; with ``standardize`` (``Φ̄ = u/σ``,
        ``σ = (‖u‖²/(n−1) + λa²/2)^½`` per feature column ``u``) back through it,
        ``∂L/∂u = (∂L/∂Φ̄ − Φ̄·⟨Φ̄, ∂L/∂Φ̄⟩/(n−1))/σ``; then back through the centring
        (subtract the sample mean) and ``∂φ/∂t = −a·ω·sin(ωt + b)``.
        """
        n, k = y.shape
        m = self.features_per_dim
        arg = self._arg(y.T)  # (k, m, n)
        phic, sd = self._scaled(y.T, arg)
        flat = phic.reshape(k * m, n)
        mask = 1.0 - torch.eye(k, dtype=y.dtype, device=y.device)
        gram = (flat @ flat.T).reshape(k, m, k, m).mul_(mask[:, None, :, None])  # off-diagonal
        r = phic.pow(2).sum(dim=1)  # (k, n) same-sample norms
        rest = r.sum(dim=0, keepdim=True) - r
        c = 1.0 / ((n - 1) ** 2 * k * (k - 1))
        value = c * (gram.pow(2).sum() - (r * rest).sum())
        dphi = (gram.reshape(k * m, k * m) @ flat).reshape(k, m, n).sub_(rest[:, None] * phic)
        if sd is not None:
            along = (dphi * phic).sum(dim=-1, keepdim=True).div_(max(n - 1, 1))
            dphi = dphi.sub_(phic * along).div_(sd)
        dphi = dphi.sub_(dphi.mean(dim=-1, keepdim=True))
        dy = (dphi.mul_(torch.sin(arg)).mul_(self.omega[:, None])).sum(dim=1)  # (k, n)
        return value, dy.T.mul_(-4.0 * c * self.amplitude)


class _Scaled(torch.nn.Module):
    """``x ↦ g(x·s)``: applies a bandwidth (input scale) to a projector without one."""

    def __init__(self, module: torch.nn.Module, scale: float) -> None:
        super().__init__()
        self.module = module
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x * self.scale)


def make_projector(
    kind: str, k: int, width: int, bandwidth: float, seed: int, depth: int = 2
) -> torch.nn.Module:
    """The frozen projector ``g`` of the contrast: element-wise random Fourier features (Gaussian
    kernel of ``bandwidth``) or a frozen random ReLU MLP applied to ``x / bandwidth``."""
    if kind == "random-features":
        return RandomFeatureProjector(
            k, width, kernel="gaussian", bandwidth=bandwidth, seed=seed, scale="kernel"
        )
    # Frozen random MLP without batch-norm (its batch statistics would re-standardise the
    # features and hide the dependence); the bandwidth is a scale on its input.
    mlp = MLPProjector(k, [width] * depth, batch_norm=False, frozen=True, seed=seed, last_bias=True)
    return _Scaled(mlp, 1.0 / bandwidth)
