"""All-pairs HSIC matrices of the scalar features of a representation, and their summary."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg import distributed as dist
from vcreg.independence import nulls
from vcreg.independence._common import (
    DEFAULT_DTYPE,
    ESTIMATORS,
    KERNELS,
    MEDIAN_SAMPLES,
    PAIRWISE_METHODS,
    _as_variable,
    _check_choice,
    _check_median_samples,
    _check_n,
    _out,
    _progress,
    _require_memory,
    _rescale,
    _resolve_device,
    _warn_constant,
    parse_memory,
)
from vcreg.independence.hsic import hsic_test
from vcreg.independence.kernels import (
    CHOLESKY_DTYPE,
    _check_bandwidth,
    _column_sigmas,
    _pivoted_cholesky,
    _scale,
)


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
    z: Tensor,
    sig: Tensor,
    kernel: str,
    estimator: str,
    budget: int,
    progress: bool,
    sharded: bool = False,
) -> Tensor:
    n, d = z.shape
    t = n * (n - 1) // 2
    bpv = t * z.element_size()  # bytes of one variable's triangle
    fixed = 2 * t * 8 + 3 * d * d * z.element_size()  # the int64 index pair, the (d, d) results
    # the smallest blocked run: two resident one-column chunks and ~6 building temporaries
    _require_memory(
        fixed + 8 * bpv,
        budget,
        f"exact pairwise HSIC at n = {n}",
        "raise max_memory, use method='lowrank' or subsample rows (exact memory grows as n^2)",
    )
    avail = (budget - fixed) // bpv
    i0, i1 = torch.triu_indices(n, n, 1, device=z.device)
    g = torch.zeros(d, d, dtype=z.dtype, device=z.device)
    world, me = _shard() if sharded else (1, 0)
    # building a chunk of c variables needs ~3 (T, c) buffers
    if avail >= d + 3 and world == 1:
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
    c = max(1, (avail - 3) // 5)  # two resident chunks + building temporaries
    if world > 1:  # enough blocks of the upper triangle to share out
        c = min(c, -(-d // (2 * world)))
    starts = list(range(0, d, c))
    pairs = [(a0, b0) for a0 in starts for b0 in starts if b0 >= a0]
    owner = _balance([1.0] * len(pairs), world)
    mine = {p for p, o in zip(pairs, owner, strict=True) if o == me}
    bar = _progress(len(mine), "pairwise HSIC (blocks)", progress)
    for a0 in starts:
        if not any(p[0] == a0 for p in mine):
            continue
        va, vda = _triangle_block(z[:, a0 : a0 + c], sig[a0 : a0 + c], kernel, estimator, i0, i1)
        for b0 in starts:
            if (a0, b0) not in mine:
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
            del vb, vdb
            if bar is not None:
                bar.update()
        del va, vda
    if bar is not None:
        bar.close()
    return _symmetric_from_upper(g, world > 1)


def _lowrank_features(
    z: Tensor, sig: Tensor, kernel: str, budget: int, tol: float, max_rank: int, progress: bool
) -> tuple[Tensor, Tensor, float]:
    """Low-rank kernel features of every column: F (n, sum r), ranks r (d,), largest residual.

    Memory is checked before each block of columns: the features kept so far, twice (the final
    concatenation), plus the block's factor and temporaries must fit ``budget``."""
    n, d = z.shape
    if kernel == "linear":  # the linear kernel of a scalar has rank one: exact features
        return z, torch.ones(d, dtype=torch.long, device=z.device), 0.0
    item = torch.empty((), dtype=CHOLESKY_DTYPE).element_size()
    per_col = (max_rank + 6) * n * item  # the factor, diag, diff, col and the kept copy
    cc = max(1, min(d, budget // (4 * per_col)))
    parts, rk, resid, kept = [], [], 0.0, 0
    bar = _progress(-(-d // cc), "pairwise HSIC (low-rank features)", progress)
    for c0 in range(0, d, cc):
        c1 = min(d, c0 + cc)
        _require_memory(
            2 * kept + (c1 - c0) * per_col + 2 * (d - c0) * n * item,
            budget,
            f"low-rank pairwise HSIC at n = {n}, d = {d} (features of rank "
            f"{kept / max(1, c0 * n * item):.1f} per column so far, up to max_rank = {max_rank})",
            "raise max_memory, raise rank_tol / lower max_rank, or subsample rows",
        )
        lmat, r, res = _pivoted_cholesky(z[:, c0:c1], sig[c0:c1], kernel, tol, max_rank)
        rmax = int(r.max())
        mask = torch.arange(rmax, device=z.device)[None, :] < r[:, None]  # (c, rmax)
        parts.append(lmat[:, :rmax, :].permute(2, 0, 1)[:, mask])  # (n, sum r)
        del lmat
        kept += parts[-1].numel() * item
        rk.append(r)
        resid = max(resid, res)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return torch.cat(parts, 1), torch.cat(rk), resid


def _balance(costs: list[float], world: int) -> list[int]:
    """Owner rank of each work item: largest first onto the least loaded rank (deterministic,
    so every rank computes the same assignment without communicating)."""
    load, owner = [0.0] * world, [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        w = min(range(world), key=lambda r: load[r])
        owner[i], load[w] = w, load[w] + costs[i]
    return owner


def _shard() -> tuple[int, int]:
    """(world size, rank) of the process group the pairwise work is sharded over."""
    return (dist.world_size(), dist.rank()) if dist.is_distributed() else (1, 0)


def _symmetric_from_upper(g: Tensor, sharded: bool) -> Tensor:
    """Sum the ranks' disjoint parts (one all-reduce), then mirror the upper triangle."""
    if sharded:
        torch.distributed.all_reduce(g)
    return torch.triu(g) + torch.triu(g, 1).T


def _segment_gram(
    f: Tensor, seg: Tensor, ranks: Tensor, budget: int, sharded: bool = False
) -> Tensor:
    """(d, d) sums of squared entries of F_i^T F_j over the feature blocks (seg) of variables.

    Upper triangle only (half the flops): slabs of whole variables against the features from
    the slab's first one on, their squares summed per variable pair. ``sharded``: the slabs
    are balanced over the ranks, every rank gets the whole matrix (one all-reduce)."""
    d, item, big_d = ranks.numel(), f.element_size(), f.shape[1]
    world, me = _shard() if sharded else (1, 0)
    g = torch.zeros(d, d, dtype=torch.float64, device=f.device)
    fixed = f.numel() * item + 3 * d * d * 8
    min_slab = int(ranks.max()) * big_d * item * 3  # the product, its square's reduction
    _require_memory(
        fixed + min_slab,
        budget,
        f"low-rank pairwise HSIC (Gram step, {big_d} features of n = {f.shape[0]} rows)",
        "raise max_memory, raise rank_tol / lower max_rank, or subsample rows",
    )
    # rows of F^T F in slabs that fit, at least 4 per rank to balance the triangle's work
    slab = max(1, min((budget - fixed) // (3 * big_d * item), -(-big_d // (4 * world))))
    bounds = torch.cumsum(ranks, 0).tolist()
    slabs, v0 = [], 0
    while v0 < d:
        f0 = bounds[v0 - 1] if v0 else 0
        v1 = v0
        while v1 < d and bounds[v1] - f0 <= slab:
            v1 += 1
        v1 = max(v1, v0 + 1)
        slabs.append((v0, v1, f0, bounds[v1 - 1]))
        v0 = v1
    owner = _balance([(f1 - f0) * (big_d - f0) for _, _, f0, f1 in slabs], world)
    for (v0, v1, f0, f1), o in zip(slabs, owner, strict=True):
        if o != me:
            continue
        cm = (f[:, f0:f1].T @ f[:, f0:]).square_()
        red = torch.zeros(f1 - f0, d - v0, dtype=f.dtype, device=f.device)
        red.index_add_(1, seg[f0:] - v0, cm)
        del cm
        blk = torch.zeros(v1 - v0, d - v0, dtype=f.dtype, device=f.device)
        g[v0:v1, v0:] = blk.index_add_(0, seg[f0:f1] - v0, red)
    return _symmetric_from_upper(g, sharded)


def _unbiased_lowrank_gram(
    f: Tensor, seg: Tensor, ranks: Tensor, budget: int, sharded: bool
) -> Tensor:
    """U-centred Frobenius products from uncentred features: the diagonal (delta), off-diagonal
    row sums and total sum of each approximated kernel matrix correct the plain product. The
    corrections cancel most of it, so this path works in float64."""
    f = f.double()
    n, d = f.shape[0], ranks.numel()
    delta = torch.zeros(n, d, dtype=f.dtype, device=f.device).index_add_(
        1, seg, f.square()
    )  # diagonal of each approximated kernel matrix
    colsum = f.sum(0)
    rows = (
        torch.zeros(n, d, dtype=f.dtype, device=f.device).index_add_(1, seg, f * colsum) - delta
    )  # off-diagonal row sums
    s = rows.sum(0)
    g = _segment_gram(f, seg, ranks, budget, sharded)
    g = (
        g
        - delta.T @ delta
        + torch.outer(s, s) / ((n - 1) * (n - 2))
        - (2.0 / (n - 2)) * (rows.T @ rows)
    )
    return (g + g.T) / 2


def _lowrank_pairwise(
    z: Tensor,
    sig: Tensor,
    kernel: str,
    estimator: str,
    budget: int,
    tol: float,
    max_rank: int,
    progress: bool,
    sharded: bool = False,
) -> tuple[Tensor, dict[str, Any]]:
    """Biased: the centred features in float32 (no cancellation: centring is done on the
    features, their products are sums of bounded terms), the Gram in the float32 matmul."""
    d = z.shape[1]
    feats, ranks, resid = _lowrank_features(z, sig, kernel, budget, tol, max_rank, progress)
    seg = torch.repeat_interleave(torch.arange(d, device=z.device), ranks)
    info = {
        "mean_rank": float(ranks.double().mean()),
        "max_rank": int(ranks.max()),
        "max_residual": resid,
        "n_features": feats.shape[1],
    }
    if estimator == "biased":
        # kernel features are bounded by 1; the linear kernel's (the data) keep their dtype
        feats = feats if kernel == "linear" else feats.to(CHOLESKY_DTYPE)
        feats = feats - feats.mean(0)
        g = _segment_gram(feats, seg, ranks, budget, sharded)
    else:
        g = _unbiased_lowrank_gram(feats, seg, ranks, budget, sharded)
    return g.to(z.dtype), info


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
    distributed: bool | None = None,
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
    sampling noise, so self-HSIC and normalized values are not biased upwards. The biased
    low-rank Gram runs in float32 (centred features, no cancellation).

    ``distributed``: None (default) shards the d x d work over the ranks of an initialised
    multi-rank ``torch.distributed`` group (e.g. under ``torchrun``), False never does. Every
    rank passes the same Z and gets the whole matrix: each computes its balanced share of the
    upper-triangle blocks (exact: blocks of the batched product; lowrank: slabs of the Gram of
    the features, which every rank computes), then one all-reduce. ``max_memory`` is per rank.
    """
    method = _check_choice(method, "method", PAIRWISE_METHODS)
    kernel = _check_choice(kernel, "kernel", KERNELS)
    estimator = _check_choice(estimator, "estimator", ESTIMATORS)
    bw = _check_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    budget = parse_memory(max_memory)
    if not (0 < rank_tol < 1):
        raise ValueError(f"rank_tol must be in (0, 1), got {rank_tol!r}")
    if int(max_rank) < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank!r}")
    dev = _resolve_device(Z, device)
    free = kernel != "linear" and isinstance(bw, str)  # scale-invariant statistics
    z = _as_variable(Z, "Z", dtype, dev, centre=True, scale="column" if free else None)
    z, _ = _rescale(z, "Z", free, per_column=True)
    n, d = z.shape
    _check_n(n, "Z")
    if d < 2:
        raise ValueError(f"Z needs at least 2 columns (features) for pairwise HSIC, got {d}")
    sig, constant = _column_sigmas(z, bw, median_samples)
    if bool(constant.any()):
        _warn_constant(f"column {i}" for i in torch.nonzero(constant).flatten().tolist())
    sharded = distributed is not False and dist.is_distributed()
    if method == "exact":
        g = _exact_pairwise(z, sig, kernel, estimator, budget, progress, sharded)
    else:
        g, _ = _lowrank_pairwise(
            z, sig, kernel, estimator, budget, rank_tol, int(max_rank), progress, sharded
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


def pairwise_summary(
    M: Any,
    top_k: int = 10,
    names: Sequence[str] | None = None,
    p_values: Any = None,
    correction: str = "holm",
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Summary of the off-diagonal (i < j) entries of a symmetric (d, d) pairwise matrix.

    Returns ``{"n_variables", "n_pairs", "mean", "median", "std", "min", "max", "q05", "q95",
    "top_pairs"}``; ``top_pairs`` lists the ``top_k`` largest entries as
    ``{"i", "j", "value"}`` (plus ``"names"`` when ``names`` is given), most dependent first.
    With ``p_values`` (a (d, d) matrix, e.g. ``pairwise_hsic_test(Z)["p_values"]``), they are
    adjusted over the non-NaN pairs with ``correction`` (:func:`adjust_pvalues`); each top pair
    gets ``p_value``/``p_adjusted``/``significant`` and the summary ``correction``, ``alpha``,
    ``n_tested`` and ``n_significant`` (adjusted p <= alpha).
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
    adj = None
    if p_values is not None:
        pm = np.asarray(p_values, dtype=np.float64)
        if pm.shape != m.shape:
            raise ValueError(f"p_values has shape {pm.shape}, the matrix {m.shape}")
        pflat = pm[iu, ju]
        adj = adjust_pvalues(pflat, correction)
    order = np.argsort(-vals, kind="stable")[: max(0, int(top_k))]
    top = []
    for o in order:
        item: dict[str, Any] = {"i": int(iu[o]), "j": int(ju[o]), "value": float(vals[o])}
        if names is not None:
            item["names"] = [str(names[iu[o]]), str(names[ju[o]])]
        if adj is not None:
            item.update(p_value=float(pflat[o]), p_adjusted=float(adj[o]))
            item["significant"] = bool(adj[o] <= alpha)
        top.append(item)
    out = {
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
    if adj is not None:
        tested = ~np.isnan(adj)
        out.update(correction=correction, alpha=float(alpha), n_tested=int(tested.sum()))
        out["n_significant"] = int((adj[tested] <= alpha).sum())
    return out


# ----------------------------------------------------------------------------- pairwise tests

CORRECTIONS = ("holm", "bonferroni", "fdr_bh", "none")


def adjust_pvalues(p: Any, correction: str = "holm") -> np.ndarray:
    """Multiple-testing adjusted p-values of a 1-D array of m p-values.

    ``"bonferroni"``: min(1, m p_i). ``"holm"`` (step-down, family-wise error; Holm 1979): with
    p_(1) <= ... <= p_(m), adj_(k) = max_{l <= k} min(1, (m - l + 1) p_(l)). ``"fdr_bh"``
    (Benjamini & Hochberg 1995, false discovery rate under independence or positive
    dependence): adj_(k) = min_{l >= k} min(1, m p_(l) / l). ``"none"``: p unchanged. Reject
    H0_i at level alpha when adj_i <= alpha. NaN entries are not counted in m and stay NaN.
    """
    correction = _check_choice(correction, "correction", CORRECTIONS)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"expected a 1-D array of p-values, got shape {p.shape}")
    ok = ~np.isnan(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full_like(p, np.nan)
    q = p[ok]
    m = q.size
    if m == 0 or correction == "none":
        out[ok] = q
        return out
    if correction == "bonferroni":
        out[ok] = np.minimum(1.0, m * q)
        return out
    order = np.argsort(q, kind="stable")
    ranked = q[order]
    k = np.arange(1, m + 1)
    if correction == "holm":
        adj = np.maximum.accumulate(np.minimum(1.0, (m - k + 1) * ranked))
    else:
        adj = np.minimum.accumulate(np.minimum(1.0, m * ranked / k)[::-1])[::-1]
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def _pairwise_raw(
    z: Tensor,
    method: str,
    kernel: str,
    bw: str | float,
    budget: int,
    opts: dict[str, Any],
) -> tuple[Tensor, Tensor, Tensor]:
    """Biased HSIC matrix, per-column bandwidths and the constant-column mask."""
    sig, constant = _column_sigmas(z, bw, opts["median_samples"])
    if bool(constant.any()):
        _warn_constant(f"column {i}" for i in torch.nonzero(constant).flatten().tolist())
    sharded = opts["distributed"] is not False and dist.is_distributed()
    if method == "exact":
        g = _exact_pairwise(z, sig, kernel, "biased", budget, opts["progress"], sharded)
    else:
        g, info = _lowrank_pairwise(
            z, sig, kernel, "biased", budget, opts["rank_tol"], opts["max_rank"],
            opts["progress"], sharded,
        )  # fmt: skip
        opts["lowrank_info"] = info
    g[constant] = 0
    g[:, constant] = 0
    return g * _scale(z.shape[0], "biased"), sig, constant


def _check_test_args(
    correction, null, alpha, method, kernel, bandwidth, median_samples, n_permutations, max_memory
) -> tuple[str, str, str, str, str | float, int, int]:
    """Validated (correction, null, method, kernel, bandwidth, median_samples, budget)."""
    correction = _check_choice(correction, "correction", CORRECTIONS)
    null = _check_choice(null, "null", ("spectral", "gamma"))
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    method = _check_choice(method, "method", PAIRWISE_METHODS)
    kernel = _check_choice(kernel, "kernel", KERNELS)
    if kernel == "linear":
        raise ValueError("the gamma test needs a gaussian or laplacian kernel (k(x, x) = 1)")
    bw = _check_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    if isinstance(n_permutations, bool) or int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations!r}")
    return correction, null, method, kernel, bw, median_samples, parse_memory(max_memory)


def _test_matrix(Z: Any, dtype: torch.dtype, device, bw: str | float) -> Tensor:
    """Z as a checked (n, d >= 2) tensor, columns rescaled for the median bandwidth rule."""
    free = isinstance(bw, str)
    z = _as_variable(
        Z, "Z", dtype, _resolve_device(Z, device), centre=True, scale="column" if free else None
    )
    z, _ = _rescale(z, "Z", free, per_column=True)
    n, d = z.shape
    _check_n(n, "Z")
    if d < 2:
        raise ValueError(f"Z needs at least 2 columns (features) for pairwise tests, got {d}")
    return z


def _pair_pvalues(
    z: Tensor,
    raw: Tensor,
    sig: Tensor,
    constant: Tensor,
    kernel: str,
    budget: int,
    null: str,
    correction: str,
    alpha: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(d, d) p-values and how each pair was tested (:mod:`vcreg.independence.nulls`): the
    spectral (or gamma) null where its predicted tail error at the corrected level (alpha / m;
    alpha without a correction) is small, else Edgeworth-corrected or exact; pairs the exact
    null cannot bring to the threshold (Tarone) and pairs with a constant column are not
    tested (NaN p-value, counted by reason)."""
    n, d = z.shape
    prof = nulls.column_profiles(z, sig, kernel, budget)
    const = constant.cpu().numpy()
    iu, ju = np.triu_indices(d, 1)
    ok = ~(const[iu] | const[ju])
    i, j = iu[ok], ju[ok]
    level = alpha / max(1, i.size) if correction != "none" else alpha
    err = nulls.spectral_tail_error(i, j, prof, n, level)
    modes, k = nulls.column_modes(z)
    kind = nulls.choose_null(err, k[i], k[j], n)
    stat = raw.double().cpu().numpy()[i, j] * n
    p = np.full(i.size, np.nan)
    asym = kind != nulls.EXACT
    a, b = i[asym], j[asym]
    if null == "gamma":
        p[asym] = nulls.gamma_pvalues(stat[asym], prof.moments, n, a, b)
    else:
        p[asym] = nulls.spectral_pvalues(stat[asym], prof.eig, prof.trace, a, b)
    cor = kind == nulls.CORRECTED
    p[cor] = np.minimum(1.0, p[cor] * (1 + nulls.EDGEWORTH_SAFETY * err[cor]))
    ex = kind == nulls.EXACT
    p[ex], unreachable = _exact_null_pvalues(
        z, sig, kernel, (i[ex], j[ex]), (modes, k), alpha, correction, int(asym.sum())
    )
    pv = np.full((d, d), np.nan)
    pv[i, j] = pv[j, i] = p
    used = {
        null: int((kind == nulls.SPECTRAL).sum()),
        f"{null}, Edgeworth-corrected": int(cor.sum()),
    }
    used["exact"] = int(ex.sum() - unreachable)
    reasons = {nulls.REASON_CONSTANT: int((~ok).sum()), nulls.REASON_UNREACHABLE: unreachable}
    return pv, {"nulls": used, "not_tested": reasons}


def _exact_null_pvalues(
    z: Tensor,
    sig: Tensor,
    kernel: str,
    pairs: tuple[np.ndarray, np.ndarray],
    modes: tuple[np.ndarray, np.ndarray],
    alpha: float,
    correction: str,
    n_always: int,
) -> tuple[np.ndarray, int]:
    """Exact-null p-values of the pairs (NaN where not tested) and how many are not."""
    i, j = pairs
    out = np.full(i.size, np.nan)
    if i.size == 0:
        return out, 0
    n = z.shape[0]
    mode, k = modes
    pmin = nulls.min_attainable(k[i], k[j], n)
    if correction == "none":
        keep = pmin <= alpha
    else:
        keep = nulls.tarone_keep(n_always, pmin, alpha)
    cols, pos = np.unique(np.r_[i[keep], j[keep]], return_inverse=True)
    x = z[:, torch.as_tensor(cols, device=z.device)].double().cpu().numpy()
    table = nulls.active_table(x, mode[cols], sig.double().cpu().numpy()[cols], kernel)
    half = keep.sum()
    out[keep] = nulls.exact_pvalues(table, pos[:half], pos[half:], kernel)[0]
    return out, int((~keep).sum())


def _test_result(
    raw: Tensor,
    pv: np.ndarray,
    info: dict[str, Any],
    n: int,
    correction: str,
    alpha: float,
    method: str,
) -> dict[str, Any]:
    """The result dict (without ``top_pairs``): adjusted p-values and the counts."""
    d = pv.shape[0]
    iu, ju = np.triu_indices(d, 1)
    adj_flat = adjust_pvalues(pv[iu, ju], correction)
    padj = np.full((d, d), np.nan)
    padj[iu, ju] = padj[ju, iu] = adj_flat
    np.fill_diagonal(pv, np.nan)
    raw_np = raw.cpu().numpy()
    nrm = _normalize(raw.clone()).cpu().numpy()
    tested = ~np.isnan(adj_flat)
    return {
        "n_variables": d,
        "n_samples": n,
        "n_pairs": int(tested.sum()),
        "n_not_tested": int(sum(info["not_tested"].values())),
        "not_tested": info["not_tested"],
        "nulls": info["nulls"],
        "correction": correction,
        "alpha": float(alpha),
        "method": method,
        "n_significant": int((adj_flat[tested] <= alpha).sum()),
        "min_p_value": float(np.nanmin(pv)) if tested.any() else math.nan,
        "hsic": raw_np,
        "nhsic": nrm,
        "p_values": pv,
        "p_adjusted": padj,
    }


def pairwise_hsic_test(
    Z: Any,
    correction: str = "holm",
    alpha: float = 0.05,
    method: str = "exact",
    n_permutations: int = 0,
    top_k: int = 10,
    random_state: int | None = 0,
    *,
    null: str = "spectral",
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "4GB",
    rank_tol: float = 1e-2,
    max_rank: int = 64,
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
    progress: bool = False,
    distributed: bool | None = None,
) -> dict[str, Any]:
    """Test H0: Z_i independent of Z_j for every pair i < j, with multiple-testing correction.

    Per-pair p-values of n * HSIC_b (biased estimator, Gaussian or Laplacian kernel, per-column
    bandwidths). ``null="spectral"`` (default): the asymptotic null sum_kl lambda_k mu_l z_kl^2
    with each column's kernel eigenvalues and a saddlepoint tail (:func:`_pair_spectral_pvalues`).
    ``null="gamma"``: the two-moment Gamma fit (Gretton et al. 2008) -- measured
    anti-conservative in the tail on i.i.d. Gaussian noise (n = 2000, d = 256: 18 pairs below
    p = 1e-4 where 3.3 are expected, 2 below 1e-5 where 0.33 are), so family-wise corrections
    that need p ~ 1e-6 must not use it. P-values are adjusted over
    the m tested pairs by ``correction`` (:func:`adjust_pvalues`: ``"holm"``, ``"bonferroni"``,
    ``"fdr_bh"``, ``"none"``); a pair is significant when its adjusted p <= ``alpha``. Pairs
    with a constant column are not tested (p = NaN, not in m). ``n_permutations > 0`` adds a
    permutation p-value (:func:`hsic_test`) to each of the ``top_k`` reported pairs, with its
    Bonferroni adjustment min(1, m p) -- only able to reach alpha when B + 1 >= m / alpha.

    Returns a dict: ``n_variables``, ``n_pairs`` (tested), ``correction``, ``alpha``,
    ``n_significant``, ``min_p_value``, ``top_pairs`` (smallest p first: ``i, j, hsic, nhsic,
    p_value, p_adjusted, significant`` [+ ``p_permutation``, ``p_permutation_bonferroni``]) and
    the (d, d) NumPy matrices ``hsic``, ``nhsic``, ``p_values``, ``p_adjusted`` (NaN diagonal)
    (+ ``lowrank``: mean/max rank, residual, with method="lowrank"). ``distributed``: as in
    :func:`pairwise_hsic` (the HSIC matrix is sharded; the per-column null parts are not).
    """
    correction, null, method, kernel, bw, median_samples, budget = _check_test_args(
        correction, null, alpha, method, kernel, bandwidth, median_samples, n_permutations,
        max_memory,
    )  # fmt: skip
    z = _test_matrix(Z, dtype, device, bw)
    opts = {"median_samples": median_samples, "progress": progress, "distributed": distributed}
    opts.update(rank_tol=rank_tol, max_rank=int(max_rank))
    raw, sig, constant = _pairwise_raw(z, method, kernel, bw, budget, opts)
    pv, info = _pair_pvalues(z, raw, sig, constant, kernel, budget, null, correction, alpha)
    res = _test_result(raw, pv, info, z.shape[0], correction, alpha, f"{null} null, {method} HSIC")
    if "lowrank_info" in opts:
        res["lowrank"] = opts["lowrank_info"]
    res["top_pairs"] = _top_tested_pairs(z, res, top_k, n_permutations, random_state, kernel, bw)
    return res


def _top_tested_pairs(
    z: Tensor,
    res: dict[str, Any],
    top_k: int,
    n_permutations: int,
    random_state: int | None,
    kernel: str,
    bw: str | float,
) -> list[dict[str, Any]]:
    """The ``top_k`` pairs with the smallest p-values (ties: larger HSIC first)."""
    d = res["n_variables"]
    iu, ju = np.triu_indices(d, 1)
    p = res["p_values"][iu, ju]
    ok = np.nonzero(~np.isnan(p))[0]
    order = ok[np.lexsort((-res["hsic"][iu[ok], ju[ok]], p[ok]))][: max(0, int(top_k))]
    out = []
    for o in order:
        i, j = int(iu[o]), int(ju[o])
        item = {
            "i": i,
            "j": j,
            "hsic": float(res["hsic"][i, j]),
            "nhsic": float(res["nhsic"][i, j]),
            "p_value": float(p[o]),
            "p_adjusted": float(res["p_adjusted"][i, j]),
            "significant": bool(res["p_adjusted"][i, j] <= res["alpha"]),
        }
        if n_permutations:
            t = hsic_test(
                z[:, i],
                z[:, j],
                "permutation",
                int(n_permutations),
                random_state,
                kernel=kernel,
                bandwidth=bw,
            )
            item["p_permutation"] = t.p_value
            item["p_permutation_bonferroni"] = min(1.0, res["n_pairs"] * t.p_value)
        out.append(item)
    return out
