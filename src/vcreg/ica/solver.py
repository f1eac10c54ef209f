"""Optimisers of the VCReg ICA contrast over orthogonal unmixing matrices.

``W = Q₀·expm(A − Aᵀ)``: RADICAL-style Jacobi sweeps of Givens-angle grid searches
(Learned-Miller & Fisher 2003) move ``Q₀`` into the basin of the true unmixing, then full-batch
L-BFGS (strong Wolfe) on ``A`` polishes the total contrast. A sequence of bandwidths is optimised
in order (continuation); all stages but the last may run on a random subsample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vcreg.ica.contrast import ica_objective, make_projector, pairwise_blocks
from vcreg.projectors import RandomFeatureProjector

__all__ = ["OPTIMIZERS", "SolverConfig", "SolverResult", "jacobi_sweeps", "optimise"]

OPTIMIZERS = ("auto", "jacobi+lbfgs", "jacobi", "lbfgs")


@dataclass(frozen=True)
class SolverConfig:
    """Resolved settings of one fit (see :class:`vcreg.ica.VCRegICA` for their meaning)."""

    projector: str
    width: int
    depth: int
    bandwidths: tuple[float, ...]
    objective: str  # "pairwise" or "covariance"
    optimizer: str  # "jacobi+lbfgs", "jacobi" or "lbfgs"
    n_angles: int
    max_sweeps: int
    angle_tol: float
    max_iter: int
    tol: float


@dataclass(frozen=True)
class SolverResult:
    """One restart: final contrast, orthogonal ``w`` (k, k) float64, iteration counts."""

    loss: float
    w: np.ndarray
    n_iter: int
    converged: bool
    n_sweeps: int


def _centred_features(
    v: torch.Tensor, omega: torch.Tensor, phase: torch.Tensor, amp: float
) -> torch.Tensor:
    """Random Fourier features of ``v`` (..., n) -> centred (..., n, m)."""
    z = amp * torch.cos(v.unsqueeze(-1) * omega + phase)
    return z - z.mean(dim=-2, keepdim=True)


def _rotation_cost(Zi, Zj, Ri, Rj, Zrest, Rrest) -> torch.Tensor:
    """Debiased Gram-form cost of each candidate angle (T,): the pair's own block and, when
    ``Zrest`` (k−2, n, m) is given, the blocks between the pair and every other output."""
    cost = (Zi.transpose(1, 2) @ Zj).pow(2).sum(dim=(1, 2)) - (Ri * Rj).sum(-1)
    if Zrest is not None and len(Zrest):
        n = Zi.shape[1]
        Zr = Zrest.permute(1, 0, 2).reshape(n, -1)  # (n, (k-2)m)
        Rr = Rrest.sum(0)  # (n,)
        cost = cost + (Zi.transpose(1, 2) @ Zr).pow(2).sum(dim=(1, 2))
        cost = cost + (Zj.transpose(1, 2) @ Zr).pow(2).sum(dim=(1, 2))
        cost = cost - (Ri + Rj) @ Rr
    return cost


def jacobi_sweeps(
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
        return _centred_features(v, omega, phase, amp)

    w = w.clone()
    y = x @ w  # (n, k)
    Z = feats(y.T)  # (k, n, m)
    R = Z.pow(2).sum(-1)  # (k, n) same-sample norms (debiasing)
    theta = torch.arange(n_angles, dtype=dtype, device=x.device) * (math.pi / 2 / n_angles)
    cs, sn = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    with torch.no_grad():
        total = float(pairwise_blocks(Z.permute(1, 0, 2).reshape(n, k * m), k, m))
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
                cost = _rotation_cost(Zi, Zj, Ri, Rj, Z[rest] if not pair_only else None, R[rest])
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


def _lbfgs_stage(a, contrast, max_iter: int, tol: float) -> tuple[int, bool]:
    """Full-batch L-BFGS (strong Wolfe) on ``a``; the loss is divided by its absolute starting
    value so ``tol`` is a relative change (the debiased contrast is ≈ 0, often negative, near
    the optimum). Returns (iterations, stopped before the iteration/evaluation limits)."""
    with torch.no_grad():
        scale = float(contrast())
    scale = abs(scale) if scale != 0 and math.isfinite(scale) else 1.0
    opt = torch.optim.LBFGS(
        [a],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=1e-9,
        tolerance_change=float(tol),
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        value = contrast() / scale
        value.backward()
        return value

    opt.step(closure)
    state = opt.state[a]
    n_iter = int(state.get("n_iter", 0))
    return n_iter, n_iter < max_iter and int(state.get("func_evals", 0)) < 2 * max_iter


def optimise(
    x_full: torch.Tensor,
    warm_idx: torch.Tensor | None,
    q0: np.ndarray,
    seeds: np.ndarray,
    cfg: SolverConfig,
) -> SolverResult:
    """One restart from rotation ``q0``: for each bandwidth stage (projector seed from
    ``seeds``), Jacobi sweeps on the warm-up subset ``warm_idx`` and/or L-BFGS (on the subset
    for early stages, on all samples for the last)."""
    k = x_full.shape[1]
    if k == 1:
        return SolverResult(0.0, np.ones((1, 1)), 0, True, 0)
    device, dtype = x_full.device, x_full.dtype
    q = torch.as_tensor(q0, dtype=dtype, device=device)
    a = torch.zeros(k, k, dtype=dtype, device=device, requires_grad=True)
    x_warm = x_full if warm_idx is None else x_full[warm_idx]
    n_iter, n_sweeps, converged, loss = 0, 0, True, 0.0
    for stage, (bw, seed) in enumerate(zip(cfg.bandwidths, seeds, strict=True)):
        last = stage == len(cfg.bandwidths) - 1
        x = x_full if last else x_warm
        proj = make_projector(cfg.projector, k, cfg.width, bw, int(seed), cfg.depth).to(device)
        converged = True
        if cfg.optimizer != "lbfgs":
            with torch.no_grad():
                w0 = q @ torch.linalg.matrix_exp(a - a.T)
                q, sweeps, converged = jacobi_sweeps(
                    x_warm, w0, proj, cfg.n_angles, cfg.max_sweeps, angle_tol=cfg.angle_tol
                )
                a.zero_()
            n_sweeps += sweeps

        def contrast(x=x, proj=proj, q=q):
            return ica_objective(x @ (q @ torch.linalg.matrix_exp(a - a.T)), proj, cfg.objective)

        if cfg.optimizer != "jacobi":
            stage_iter, lbfgs_ok = _lbfgs_stage(a, contrast, cfg.max_iter, cfg.tol)
            n_iter += stage_iter
            converged = converged and lbfgs_ok
        if last:
            with torch.no_grad():
                loss = float(contrast())
    w = (q @ torch.linalg.matrix_exp(a - a.T)).detach().cpu().double().numpy()
    u, _, vt = np.linalg.svd(w)  # re-orthonormalise in float64 (polar factor)
    if cfg.optimizer == "jacobi":
        n_iter = n_sweeps
    return SolverResult(loss, u @ vt, max(n_iter, 1), converged, n_sweeps)
