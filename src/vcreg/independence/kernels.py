"""Bandwidth rules and kernel matrices (conventions: :mod:`vcreg.independence`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg.independence._common import (
    BANDWIDTH_RULES,
    DEFAULT_DTYPE,
    MEDIAN_SAMPLES,
    _as_variable,
    _check_choice,
    _check_fixed_bandwidth,
    _check_median_samples,
    _check_n,
    _rescale,
    _resolve_device,
)


def _median_of_pairs(values: Tensor) -> Tensor:
    """Median along the last dim of (c, T) values, averaging the two middle ones for even T."""
    t = values.shape[-1]
    k = (t - 1) // 2
    if values.device.type == "cpu":  # one partial sort yields both middle values
        part = np.partition(values.contiguous().numpy(), [k, t // 2], axis=-1)
        return torch.from_numpy(part[..., [k, t // 2]].mean(-1)).to(values.dtype)
    lower = values.median(dim=-1, keepdim=True).values
    if t % 2 == 1:
        return lower[..., 0]
    # the upper middle value is the smallest value above the lower median, unless it repeats
    n_le = (values <= lower).sum(-1)
    above = torch.where(values > lower, values, torch.full_like(values, math.inf)).amin(-1)
    upper = torch.where(n_le > t // 2, lower[..., 0], above)
    return (lower[..., 0] + upper) / 2


def _subsample_rows(x: Tensor, median_samples: int) -> Tensor:
    n = x.shape[0]
    if n <= median_samples:
        return x
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(n, generator=g)[:median_samples].to(x.device)
    return x[idx]


def _median_chunk(budget: int, item: int) -> int:
    """Elements of pairwise distances per block of :func:`_column_sigmas` under ``budget``
    (the distances, the two gathered operands and NumPy's partition copy: ~5 buffers)."""
    return max(1, min(2**25, budget // (5 * item)))


def _column_sigmas(
    z: Tensor, rule: str | float, median_samples: int, chunk_elems: int = 2**25
) -> tuple[Tensor, Tensor]:
    """Bandwidth of every scalar column of z (n, d); returns (sigma, constant_mask)."""
    d = z.shape[1]
    constant = (z == z[:1]).all(0)
    if not isinstance(rule, str):
        return torch.full((d,), float(rule), dtype=z.dtype, device=z.device), constant
    zs = _subsample_rows(z, median_samples).T.contiguous()  # (d, m)
    m = zs.shape[1]
    i0, i1 = torch.triu_indices(m, m, 1, device=z.device)
    step = max(1, chunk_elems // max(1, i0.numel()))
    med = torch.empty(d, dtype=z.dtype, device=z.device)
    for c0 in range(0, d, step):
        blk = zs[c0 : c0 + step]
        dist = (blk[:, i0] - blk[:, i1]).abs_()  # (c, T)
        mc = _median_of_pairs(dist).to(z.device)
        zero = mc <= 0
        if bool(zero.any()):  # ties: median of the non-zero distances
            nz = torch.where(dist > 0, dist, torch.full_like(dist, math.nan))
            mc = torch.where(zero, nz.nanmedian(dim=1).values.nan_to_num(1.0), mc)
        med[c0 : c0 + step] = mc
    med = torch.where(constant, torch.ones_like(med), med)
    if rule == "dhsic":
        med = med / math.sqrt(2.0)
    return med, constant


def _sigma(x: Tensor, rule: str | float, median_samples: int) -> float:
    """Bandwidth of one (n, p) variable (1.0 for a constant one)."""
    if not isinstance(rule, str):
        return float(rule)
    xs = _subsample_rows(x, median_samples)
    m = xs.shape[0]
    i0, i1 = torch.triu_indices(m, m, 1, device=x.device)
    dist = (xs[i0] - xs[i1]).pow(2).sum(1).sqrt()
    med = _median_of_pairs(dist[None, :])[0]
    if float(med) <= 0:
        nz = dist[dist > 0]
        med = nz.median() if nz.numel() else torch.ones((), dtype=x.dtype, device=x.device)
    med = float(med)
    return med / math.sqrt(2.0) if rule == "dhsic" else med


def _check_bandwidth(bw: Any, kernel: str) -> str | float:
    if isinstance(bw, str):
        return _check_choice(bw, "bandwidth rule", BANDWIDTH_RULES)
    if isinstance(bw, bool) or not isinstance(bw, int | float | np.floating | np.integer):
        raise TypeError(f"bandwidth must be 'median', 'dhsic' or a positive number, got {bw!r}")
    if not (math.isfinite(float(bw)) and float(bw) > 0):
        raise ValueError(f"bandwidth must be a positive finite number, got {bw!r}")
    return _check_fixed_bandwidth(float(bw), kernel)


def bandwidth(x: Any, rule: str | float = "median", median_samples: int = MEDIAN_SAMPLES) -> float:
    """Kernel bandwidth sigma of one variable x (n,) or (n, p) under ``rule`` (module docs)."""
    rule = _check_bandwidth(rule, "gaussian")
    t = _as_variable(x, "x", DEFAULT_DTYPE, _resolve_device(x, None), centre=True)
    _check_n(t.shape[0], "x")
    t, e = _rescale(t, "x", True, per_column=False)
    return math.ldexp(_sigma(t, rule, _check_median_samples(median_samples)), int(e[0]))


# ----------------------------------------------------------------------------- kernels


def _gram(x: Tensor, kernel: str, sigma: float) -> Tensor:
    """Full (n, n) kernel matrix of x (n, p)."""
    return _gram_rows(x, x, kernel, sigma)


GRAM_ROW_ITEMS = 8  # working items per kernel entry of _gram_rows beyond 2 p (temporaries)


def _gram_rows(
    xr: Tensor,
    x: Tensor,
    kernel: str,
    sigma: float,
    out: Tensor | None = None,
    tmp: Tensor | None = None,
) -> Tensor:
    """(b, n) rows of the kernel matrix: k(xr_a, x_b) for xr (b, p), x (n, p). Working memory
    about (2 min(p, 8) + GRAM_ROW_ITEMS) b n elements. With ``out`` and ``tmp`` ((b, n) each)
    for p <= 8, the rows are written into ``out`` and nothing else of size b n is allocated: a
    loop over row blocks then reuses the same memory (fresh blocks each time fragment the heap,
    and the process's resident size grows by a block per step)."""
    if kernel == "linear":
        return torch.matmul(xr, x.T, out=out) if out is not None else xr @ x.T
    if out is not None and tmp is not None and x.shape[1] <= 8:
        out.zero_()
        for j in range(x.shape[1]):
            torch.sub(xr[:, j, None], x[None, :, j], out=tmp)
            out.addcmul_(tmp, tmp)
        sq = out
    elif x.shape[1] <= 8:
        sq = (xr[:, None, :] - x[None, :, :]).pow(2).sum(-1)
    else:
        sq = torch.cdist(xr, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if kernel == "gaussian":
        return sq.mul_(-0.5 / (sigma * sigma)).exp_()
    return sq.sqrt_().mul_(-1.0 / sigma).exp_()


def _centre(k: Tensor, estimator: str) -> Tensor:
    """H K H (biased) or the U-centred matrix with zero diagonal (unbiased)."""
    n = k.shape[-1]
    if estimator == "biased":
        r = k.mean(-1, keepdim=True)
        c = k.mean(-2, keepdim=True)
        return k - r - c + r.mean(-2, keepdim=True)
    kt = k - torch.diag_embed(torch.diagonal(k, dim1=-2, dim2=-1))
    r = kt.sum(-1, keepdim=True)
    s = r.sum(-2, keepdim=True)
    u = kt - r / (n - 2) - r.transpose(-1, -2) / (n - 2) + s / ((n - 1) * (n - 2))
    return u - torch.diag_embed(torch.diagonal(u, dim1=-2, dim2=-1))


def _scale(n: int, estimator: str) -> float:
    return 1.0 / (n * n) if estimator == "biased" else 1.0 / (n * (n - 3))


# ----------------------------------------------------------------------------- factorisation

CHOLESKY_DTYPE = torch.float32  # entries in [0, 1], stopped at a residual >= 1e-3: 1e-7 is ample


def _pivoted_cholesky(
    x: Tensor, sig: Tensor, kernel: str, tol: float, max_rank: int
) -> tuple[Tensor, Tensor, float]:
    """Greedy pivoted (incomplete) Cholesky of the kernel matrix of every scalar column.

    x (n, c) -> L (c, R, n) (row k = the k-th factor column) with K_v ~= L_v^T L_v, ranks (c,)
    and the largest residual diagonal. The residual K - L^T L is PSD, so each of its entries is
    bounded by the residual diagonal: stopping at max diag <= tol bounds every kernel entry's
    error by tol (Harbrecht et al. 2012). Greedy: the factor at a larger tol is a prefix of
    this one. Computed in CHOLESKY_DTYPE.
    """
    c, n = x.shape[1], x.shape[0]
    xs = (x / sig).T.to(CHOLESKY_DTYPE).contiguous()  # unitless before the narrower dtype
    ar = torch.arange(c, device=x.device)
    diag = torch.ones(c, n, dtype=xs.dtype, device=x.device)
    lmat = torch.zeros(c, max_rank, n, dtype=xs.dtype, device=x.device)
    ranks = torch.zeros(c, dtype=torch.long, device=x.device)
    resid = 1.0
    for k in range(max_rank):
        dmax, p = diag.max(1)
        active = dmax > tol
        resid = float(dmax.max())
        if not bool(active.any()):
            break
        diff = xs - xs[ar, p][:, None]
        col = diff.square_().mul_(-0.5) if kernel == "gaussian" else diff.abs_().neg_()
        col = col.exp_()
        if k:  # contiguous (c, k, n) rows: one batched product, no copy of L per step
            col -= torch.bmm(lmat[ar, :k, p][:, None, :], lmat[:, :k, :])[:, 0, :]
        col *= torch.where(active, dmax.clamp_min(tol).rsqrt(), torch.zeros_like(dmax))[:, None]
        lmat[:, k, :] = col
        diag = (diag - col.square()).clamp_min_(0)
        ranks += active.long()
    else:
        resid = float(diag.max())
    return lmat, ranks, resid
