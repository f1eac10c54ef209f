"""Optimisers of the VCReg ICA contrast over orthogonal unmixing matrices.

``W = Q₀·expm(A − Aᵀ)``: RADICAL-style Jacobi sweeps of Givens-angle grid searches
(Learned-Miller & Fisher 2003) move ``Q₀`` into the basin of the true unmixing, then full-batch
dense BFGS (Armijo backtracking) in the rotation coordinates polishes the total contrast. A sequence of bandwidths is optimised
in order (continuation); all stages but the last may run on a random subsample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from vcreg.functional import block_covariance_norms
from vcreg.ica.contrast import RandomFeatures, ica_objective, make_projector

__all__ = [
    "OPTIMIZERS",
    "SolverConfig",
    "SolverResult",
    "jacobi_sweeps",
    "optimise",
    "holdout_iterations",
]

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
    kernel_scales: tuple[float, ...]  # bandwidth multipliers of the polish's features
    sweep_width: int  # features per output in the Jacobi sweeps
    sweep_scales: tuple[float, ...]  # bandwidth multipliers of the sweeps' features
    n_angles: int
    max_sweeps: int
    angle_tol: float
    max_iter: int
    tol: float
    holdout_check: bool = False  # keep the last polish only if it generalises (see optimise)
    standardize: bool = False  # random features standardised over the samples (RandomFeatures)
    variance_floor: float = 0.0  # added to their variance, in units of 1/m (RandomFeatures)


@dataclass(frozen=True)
class SolverResult:
    """One restart: final contrast, orthogonal ``w`` (k, k) float64, iteration counts,
    whether the last stage's polish was kept."""

    loss: float
    w: np.ndarray
    n_iter: int
    converged: bool
    n_sweeps: int
    polished: bool = True


def _rotation_cost(Pi, Pj, Zrest=None, Rrest=None) -> torch.Tensor:
    """Debiased Gram-form cost of each candidate angle, (..., T): the pair's own block
    ``‖Z̄_iᵀZ̄_j‖² − Σ_a r_i(a)r_j(a)`` and, when ``Zrest`` (k−2, m, n) is given, the blocks
    between the pair and every other output (then one pair, ``Zi`` (T, m, n)). ``P = (c̄, w, r)``
    (:func:`_pair_features`): ``Z̄ = c̄·w``, same-sample norms ``r`` (..., n)."""
    (Zi, wi, Ri), (Zj, wj, Rj) = Pi, Pj
    cross = (Zi @ Zj.transpose(-1, -2)).mul_(wi[..., :, None]).mul_(wj[..., None, :])
    cost = cross.pow_(2).sum(dim=(-1, -2)) - (Ri * Rj).sum(-1)
    if Zrest is not None and len(Zrest):
        Zr = Zrest.reshape(-1, Zrest.shape[-1])  # ((k-2)m, n)
        Rr = Rrest.sum(0)  # (n,)
        cost = cost + ((Zi @ Zr.T) * wi[..., None]).pow(2).sum(dim=(1, 2))
        cost = cost + ((Zj @ Zr.T) * wj[..., None]).pow(2).sum(dim=(1, 2))
        cost = cost - (Ri + Rj) @ Rr
    return cost


def _pair_features(feats, v: torch.Tensor):
    """``(c̄, w, r)`` of outputs ``v`` (..., n): :meth:`RandomFeatures.weighted` and the
    same-sample norms ``r(a) = Σ_f w_f² c̄_f(a)²`` (..., n) of the debiasing."""
    c, sq, w = feats.weighted(v)
    return c, w, (w.pow(2).unsqueeze(-2) @ sq).squeeze(-2)


def _refine(cost: torch.Tensor, step: float, oversample: int = 32) -> tuple[float, float]:
    """Minimum of the trigonometric interpolant of ``cost`` (T,) sampled at ``θ_t = t·step`` over
    one period ``[0, π/2)`` (the cost is ≈ π/2-periodic), located on a grid ``oversample`` times
    finer (coarse-to-fine at no extra evaluation); returns (angle in (−π/4, π/4], gain over
    ``θ = 0``). For even T the Nyquist coefficient is split between ±T/2 (the real
    interpolant). Measured against the parabola through the best grid point and its
    neighbours (docs/sections/ica.md): sweeps only at d = 10, n = 1000, Laplace median Amari
    0.048 → 0.031."""
    c = cost.detach().double().cpu().numpy()
    T = c.shape[0]
    spec = np.fft.rfft(c)
    if T % 2 == 0:
        spec[-1] /= 2
    fine = np.fft.irfft(spec, n=T * oversample) * oversample
    b = int(np.argmin(fine))
    theta = b * step / oversample
    return (theta - math.pi / 2 if theta > math.pi / 4 else theta), float(c[0] - fine[b])


