"""All-pairs HSIC matrices of the scalar features of a representation, and their summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg.independence._common import (
    DEFAULT_DTYPE,
    ESTIMATORS,
    KERNELS,
    MEDIAN_SAMPLES,
    PAIRWISE_METHODS,
    _as_variable,
    _check_choice,
    _check_n,
    _out,
    _progress,
    _resolve_device,
    _warn_constant,
    parse_memory,
)
from vcreg.independence.kernels import _check_bandwidth, _column_sigmas, _scale


def _triangle_block(
    x: Tensor, sig: Tensor, kernel: str, estimator: str, i0: Tensor, i1: Tensor
) -> tuple[Tensor, Tensor | None]:
    """Centred kernel matrices of the scalar columns of x (n, c), strictly upper triangle.

    Returns (V, Vd): V (T, c) off-diagonal entries a < b, Vd (n, c) diagonal entries (None for the
    unbiased estimator, whose U-centred matrices have a zero diagonal), so that the Frobenius
    product of the centred matrices of columns i, j is 2 V_i.V_j + Vd_i.Vd_j.
    """
    n = x.shape[0]
    if kernel == "linear":
        v = x[i0] * x[i1]
        diag = x * x
    else:
        v = x[i0]
        v.sub_(x[i1])
        if kernel == "gaussian":
            v.square_().mul_(-0.5 / sig.square()).exp_()
        else:
            v.abs_().mul_(-1.0 / sig).exp_()
        diag = torch.ones_like(x)
    r = torch.zeros_like(x).index_add_(0, i0, v).index_add_(0, i1, v)  # off-diagonal row sums
    if estimator == "biased":
        m = (r + diag) / n
        mbar = m.mean(0)
        v.sub_(m[i0]).sub_(m[i1]).add_(mbar)
        return v, diag - 2 * m + mbar
    u = r / (n - 2)
    v.sub_(u[i0]).sub_(u[i1]).add_(r.sum(0) / ((n - 1) * (n - 2)))
    return v, None


def _exact_pairwise(
    z: Tensor, sig: Tensor, kernel: str, estimator: str, budget: int, progress: bool
) -> Tensor:
    n, d = z.shape
    i0, i1 = torch.triu_indices(n, n, 1, device=z.device)
    t = i0.numel()
    bpv = t * z.element_size()  # bytes of one variable's triangle
    avail = budget // bpv - 3  # the index tensors take ~2-3 variables' worth
    g = torch.zeros(d, d, dtype=z.dtype, device=z.device)
    # building a chunk of c variables needs ~3 (T, c) buffers
    if avail >= d + 3:
        c = max(1, min(d, (avail - d) // 3))
        v_all = torch.empty(t, d, dtype=z.dtype, device=z.device)
        vd_all = torch.zeros(n, d, dtype=z.dtype, device=z.device)
        bar = _progress(-(-d // c), "pairwise HSIC (kernels)", progress)
        for c0 in range(0, d, c):
            v, vd = _triangle_block(z[:, c0 : c0 + c], sig[c0 : c0 + c], kernel, estimator, i0, i1)
            v_all[:, c0 : c0 + c] = v
            if vd is not None:
                vd_all[:, c0 : c0 + c] = vd
            del v, vd
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        g = (v_all.T @ v_all).mul_(2) + vd_all.T @ vd_all
        return g
    c = avail // 5  # two resident chunks + building temporaries
    if c < 1:
        need = (5 + 3) * bpv
        raise ValueError(
            f"max_memory={budget} bytes is too small for exact pairwise HSIC with n = {n} "
            f"samples (needs at least {need / 2**20:.0f} MiB); raise max_memory, use "
            "method='lowrank' or subsample rows"
        )
    starts = list(range(0, d, c))
    bar = _progress(len(starts) * (len(starts) + 1) // 2, "pairwise HSIC (blocks)", progress)
    for a0 in starts:
        va, vda = _triangle_block(z[:, a0 : a0 + c], sig[a0 : a0 + c], kernel, estimator, i0, i1)
        for b0 in starts:
            if b0 < a0:
                continue
            if b0 == a0:
                vb, vdb = va, vda
            else:
                vb, vdb = _triangle_block(
                    z[:, b0 : b0 + c], sig[b0 : b0 + c], kernel, estimator, i0, i1
                )
            blk = 2 * (va.T @ vb)
            if vda is not None:
                blk += vda.T @ vdb
            g[a0 : a0 + c, b0 : b0 + c] = blk
            g[b0 : b0 + c, a0 : a0 + c] = blk.T
            del vb, vdb
            if bar is not None:
                bar.update()
        del va, vda
    if bar is not None:
        bar.close()
    return g


def _pivoted_cholesky(
    x: Tensor, sig: Tensor, kernel: str, tol: float, max_rank: int
) -> tuple[Tensor, Tensor, float]:
    """Greedy pivoted (incomplete) Cholesky of the kernel matrix of every scalar column.

    x (n, c) -> L (c, n, R) with K_v ~= L_v L_v^T, ranks (c,) and the largest residual diagonal.
    The residual K - L L^T is PSD, so each of its entries is bounded by the residual diagonal:
    stopping at max diag <= tol bounds every kernel entry's error by tol (Harbrecht et al. 2012).
    """
    c, n = x.shape[1], x.shape[0]
    xs = x.T.contiguous()
    ar = torch.arange(c, device=x.device)
    diag = torch.ones(c, n, dtype=x.dtype, device=x.device)
    lmat = torch.zeros(c, n, max_rank, dtype=x.dtype, device=x.device)
    ranks = torch.zeros(c, dtype=torch.long, device=x.device)
    resid = 1.0
    for k in range(max_rank):
        dmax, p = diag.max(1)
        active = dmax > tol
        resid = float(dmax.max())
        if not bool(active.any()):
            break
        diff = xs - xs[ar, p][:, None]
        if kernel == "gaussian":
            col = torch.exp(diff.square() * (-0.5 / sig.square())[:, None])
        else:
            col = torch.exp(diff.abs() * (-1.0 / sig)[:, None])
        if k:
            col -= torch.bmm(lmat[:, :, :k], lmat[ar, p, :k][:, :, None])[:, :, 0]
        col *= torch.where(active, dmax.clamp_min(tol).rsqrt(), torch.zeros_like(dmax))[:, None]
        lmat[:, :, k] = col
        diag = (diag - col.square()).clamp_min_(0)
        ranks += active.long()
    else:
        resid = float(diag.max())
    return lmat, ranks, resid


def _lowrank_pairwise(
    z: Tensor,
    sig: Tensor,
    kernel: str,
    estimator: str,
    budget: int,
    tol: float,
    max_rank: int,
    progress: bool,
) -> tuple[Tensor, dict[str, Any]]:
    n, d = z.shape
    item = z.element_size()
    if kernel == "linear":  # the linear kernel of a scalar has rank one: exact features
        feats, ranks, resid = z, torch.ones(d, dtype=torch.long, device=z.device), 0.0
    else:
        cc = max(1, min(d, budget // (4 * n * max_rank * item)))
        parts, rk, resid = [], [], 0.0
        bar = _progress(-(-d // cc), "pairwise HSIC (low-rank features)", progress)
        for c0 in range(0, d, cc):
            lmat, r, res = _pivoted_cholesky(
                z[:, c0 : c0 + cc], sig[c0 : c0 + cc], kernel, tol, max_rank
            )
            rmax = int(r.max())
            mask = torch.arange(rmax, device=z.device)[None, :] < r[:, None]  # (c, rmax)
            parts.append(lmat[:, :, :rmax].permute(1, 0, 2)[:, mask])  # (n, sum r)
            rk.append(r)
            resid = max(resid, res)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        feats, ranks = torch.cat(parts, 1), torch.cat(rk)
        del parts
    seg = torch.repeat_interleave(torch.arange(d, device=z.device), ranks)
    big_d = feats.shape[1]
    info = {
        "mean_rank": float(ranks.double().mean()),
        "max_rank": int(ranks.max()),
        "max_residual": resid,
        "n_features": big_d,
    }
    if estimator == "biased":
        f = feats - feats.mean(0)
    else:
        f = feats
        delta = torch.zeros(n, d, dtype=z.dtype, device=z.device).index_add_(
            1, seg, f.square()
        )  # diagonal of each approximated kernel matrix
        colsum = f.sum(0)
        rows = (
            torch.zeros(n, d, dtype=z.dtype, device=z.device).index_add_(1, seg, f * colsum) - delta
        )  # off-diagonal row sums
        s = rows.sum(0)
    g = torch.empty(d, d, dtype=z.dtype, device=z.device)
    # rows of F^T F in slabs of whole variables that fit the budget
    slab = max(1, int((budget - 2 * feats.numel() * item) // (2 * big_d * item)))
    bounds = torch.cumsum(ranks, 0).tolist()
    v0 = 0
    while v0 < d:
        f0 = bounds[v0 - 1] if v0 else 0
        v1 = v0
        while v1 < d and bounds[v1] - f0 <= slab:
            v1 += 1
        v1 = max(v1, v0 + 1)
        f1 = bounds[v1 - 1]
        cm = (f[:, f0:f1].T @ f).square_()
        red = torch.zeros(f1 - f0, d, dtype=z.dtype, device=z.device).index_add_(1, seg, cm)
        del cm
        g[v0:v1] = torch.zeros(v1 - v0, d, dtype=z.dtype, device=z.device).index_add_(
            0, seg[f0:f1] - v0, red
        )
        v0 = v1
    if estimator == "unbiased":
        g = (
            g
            - delta.T @ delta
            + torch.outer(s, s) / ((n - 1) * (n - 2))
            - (2.0 / (n - 2)) * (rows.T @ rows)
        )
        g = (g + g.T) / 2
    return g, info


def pairwise_hsic(
    Z: Any,
    normalized: bool = True,
    method: str = "exact",
    max_memory: int | str = "4GB",
    *,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    estimator: str = "biased",
    median_samples: int = MEDIAN_SAMPLES,
    rank_tol: float = 1e-2,
    max_rank: int = 64,
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> Tensor | np.ndarray:
    """(d, d) matrix of HSIC between every pair of scalar columns of Z (n, d).

    Entry (i, j) is HSIC(Z[:, i], Z[:, j]) with per-column bandwidths (module docs);
    ``normalized=True`` divides by sqrt(HSIC_ii HSIC_jj) (unit diagonal; rows/columns of constant
    columns are 0). NumPy in -> NumPy out; torch in -> torch out on the input's device.

    ``method="exact"``: the centred kernel matrices of all columns are vectorized (strict upper
    triangle + diagonal) and multiplied in one batched matrix product, in chunks of columns so
    that working memory stays under ``max_memory`` (bytes or '4GB'; binary units). Cost
    O(n^2 d^2). ``method="lowrank"``: each column's kernel matrix is replaced by a greedy pivoted
    Cholesky factor L L^T stopped when the largest residual diagonal is <= ``rank_tol`` (at most
    ``max_rank`` columns); HSIC_b(i, j) = ||L_i^T H L_j||_F^2 / n^2. Cost O(n d^2 r^2). The
    pivots adapt to each column (outliers and heavy tails get their own pivots), the residual
    bounds every kernel entry's error, and -- unlike random Fourier features -- there is no
    sampling noise, so self-HSIC and normalized values are not biased upwards.
    """
    method = _check_choice(method, "method", PAIRWISE_METHODS)
    kernel = _check_choice(kernel, "kernel", KERNELS)
    estimator = _check_choice(estimator, "estimator", ESTIMATORS)
    bw = _check_bandwidth(bandwidth, kernel)
    budget = parse_memory(max_memory)
    if not (0 < rank_tol < 1):
        raise ValueError(f"rank_tol must be in (0, 1), got {rank_tol!r}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank!r}")
    dev = _resolve_device(Z, device)
    z = _as_variable(Z, "Z", dtype, dev)
    n, d = z.shape
    _check_n(n, "Z")
    if d < 2:
        raise ValueError(f"Z needs at least 2 columns (features) for pairwise HSIC, got {d}")
    sig, constant = _column_sigmas(z, bw, median_samples)
    if bool(constant.any()):
        _warn_constant(f"column {i}" for i in torch.nonzero(constant).flatten().tolist())
    if method == "exact":
        g = _exact_pairwise(z, sig, kernel, estimator, budget, progress)
    else:
        g, _ = _lowrank_pairwise(
            z, sig, kernel, estimator, budget, rank_tol, int(max_rank), progress
        )
    g[constant] = 0
    g[:, constant] = 0
    g = _normalize(g) if normalized else g * _scale(n, estimator)
    return _out(g, Z)


def _normalize(g: Tensor) -> Tensor:
    dg = torch.diagonal(g).clamp_min(0).sqrt()
    inv = torch.where(dg > 0, 1.0 / dg, torch.zeros_like(dg))
    g = g * inv[:, None] * inv[None, :]
    g.diagonal().copy_((dg > 0).to(g.dtype))
    return g


def normalize_hsic_matrix(M: Any) -> Tensor | np.ndarray:
    """Normalized HSIC M_ij / sqrt(M_ii M_jj) from a raw pairwise matrix (zero diagonal -> 0).

    Same result as ``pairwise_hsic(Z, normalized=True)``, without recomputing the kernels.
    """
    g = M.detach() if isinstance(M, Tensor) else torch.as_tensor(np.asarray(M, dtype=np.float64))
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise ValueError(f"expected a square (d, d) matrix, got shape {tuple(g.shape)}")
    return _out(_normalize(g.clone()), M)


def pairwise_summary(M: Any, top_k: int = 10, names: Sequence[str] | None = None) -> dict[str, Any]:
    """Summary of the off-diagonal (i < j) entries of a symmetric (d, d) pairwise matrix.

    Returns ``{"n_variables", "n_pairs", "mean", "median", "std", "min", "max", "q05", "q95",
    "top_pairs"}``; ``top_pairs`` lists the ``top_k`` largest entries as
    ``{"i", "j", "value"}`` (plus ``"names"`` when ``names`` is given), most dependent first.
    """
    m = M.detach().cpu().double().numpy() if isinstance(M, Tensor) else np.asarray(M, float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"expected a square (d, d) matrix, got shape {m.shape}")
    d = m.shape[0]
    if d < 2:
        raise ValueError("need at least 2 variables (a 2x2 matrix) to summarize pairs")
    if names is not None and len(names) != d:
        raise ValueError(f"names has {len(names)} entries but the matrix has {d} variables")
    iu, ju = np.triu_indices(d, 1)
    vals = m[iu, ju]
    if not np.isfinite(vals).all():
        raise ValueError("the matrix contains NaN or Inf off-diagonal entries")
    order = np.argsort(-vals, kind="stable")[: max(0, int(top_k))]
    top = []
    for o in order:
        item: dict[str, Any] = {"i": int(iu[o]), "j": int(ju[o]), "value": float(vals[o])}
        if names is not None:
            item["names"] = [str(names[iu[o]]), str(names[ju[o]])]
        top.append(item)
    return {
        "n_variables": d,
        "n_pairs": int(vals.size),
        "mean": float(vals.mean()),
        "median": float(np.median(vals)),
        "std": float(vals.std()),
        "min": float(vals.min()),
        "max": float(vals.max()),
        "q05": float(np.quantile(vals, 0.05)),
        "q95": float(np.quantile(vals, 0.95)),
        "top_pairs": top,
    }
