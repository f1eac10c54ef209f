"""HSIC of one pair of variables and its gamma / permutation tests."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from vcreg.independence._common import (
    DEFAULT_DTYPE,
    ESTIMATORS,
    KERNELS,
    MEDIAN_SAMPLES,
    TEST_METHODS,
    IndependenceTestResult,
    _as_variable,
    _check_choice,
    _check_median_samples,
    _check_same_n,
    _is_constant,
    _require_memory,
    _rescale,
    _resolve_device,
    _rng,
    _warn_constant,
    parse_memory,
)
from vcreg.independence.kernels import (
    GRAM_ROW_ITEMS,
    _centre,
    _check_bandwidth,
    _gram,
    _gram_rows,
    _scale,
    _sigma,
)


def _prepare_pair(
    x: Any, y: Any, dtype: torch.dtype, device: str | torch.device | None, scale_free: bool
) -> tuple[Tensor, Tensor, int, list[str]]:
    """Validated (n, p) and (n, q) tensors on one device (rescaled if extreme, see _rescale),
    n, and the names of constant ones."""
    dev = _resolve_device(x if isinstance(x, Tensor) else y, device)
    sc = "variable" if scale_free else None  # centred and scaled in float64 first
    xt = _as_variable(x, "x", dtype, dev, centre=True, scale=sc)
    yt = _as_variable(y, "y", dtype, dev, centre=True, scale=sc)
    xt, _ = _rescale(xt, "x", scale_free, per_column=False)
    yt, _ = _rescale(yt, "y", scale_free, per_column=False)
    n = _check_same_n([xt, yt], ["x", "y"])
    return xt, yt, n, [nm for nm, t in (("x", xt), ("y", yt)) if _is_constant(t)]


def hsic(
    x: Any,
    y: Any,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    estimator: str = "biased",
    normalized: bool = False,
    *,
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "4GB",
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
) -> float:
    """HSIC between x (n,) | (n, p) and y (n,) | (n, q).

    ``estimator="biased"``: tr(K H L H)/n^2 (Gretton et al. 2005); ``"unbiased"``: Song et al.
    (2012). ``normalized=True`` divides by sqrt(HSIC(x, x) HSIC(y, y)). ``bandwidth`` is
    ``"median"``, ``"dhsic"`` or a number, applied to x and y separately (module docs).
    The kernel matrices are never held whole: they are built in blocks of rows that fit
    ``max_memory`` (two passes: row sums, then the centred products), so memory is O(n) rows
    times the block; a budget too small for one row is a ``ValueError`` before allocating.
    Returns 0.0 (with a :class:`ConstantVariableWarning`) when x or y is constant.
    """
    kernel = _check_choice(kernel, "kernel", KERNELS)
    estimator = _check_choice(estimator, "estimator", ESTIMATORS)
    bw = _check_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    budget = parse_memory(max_memory)
    _require_memory(
        _input_bytes(x, y, dtype), budget, "hsic (a float copy of x and y)", "raise max_memory"
    )
    xt, yt, n, const = _prepare_pair(
        x, y, dtype, device, kernel != "linear" and isinstance(bw, str)
    )
    if const:
        _warn_constant(const)
        return 0.0
    sx, sy = _sigma(xt, bw, median_samples), _sigma(yt, bw, median_samples)
    cross, kk, ll = _centred_products(xt, yt, kernel, (sx, sy), estimator, budget)
    if normalized:  # the 1/n^2 or 1/(n(n-3)) scales cancel
        den = math.sqrt(max(kk, 0.0) * max(ll, 0.0))
        return cross / den if den > 0 else 0.0
    return cross * _scale(n, estimator)


def _input_bytes(x: Any, y: Any, dtype: torch.dtype) -> int:
    """Bytes of the float copies of x and y (and their rescaled versions) made by hsic."""
    item = 8  # at most float64 (dtype itself is validated when the copies are made)
    size = sum(int(np.prod(np.shape(v))) for v in (x, y))
    return 2 * size * item


def _centred_products(
    xt: Tensor, yt: Tensor, kernel: str, sig: tuple[float, float], estimator: str, budget: int
) -> tuple[float, float, float]:
    """<Kc, Lc>, <Kc, Kc>, <Lc, Lc> of the centred (biased: H K H; unbiased: U-centred, zero
    diagonal) kernel matrices, streamed over blocks of rows that fit ``budget``."""
    n = xt.shape[0]
    item = xt.element_size()
    width = min(max(xt.shape[1], yt.shape[1]), 8)
    per_row = (2 * width + GRAM_ROW_ITEMS + 6) * n * item
    fixed = 3 * (xt.numel() + yt.numel()) * item + 8 * n * item
    advice = (
        f"raise max_memory to at least {_fmt_mib(fixed + per_row)} or subsample rows (the "
        "kernel matrices are streamed in blocks of rows; one row must fit)"
    )
    _require_memory(fixed + per_row, budget, f"hsic at n = {n}", advice)
    step = max(1, min(n, int((budget - fixed) // per_row)))
    unb = estimator == "unbiased"
    bufs = [xt.new_empty(step, n) for _ in range(3)]  # K rows, L rows, scratch: reused by blocks

    def rows(t: Tensor, s: float, a0: int, buf: Tensor) -> Tensor:
        b = min(step, n - a0)
        k = _gram_rows(t[a0 : a0 + b], t, kernel, s, out=buf[:b], tmp=bufs[2][:b])
        if unb:  # U-centring works on the matrix with a zero diagonal
            k[torch.arange(b), torch.arange(a0, a0 + b)] = 0
        return k

    rk = torch.cat([rows(xt, sig[0], a0, bufs[0]).sum(1) for a0 in range(0, n, step)])
    rl = torch.cat([rows(yt, sig[1], a0, bufs[1]).sum(1) for a0 in range(0, n, step)])
    if unb:
        mk, ml = rk / (n - 2), rl / (n - 2)
        ck, cl = rk.sum() / ((n - 1) * (n - 2)), rl.sum() / ((n - 1) * (n - 2))
    else:
        mk, ml = rk / n, rl / n
        ck, cl = mk.mean(), ml.mean()
    acc = torch.zeros(3, dtype=xt.dtype, device=xt.device)
    for a0 in range(0, n, step):
        kc = rows(xt, sig[0], a0, bufs[0]).sub_(mk[a0 : a0 + step, None]).sub_(mk).add_(ck)
        lc = rows(yt, sig[1], a0, bufs[1]).sub_(ml[a0 : a0 + step, None]).sub_(ml).add_(cl)
        if unb:
            idx = (torch.arange(kc.shape[0]), torch.arange(a0, a0 + kc.shape[0]))
            kc[idx] = 0
            lc[idx] = 0
        kf, lf = kc.reshape(-1), lc.reshape(-1)  # views: the buffers are contiguous
        acc[0] += kf.dot(lf)
        acc[1] += kf.dot(kf)
        acc[2] += lf.dot(lf)
    return tuple(float(v) for v in acc)


def _fmt_mib(n: float) -> str:
    return f"{math.ceil(n / 2**20)}MB"


# ----------------------------------------------------------------------------- gamma null


def _gamma_pvalue(
    n: int, stat: float, est_a: Tensor, est_b: Tensor, est_c: Tensor
) -> tuple[float, dict[str, float]]:
    """Gamma approximation of the null of n * dHSIC (Pfister et al. 2018, R package dHSIC).

    est_a = mean(K_j), est_b = mean(K_j^2), est_c = mean(rowmean(K_j)^2) per variable; products
    over variables are taken in log space. Requires kernels with k(x, x) = 1.
    """
    d = est_a.numel()
    if n - 4 * d + 3 <= 0:
        raise ValueError(
            f"the gamma approximation needs n >= 4d - 2 samples (n = {n}, d = {d} variables); "
            "use method='permutation'"
        )
    la, lb, lc = (v.double().cpu().clamp_min(1e-300).log() for v in (est_a, est_b, est_c))
    sa, sb, sc = la.sum(), lb.sum(), lc.sum()
    exp_est = (1.0 - torch.exp(sa - la).sum() + (d - 1) * torch.exp(sa)) / n
    ratio = torch.exp(lc - 2 * la)
    t7_log = 2 * sa + torch.log((ratio.sum() ** 2 - (ratio**2).sum()).clamp_min(1e-300))
    # (log|term|, sign) of the seven variance terms
    logs = [
        sb,
        2 * math.log(d - 1) + 2 * sa if d > 1 else torch.tensor(-math.inf, dtype=torch.float64),
        math.log(2 * (d - 1)) + sc if d > 1 else torch.tensor(-math.inf, dtype=torch.float64),
        torch.logsumexp(lb + 2 * (sa - la), 0),
        math.log(2) + torch.logsumexp(lb + sc - lc, 0),
        math.log(2 * (d - 1)) + torch.logsumexp(lc + 2 * (sa - la), 0),
        t7_log,
    ]
    signs = torch.tensor([1.0, 1.0, 1.0, 1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    logs_t = torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in logs])
    top = logs_t.max()
    total = (signs * torch.exp(logs_t - top)).sum()
    j = torch.arange(0, 2 * d - 2, dtype=torch.float64)
    log_factor = (
        torch.log(n - 2 * d - j).sum() - math.log(n) - math.log(n - 1) - torch.log(n - 2 - j).sum()
    )
    exp_est = float(exp_est)
    if not (float(total) > 0 and exp_est > 0):
        raise ValueError(
            "gamma approximation is degenerate for these data; use method='permutation'"
        )
    log_var = math.log(2.0) + float(log_factor) + float(top) + math.log(float(total))
    shape = math.exp(2 * math.log(exp_est) - log_var)
    scale = math.exp(math.log(n) + log_var - math.log(exp_est))
    p = float(stats.gamma.sf(n * stat, shape, scale=scale))
    return p, {
        "gamma_shape": shape,
        "gamma_scale": scale,
        "null_mean": exp_est,
        "null_var": math.exp(log_var),
    }


def _perm_pvalue(stat: float, null: np.ndarray) -> float:
    if not (math.isfinite(stat) and np.isfinite(null).all()):  # never a p-value from NaN
        raise ValueError(
            "the statistic or its permutation null is not finite (NaN/Inf); check the data's "
            "scale and the bandwidth"
        )
    # the +1 counts the observed statistic (a valid p-value, never 0)
    return float((1 + np.sum(null >= stat - 1e-12 * abs(stat))) / (1 + null.size))


def _check_test_args(method: str, n_permutations: int) -> str:
    method = _check_choice(method, "test method", TEST_METHODS)
    if method == "permutation" and (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, int | np.integer)
        or n_permutations < 1
    ):
        raise ValueError(f"n_permutations must be a positive integer, got {n_permutations!r}")
    return method


def hsic_test(
    x: Any,
    y: Any,
    method: str = "gamma",
    n_permutations: int = 1000,
    random_state: int | np.random.Generator | None = 0,
    *,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    estimator: str = "biased",
    median_samples: int = MEDIAN_SAMPLES,
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
) -> IndependenceTestResult:
    """Test H0: x and y independent.

    ``method="gamma"``: Gamma approximation of the null of n*HSIC_b (Gretton et al. 2008, with
    the moment estimates of Pfister et al. 2018 for d = 2; Gaussian/Laplacian kernels, biased
    estimator only). ``"permutation"``: permutes the rows of y ``n_permutations`` times
    (seeded by ``random_state``); p = (1 + #{null >= stat}) / (1 + n_permutations).
    """
    method = _check_test_args(method, n_permutations)
    kernel = _check_choice(kernel, "kernel", KERNELS)
    estimator = _check_choice(estimator, "estimator", ESTIMATORS)
    bw = _check_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    if method == "gamma" and (estimator != "biased" or kernel == "linear"):
        raise ValueError(
            "the gamma test needs estimator='biased' and a gaussian/laplacian kernel; "
            "use method='permutation'"
        )
    xt, yt, n, const = _prepare_pair(
        x, y, dtype, device, kernel != "linear" and isinstance(bw, str)
    )
    if const:
        _warn_constant(const)
        return IndependenceTestResult(0.0, 1.0, method, n, None, {"constant": const})
    k = _gram(xt, kernel, _sigma(xt, bw, median_samples))
    ell = _gram(yt, kernel, _sigma(yt, bw, median_samples))
    kc, lc = _centre(k, estimator), _centre(ell, estimator)
    scale = _scale(n, estimator)
    stat = float((kc * lc).sum()) * scale
    if method == "gamma":
        est = [
            torch.stack([m.mean() for m in (k, ell)]),
            torch.stack([(m * m).mean() for m in (k, ell)]),
            torch.stack([m.mean(1).pow(2).mean() for m in (k, ell)]),
        ]
        p, det = _gamma_pvalue(n, stat, *est)
        return IndependenceTestResult(stat, p, "gamma", n, None, det)
    rng = _rng(random_state)
    # <Kc, P Lc P^T> for a batch of permutations; centring commutes with permuting
    batch = max(1, int(2**26 // (n * n)))
    null = np.empty(n_permutations)
    for b0 in range(0, n_permutations, batch):
        b = min(batch, n_permutations - b0)
        perms = torch.as_tensor(
            rng.permuted(np.tile(np.arange(n), (b, 1)), axis=1), device=kc.device
        )
        lp = lc[perms[:, :, None], perms[:, None, :]]
        null[b0 : b0 + b] = ((lp * kc).sum((1, 2)) * scale).cpu().numpy()
    return IndependenceTestResult(
        stat,
        _perm_pvalue(stat, null),
        "permutation",
        n,
        n_permutations,
        {"null_mean": float(null.mean()), "null_std": float(null.std())},
    )