def jacobi_sweeps(
    x: torch.Tensor,
    w: torch.Tensor,
    feats,
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
    flips the two outputs), vectorised over the angles; the rotation applied is the minimum of
    the costs' trigonometric interpolant (:func:`_refine`).
    ``feats`` is the frozen feature map (:class:`~vcreg.ica.contrast.RandomFeatures`).

    ``pair_only=True`` (used by :class:`VCRegICA`) scores the pair's own debiased block
    ``‖Cov(φ(y_i), φ(y_j))‖²`` (the pairwise HSIC of ``(y_i, y_j)``); ``False`` scores every
    block that changes, ``(i, j)``, ``(i, l)`` and ``(j, l)`` (coordinate descent on the total
    contrast). Measured: the total version stalls in the same spurious fully-mixed minima as
    L-BFGS for sub-Gaussian sources at ``k ≥ 5`` (uniform, d = 5: Amari ≈ 0.6), the pair-only
    version reaches the basin of the true unmixing (≈ 0.03), where the total contrast is lower.

    Sweeps stop when no pair improves by more than ``rel_tol`` (relative to the total contrast),
    when the largest rotation applied in a sweep is ``≤ angle_tol`` radians, or after
    ``max_sweeps``. Returns ``(w, sweeps, converged)``; no gradients.
    """
    n, k = x.shape
    w = w.clone()
    y = x @ w  # (n, k)
    Z = feats.centred(y.T)  # (k, m, n)
    R = Z.pow(2).sum(-2)  # (k, n) same-sample norms (debiasing)
    step = math.pi / 2 / n_angles
    theta = torch.arange(n_angles, dtype=x.dtype, device=x.device) * step
    cs, sn = torch.cos(theta)[:, None], torch.sin(theta)[:, None]  # (T, 1)
    blocks = block_covariance_norms(Z.permute(2, 0, 1), debias=True)
    total = float(blocks.sum() - blocks.diagonal().sum()) / (k * (k - 1))  # the contrast
    threshold = rel_tol * max(abs(total), 1e-12) * (n - 1) ** 2 * k * (k - 1) / 2
    pairs = [(a, b) for a in range(k - 1) for b in range(a + 1, k)]
    for sweep in range(1, max_sweeps + 1):
        max_angle = 0.0
        for i, j in pairs:
            yi, yj = cs * y[:, i] + sn * y[:, j], cs * y[:, j] - sn * y[:, i]  # (T, n)
            Pi, Pj = _pair_features(feats, yi), _pair_features(feats, yj)  # (T, m, n) ...
            rest = [r for r in range(k) if r != i and r != j] if not pair_only else []
            angle, gain = _refine(_rotation_cost(Pi, Pj, Z[rest], R[rest]), step)
            if angle == 0.0 or not gain > threshold:
                continue
            max_angle = max(max_angle, abs(angle))
            c, s = math.cos(angle), math.sin(angle)
            w[:, i], w[:, j] = c * w[:, i] + s * w[:, j], c * w[:, j] - s * w[:, i]
            y[:, i], y[:, j] = c * y[:, i] + s * y[:, j], c * y[:, j] - s * y[:, i]
            if not pair_only:
                Z[[i, j]] = feats.centred(y[:, [i, j]].T)
                R[[i, j]] = Z[[i, j]].pow(2).sum(-2)
        if max_angle <= angle_tol:
            return w, sweep, True
    return w, max_sweeps, False


def _contrast_fn(x: torch.Tensor, q: torch.Tensor, g, objective: str, scale: float):
    """``f(θ) -> (value, gradient)`` (float64 θ of size k(k−1)/2) of the contrast of
    ``Y = x·q·expm(S(θ))``, ``S`` the skew matrix with upper triangle θ, divided by ``scale``.
    The heavy part is closed form (:meth:`RandomFeatures.value_and_grad`) for the random-feature
    pairwise contrast and autograd through the projector otherwise; the k×k exponential always
    goes through autograd."""
    k = q.shape[0]
    iu = torch.triu_indices(k, k, 1, device=x.device)
    fast = isinstance(g, RandomFeatures) and objective == "pairwise"

    def f(theta: torch.Tensor) -> tuple[float, torch.Tensor]:
        t = theta.detach().to(device=x.device, dtype=x.dtype, copy=True).requires_grad_()
        with torch.enable_grad():
            upper = torch.zeros(k, k, dtype=x.dtype, device=x.device).index_put((iu[0], iu[1]), t)
            w = q @ torch.linalg.matrix_exp(upper - upper.T)
            if fast:
                with torch.no_grad():
                    value, dy = g.value_and_grad(x @ w)
                w.backward(x.T @ dy)
            else:
                value = ica_objective(x @ w, g, objective)
                value.backward()
        return float(value.detach()) / scale, t.grad.double().cpu() / scale

    return f


def _rotate(q: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    k = q.shape[0]
    iu = torch.triu_indices(k, k, 1, device=q.device)
    upper = torch.zeros(k, k, dtype=q.dtype, device=q.device)
    upper[iu[0], iu[1]] = theta.to(device=q.device, dtype=q.dtype)
    return q @ torch.linalg.matrix_exp(upper - upper.T)


# the polish also stops when no rotation coordinate moves by more than this times ``tol``
# radians: 1e-3 rad by default, far below the statistical error of an unmixing (~n^-1/2 rad;
# 0.01 at n = 10,000)
STEP_TOL_PER_TOL = 10.0


def _bfgs(
    f, dim: int, max_iter: int, tol: float, callback=None, start=None
) -> tuple[torch.Tensor, int, bool, float]:
    """Dense BFGS from θ = 0 with Armijo backtracking (Nocedal & Wright, Alg. 6.1; the first
    step is the gradient scaled to unit ℓ1 length, then ``H`` = the BFGS inverse-Hessian
    estimate). Stops when an iteration decreases ``f`` by ``≤ tol`` (``f`` is relative to its
    start), moves no rotation coordinate by more than ``STEP_TOL_PER_TOL·tol`` radians, or the
    line search finds no decrease (the noise floor of the estimate). ``start``: ``f(0)`` if
    already evaluated. Returns (θ, iterations, stopped before max_iter, f(θ));
    ``callback(θ)`` sees every accepted iterate."""
    theta = torch.zeros(dim, dtype=torch.float64)
    H = None
    fx, gx = f(theta) if start is None else start
    for it in range(1, max_iter + 1):
        p = -(H @ gx) if H is not None else -gx * min(1.0, 1.0 / max(float(gx.abs().sum()), 1e-30))
        slope = float(gx @ p)
        if slope >= 0:  # not a descent direction: restart from the gradient
            H, p, slope = None, -gx, -float(gx @ gx)
        t, accepted = 1.0, False
        for _ in range(20):
            fn, gn = f(theta + t * p)
            if fn <= fx + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            return theta, it, True, fx
        step, dg = t * p, gn - gx
        sy = float(step @ dg)
        if sy > 1e-12 * float(dg @ dg):
            if H is None:
                H = (sy / float(dg @ dg)) * torch.eye(dim, dtype=torch.float64)
            rho = 1.0 / sy
            Hy = H @ dg
            H = H - rho * (torch.outer(step, Hy) + torch.outer(Hy, step))
            H = H + (rho * rho * float(dg @ Hy) + rho) * torch.outer(step, step)
        done = fx - fn <= tol or float(step.abs().max()) <= STEP_TOL_PER_TOL * tol
        theta, fx, gx = theta + step, fn, gn
        if callback is not None:
            callback(theta)
        if done:
            return theta, it, True, fx
    return theta, max_iter, False, fx


def _polish(
    x: torch.Tensor,
    q: torch.Tensor,
    g,
    cfg: SolverConfig,
    max_iter: int | None = None,
    callback=None,
) -> tuple[torch.Tensor, int, bool, float]:
    """BFGS of the contrast of ``x·q·expm(S(θ))`` from θ = 0, relative to its start value;
    returns (θ, iterations, stopped before the cap, contrast at θ)."""
    dim = q.shape[0] * (q.shape[0] - 1) // 2
    value, grad = _contrast_fn(x, q, g, cfg.objective, 1.0)(torch.zeros(dim))
    scale = abs(value) if value != 0 and math.isfinite(value) else 1.0  # tol: relative
    f = _contrast_fn(x, q, g, cfg.objective, scale)
    cap = cfg.max_iter if max_iter is None else max_iter
    start = (value / scale, grad / scale)  # the evaluation above: not repeated
    theta, iters, ok, fx = _bfgs(f, dim, cap, cfg.tol, callback, start)
    return theta, iters, ok, fx * scale


# fraction of the samples the hold-out polish fits (d = 10, n = 1000, 6 problems each: with one
# half, uniform 0.033 / mixed 0.030 / Laplace 0.042 median Amari; with 3/4, 0.027 / 0.027 /
# 0.046; without the check 0.027 / 0.025 / 0.104)
HOLDOUT_FIT = 0.75


def holdout_iterations(x: torch.Tensor, q: torch.Tensor, g, cfg: SolverConfig, seed: int) -> int:
    """Early stopping of the polish by held-out samples: BFGS from ``q`` on a random
    ``HOLDOUT_FIT`` share of the samples; returns the number of its iterations after which the
    contrast of the other samples was lowest (0: the polish only fitted noise).

    With few samples per rotation parameter the polish of the total contrast fits the sample
    noise of its ``k(k−1)/2`` block estimates: it reaches a lower in-sample contrast far from the
    sources (Laplace, d = 20, n = 1000: Amari 0.34 after the polish vs 0.08 after the sweeps).
    """
    n, dim = x.shape[0], q.shape[0] * (q.shape[0] - 1) // 2
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(x.device)
    cut = int(n * HOLDOUT_FIT)
    fit, held = x[perm[:cut]], x[perm[cut:]]
    f_held = _contrast_fn(held, q, g, cfg.objective, 1.0)
    values = [f_held(torch.zeros(dim))[0]]
    _polish(fit, q, g, cfg, callback=lambda theta: values.append(f_held(theta)[0]))
    return int(np.argmin(values))


def _make_map(cfg: SolverConfig, k: int, bandwidth: float, seed: int, device) -> torch.nn.Module:
    if cfg.projector == "random-features" and cfg.objective == "pairwise":
        scales = tuple(bandwidth * s for s in cfg.kernel_scales)
        return RandomFeatures(k, cfg.width, scales, seed, cfg.standardize, cfg.variance_floor).to(
            device
        )
    return make_projector(cfg.projector, k, cfg.width, bandwidth, seed, cfg.depth).to(device)


def optimise(
    x_full: torch.Tensor,
    warm_idx: torch.Tensor | None,
    q0: np.ndarray,
    seeds: np.ndarray,
    cfg: SolverConfig,
) -> SolverResult:
    """One restart from rotation ``q0``: for each bandwidth stage (feature seed from ``seeds``),
    Jacobi sweeps on the warm-up subset ``warm_idx`` and/or BFGS (on the subset for early
    stages, on all samples for the last). With ``cfg.holdout_check`` the last stage's polish
    is capped at :func:`holdout_iterations` (0: the sweeps' rotation is the result)."""
    k = x_full.shape[1]
    if k == 1:
        return SolverResult(0.0, np.ones((1, 1)), 0, True, 0)
    device, dtype = x_full.device, x_full.dtype
    q = torch.as_tensor(q0, dtype=dtype, device=device)
    x_warm = x_full if warm_idx is None else x_full[warm_idx]
    dim = k * (k - 1) // 2
    n_iter, n_sweeps, converged, loss, polished = 0, 0, True, 0.0, cfg.optimizer != "jacobi"
    for stage, (bw, seed) in enumerate(zip(cfg.bandwidths, seeds, strict=True)):
        last = stage == len(cfg.bandwidths) - 1
        g = _make_map(cfg, k, bw, int(seed), device)
        converged = True
        if cfg.optimizer != "lbfgs":
            sweep_scales = tuple(bw * s for s in cfg.sweep_scales)
            sweep_map = RandomFeatures(
                k, cfg.sweep_width, sweep_scales, int(seed), cfg.standardize, cfg.variance_floor
            ).to(device)
            q, sweeps, converged = jacobi_sweeps(
                x_warm,
                q,
                sweep_map,
                cfg.n_angles,
                cfg.max_sweeps,
                angle_tol=cfg.angle_tol,
            )
            n_sweeps += sweeps
        x = x_full if last else x_warm
        cap = None
        if last and polished and cfg.holdout_check and cfg.optimizer != "lbfgs":
            cap = holdout_iterations(x, q, g, cfg, int(seed))
            polished = cap > 0
        loss = None
        if cfg.optimizer != "jacobi" and (polished or not last):
            theta, stage_iter, ok, loss = _polish(x, q, g, cfg, max_iter=cap)
            ok = ok or cap is not None  # stopped by the hold-out rule, not by the budget
            n_iter += stage_iter
            converged = converged and ok
            q = _rotate(q, theta)
        if last and loss is None:  # the polish's value is on x_full already
            loss = _contrast_fn(x_full, q, g, cfg.objective, 1.0)(torch.zeros(dim))[0]
    w = q.cpu().double().numpy()
    u, _, vt = np.linalg.svd(w)  # re-orthonormalise in float64 (polar factor)
    if cfg.optimizer == "jacobi":
        n_iter = n_sweeps
    return SolverResult(loss, u @ vt, max(n_iter, 1), converged, n_sweeps, polished)
