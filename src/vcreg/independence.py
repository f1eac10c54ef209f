"""Kernel independence measures: HSIC, all-pairs HSIC matrices, dHSIC and their tests.

Conventions (all functions):

- Inputs are NumPy arrays or torch tensors (CPU or CUDA). A variable is a vector ``(n,)`` or a
  matrix ``(n, p)`` (rows = samples). Matrix-valued results follow the input: NumPy in -> NumPy
  out, torch in -> torch out on the input's device. Scalars are Python floats.
- Computations run in ``dtype=torch.float64`` by default: HSIC values of nearly independent
  variables are ~1e-4 to 1e-6 of the kernel entries, so float32 loses digits on large n. Pass
  ``dtype=torch.float32`` for speed on GPUs.
- Kernels: ``"gaussian"`` k(s, t) = exp(-|s - t|^2 / (2 sigma^2)), ``"laplacian"``
  k(s, t) = exp(-|s - t| / sigma), ``"linear"`` k(s, t) = <s, t> (no bandwidth).
- Bandwidth sigma (per variable): ``"median"`` = median of the pairwise Euclidean distances
  |x_a - x_b|, a < b (Gretton et al. 2005; also hyppo's convention); ``"dhsic"`` =
  sqrt(median(|x_a - x_b|^2) / 2), the convention of the R package dHSIC (Pfister et al. 2018);
  or a positive number (fixed). The median uses at most ``median_samples`` (default 256) rows,
  drawn without replacement with a fixed seed (0) when n is larger; an even number of pairs
  averages the two middle values. If more than half of the distances are 0 (discrete data),
  the median of the non-zero distances is used.
- Estimators: ``"biased"`` HSIC_b = tr(K H L H) / n^2, H = I - 11^T/n (Gretton et al. 2005);
  ``"unbiased"`` HSIC_u of Song et al. (2012), computed as <U(K), U(L)> / (n (n - 3)) with the
  U-centred kernel matrices of Szekely & Rizzo (2014), which is algebraically identical and
  numerically better conditioned. Normalized HSIC (as in CKA):
  HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)).
- dHSIC: the V-statistic of Pfister et al. (2018), evaluated in log space so that products of
  hundreds of kernel matrices neither underflow nor overflow.
- Bad input: fewer than 4 samples, NaN/Inf, mismatched numbers of samples, non-numeric data
  raise ``ValueError``/``TypeError``. A *constant* variable (all n values identical) is
  independent of everything: its HSIC (and normalized HSIC) is defined as 0 and a
  :class:`ConstantVariableWarning` is emitted; in dHSIC its kernel matrix is all ones, which
  leaves the statistic of the other variables unchanged.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "ConstantVariableWarning",
    "IndependenceTestResult",
    "bandwidth",
    "hsic",
    "hsic_test",
    "pairwise_hsic",
    "pairwise_summary",
    "normalize_hsic_matrix",
    "dhsic",
    "dhsic_test",
    "parse_memory",
    "effective_rank",
    "feature_std_summary",
]

KERNELS = ("gaussian", "laplacian", "linear")
ESTIMATORS = ("biased", "unbiased")
BANDWIDTH_RULES = ("median", "dhsic")
TEST_METHODS = ("gamma", "permutation")
PAIRWISE_METHODS = ("exact", "lowrank")
MEDIAN_SAMPLES = 256
DEFAULT_DTYPE = torch.float64


class ConstantVariableWarning(RuntimeWarning):
    """A variable is constant: its HSIC with anything is defined as 0."""


@dataclass(frozen=True)
class IndependenceTestResult:
    """Result of :func:`hsic_test` / :func:`dhsic_test`.

    ``statistic`` is the HSIC (or dHSIC) estimate itself (not multiplied by n); ``p_value`` the
    test's p-value; unpacks as ``stat, p = result``.
    """

    statistic: float
    p_value: float
    method: str
    n_samples: int
    n_permutations: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        yield self.statistic
        yield self.p_value


# ----------------------------------------------------------------------------- input handling


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def _resolve_device(x: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, Tensor):
        return x.device
    return torch.device("cpu")


def _as_variable(
    x: Any, name: str, dtype: torch.dtype, device: torch.device, allow_matrix: bool = True
) -> Tensor:
    """Convert to a finite (n, p) tensor of ``dtype`` on ``device``."""
    if isinstance(x, Tensor):
        t = x.detach()
        if t.is_complex() or t.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected numeric data, got array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or (not allow_matrix and t.shape[1] != 1):
        raise ValueError(f"{name}: expected shape (n,) or (n, p), got {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name}: has 0 columns (shape {tuple(t.shape)})")
    t = t.to(device=device, dtype=dtype)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s); remove or impute them first")
    return t


def _check_n(n: int, what: str = "input") -> None:
    if n < 4:
        raise ValueError(
            f"{what} has n = {n} samples; HSIC estimators need at least 4 samples (rows)"
        )


def _check_same_n(tensors: Sequence[Tensor], names: Sequence[str]) -> int:
    ns = {int(t.shape[0]) for t in tensors}
    if len(ns) != 1:
        desc = ", ".join(f"{nm}: {int(t.shape[0])}" for nm, t in zip(names, tensors, strict=True))
        raise ValueError(f"all variables need the same number of samples (rows); got {desc}")
    n = ns.pop()
    _check_n(n)
    return n


def _is_constant(x: Tensor) -> bool:
    return bool((x == x[:1]).all())


def _warn_constant(names: Iterable[str]) -> None:
    names = list(names)
    if names:
        shown = ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")
        warnings.warn(
            f"constant variable(s) {shown}: HSIC with a constant is defined as 0",
            ConstantVariableWarning,
            stacklevel=3,
        )


def parse_memory(value: int | float | str) -> int:
    """Bytes from ``4GB``/``512MB``/``1.5GiB``/an int. KB/MB/GB/TB are binary (1024) multiples."""
    if isinstance(value, bool):
        raise TypeError(f"max_memory: expected bytes or a string like '4GB', got {value!r}")
    if isinstance(value, int | float):
        out = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
        if m is None:
            raise ValueError(f"max_memory: cannot parse {value!r}; use e.g. '4GB' or '512MB'")
        out = int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    else:
        raise TypeError(f"max_memory: expected bytes or a string like '4GB', got {value!r}")
    if out <= 0:
        raise ValueError(f"max_memory must be positive, got {value!r}")
    return out


def _rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def _out(value: Tensor, like: Any) -> Tensor | np.ndarray:
    return value if isinstance(like, Tensor) else value.cpu().numpy()


# ----------------------------------------------------------------------------- bandwidths


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
    return float(bw)


def bandwidth(x: Any, rule: str | float = "median", median_samples: int = MEDIAN_SAMPLES) -> float:
    """Kernel bandwidth sigma of one variable x (n,) or (n, p) under ``rule`` (module docs)."""
    rule = _check_bandwidth(rule, "gaussian")
    t = _as_variable(x, "x", DEFAULT_DTYPE, _resolve_device(x, None))
    _check_n(t.shape[0], "x")
    return _sigma(t, rule, median_samples)


# ----------------------------------------------------------------------------- kernels


def _gram(x: Tensor, kernel: str, sigma: float) -> Tensor:
    """Full (n, n) kernel matrix of x (n, p)."""
    if kernel == "linear":
        return x @ x.T
    sq = (x[:, None, :] - x[None, :, :]).pow(2).sum(-1) if x.shape[1] <= 8 else None
    if sq is None:
        sq = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    if kernel == "gaussian":
        return torch.exp(sq / (-2.0 * sigma * sigma))
    return torch.exp(sq.sqrt() / (-sigma))


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


# ----------------------------------------------------------------------------- HSIC of one pair


def _prepare_pair(
    x: Any, y: Any, dtype: torch.dtype, device: str | torch.device | None
) -> tuple[Tensor, Tensor, int, list[str]]:
    """Validated (n, p) and (n, q) tensors on one device, n, and the names of constant ones."""
    dev = _resolve_device(x if isinstance(x, Tensor) else y, device)
    xt = _as_variable(x, "x", dtype, dev)
    yt = _as_variable(y, "y", dtype, dev)
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
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
) -> float:
    """HSIC between x (n,) | (n, p) and y (n,) | (n, q).

    ``estimator="biased"``: tr(K H L H)/n^2 (Gretton et al. 2005); ``"unbiased"``: Song et al.
    (2012). ``normalized=True`` divides by sqrt(HSIC(x, x) HSIC(y, y)). ``bandwidth`` is
    ``"median"``, ``"dhsic"`` or a number, applied to x and y separately (module docs).
    Returns 0.0 (with a :class:`ConstantVariableWarning`) when x or y is constant.
    """
    kernel = _check_choice(kernel, "kernel", KERNELS)
    estimator = _check_choice(estimator, "estimator", ESTIMATORS)
    bw = _check_bandwidth(bandwidth, kernel)
    xt, yt, n, const = _prepare_pair(x, y, dtype, device)
    if const:
        _warn_constant(const)
        return 0.0
    kc = _centre(_gram(xt, kernel, _sigma(xt, bw, median_samples)), estimator)
    lc = _centre(_gram(yt, kernel, _sigma(yt, bw, median_samples)), estimator)
    cross = float((kc * lc).sum())
    if normalized:  # the 1/n^2 or 1/(n(n-3)) scales cancel
        den = math.sqrt(float((kc * kc).sum()) * float((lc * lc).sum()))
        return cross / den if den > 0 else 0.0
    return cross * _scale(n, estimator)


# ----------------------------------------------------------------------------- gamma null


def _gamma_pvalue(
    n: int, stat: float, est_a: Tensor, est_b: Tensor, est_c: Tensor
) -> tuple[float, dict[str, float]]:
    """Gamma approximation of the null of n * dHSIC (Pfister et al. 2018, R package dHSIC).

    est_a = mean(K_j), est_b = mean(K_j^2), est_c = mean(rowmean(K_j)^2) per variable; products
    over variables are taken in log space. Requires kernels with k(x, x) = 1.
    """
    from scipy import stats

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
    if method == "gamma" and (estimator != "biased" or kernel == "linear"):
        raise ValueError(
            "the gamma test needs estimator='biased' and a gaussian/laplacian kernel; "
            "use method='permutation'"
        )
    xt, yt, n, const = _prepare_pair(x, y, dtype, device)
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


# ----------------------------------------------------------------------------- pairwise HSIC


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="block", leave=False)


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


# ----------------------------------------------------------------------------- dHSIC


def _dhsic_inputs(
    variables: Any, dtype: torch.dtype, device: str | torch.device | None
) -> tuple[list[Tensor], Any]:
    """A (n, d) matrix (columns = variables) or a list/tuple of (n,) | (n, p_j) variables."""
    if isinstance(variables, list | tuple):
        if len(variables) < 2:
            raise ValueError(f"dHSIC needs at least 2 variables, got {len(variables)}")
        dev = _resolve_device(variables[0], device)
        ts = [_as_variable(v, f"variable {j}", dtype, dev) for j, v in enumerate(variables)]
        _check_same_n(ts, [f"variable {j}" for j in range(len(ts))])
        return ts, variables[0]
    dev = _resolve_device(variables, device)
    z = _as_variable(variables, "Z", dtype, dev)
    _check_n(z.shape[0], "Z")
    if z.shape[1] < 2:
        raise ValueError(f"dHSIC needs at least 2 variables (columns), got {z.shape[1]}")
    return [z[:, j : j + 1] for j in range(z.shape[1])], variables


@dataclass
class _DhsicParts:
    log_t1: float
    log_t2: float
    log_t3: float
    log_rowmeans: Tensor  # (d, n)
    log_a: Tensor  # (d,) log mean K_j
    est_b: Tensor | None
    est_c: Tensor | None
    scaled: Tensor  # gaussian: concatenated x_j / (sqrt(2) sigma_j); laplacian: unused
    blocks: list[tuple[int, int]]
    sigmas: list[float]

    @property
    def value(self) -> float:
        return _combine(self.log_t1, self.log_t2, self.log_t3)


def _combine(l1: float, l2: float, l3: float) -> float:
    # t1 >= 1/n (diagonal terms), so factoring it out never underflows
    return math.exp(l1) * (1.0 + math.exp(l2 - l1) - math.exp(l3 - l1))


def _log_sum_matrix(
    xs: list[Tensor], parts: _DhsicParts, kernel: str, perms: Sequence[Tensor] | None = None
) -> Tensor:
    """(n, n) matrix sum_j log K_j[pi_j(a), pi_j(b)]."""
    if kernel == "gaussian":
        x = parts.scaled
        if perms is not None:
            x = torch.cat([x[p, a:b] for p, (a, b) in zip(perms, parts.blocks, strict=True)], 1)
        sq = x.square().sum(1)
        s = (2 * (x @ x.T) - sq[:, None] - sq[None, :]).clamp_max_(0)
        s.diagonal().zero_()
        return s
    s = None
    for j, v in enumerate(xs):
        v = v if perms is None else v[perms[j]]
        term = torch.cdist(v, v, compute_mode="donot_use_mm_for_euclid_dist") / (-parts.sigmas[j])
        s = term if s is None else s.add_(term)
    return s


def _dhsic_parts(
    xs: list[Tensor],
    kernel: str,
    bw: str | float,
    median_samples: int,
    gamma_stats: bool,
    budget: int,
) -> _DhsicParts:
    n = xs[0].shape[0]
    d = len(xs)
    dev, dt = xs[0].device, xs[0].dtype
    scalar = all(v.shape[1] == 1 for v in xs)
    if scalar and not isinstance(bw, float):
        sig_t, const = _column_sigmas(torch.cat(xs, 1), bw, median_samples)
        sigmas = sig_t.tolist()
        constant = const.tolist()
    else:
        constant = [_is_constant(v) for v in xs]
        sigmas = [
            1.0 if c else _sigma(v, bw, median_samples) for v, c in zip(xs, constant, strict=True)
        ]
    if any(constant):
        _warn_constant(f"variable {j}" for j, c in enumerate(constant) if c)
    log_rm = torch.empty(d, n, dtype=dt, device=dev)
    log_a = torch.empty(d, dtype=dt, device=dev)
    est_b = torch.empty(d, dtype=dt, device=dev) if gamma_stats else None
    est_c = torch.empty(d, dtype=dt, device=dev) if gamma_stats else None
    chunk = max(1, budget // (3 * n * n * xs[0].element_size()))
    ln = math.log(n)
    for j0 in range(0, d, chunk):
        j1 = min(d, j0 + chunk)
        sg = torch.tensor(sigmas[j0:j1], dtype=dt, device=dev)[:, None, None]
        if scalar:
            x = torch.cat(xs[j0:j1], 1).T  # (c, n)
            k = x[:, :, None] - x[:, None, :]
            k = k.square_() if kernel == "gaussian" else k.abs_()
        else:
            k = torch.stack([(v[:, None, :] - v[None, :, :]).square().sum(-1) for v in xs[j0:j1]])
            k = k if kernel == "gaussian" else k.sqrt_()
        # kernel values are in (0, 1] with a unit diagonal: row means >= 1/n never underflow
        k = k.mul_(-0.5 / sg.square()).exp_() if kernel == "gaussian" else k.div_(-sg).exp_()
        rm = k.mean(2)  # (c, n)
        log_rm[j0:j1] = rm.log()
        log_a[j0:j1] = rm.mean(1).log()
        if gamma_stats:
            est_b[j0:j1] = k.square_().mean((1, 2))
            est_c[j0:j1] = rm.square().mean(1)
        del k
    blocks, pos = [], 0
    for v in xs:
        blocks.append((pos, pos + v.shape[1]))
        pos += v.shape[1]
    scaled = (
        torch.cat([v / (math.sqrt(2.0) * s) for v, s in zip(xs, sigmas, strict=True)], 1)
        if kernel == "gaussian"
        else torch.empty(0, dtype=dt, device=dev)
    )
    parts = _DhsicParts(0.0, 0.0, 0.0, log_rm, log_a, est_b, est_c, scaled, blocks, sigmas)
    s = _log_sum_matrix(xs, parts, kernel)
    parts.log_t1 = float(torch.logsumexp(s.flatten(), 0)) - 2 * ln
    parts.log_t2 = float(log_a.sum())
    parts.log_t3 = math.log(2.0) - ln + float(torch.logsumexp(log_rm.sum(0), 0))
    return parts


def _check_dhsic_kernel(kernel: str) -> str:
    kernel = _check_choice(kernel, "kernel", KERNELS)
    if kernel == "linear":
        raise ValueError(
            "dHSIC needs positive kernels with k(x, x) = 1 (its products are computed in log "
            "space): use kernel='gaussian' or 'laplacian'"
        )
    return kernel


def dhsic(
    variables: Any,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    *,
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "4GB",
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
) -> float:
    """dHSIC V-statistic of the joint independence of d >= 2 variables (Pfister et al. 2018).

    ``variables``: an (n, d) matrix whose columns are the variables, or a list/tuple of
    (n,) | (n, p_j) arrays (widths may differ). Statistic:
    (1/n^2) sum_ab prod_j K_j[a,b] + prod_j (1/n^2) sum_ab K_j[a,b]
    - (2/n) sum_a prod_j (1/n) sum_b K_j[a,b], with every product evaluated as a sum of logs.
    For d = 2 it equals the biased HSIC. Gaussian or Laplacian kernels, per-variable bandwidths.
    """
    kernel = _check_dhsic_kernel(kernel)
    bw = _check_bandwidth(bandwidth, kernel)
    xs, _ = _dhsic_inputs(variables, dtype, device)
    return _dhsic_parts(xs, kernel, bw, median_samples, False, parse_memory(max_memory)).value


def dhsic_test(
    variables: Any,
    method: str = "gamma",
    n_permutations: int = 1000,
    random_state: int | np.random.Generator | None = 0,
    *,
    kernel: str = "gaussian",
    bandwidth: str | float = "median",
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "4GB",
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> IndependenceTestResult:
    """Test H0: the variables are jointly independent, with the dHSIC statistic.

    ``method="gamma"``: Gamma approximation of the null of n*dHSIC with the moment estimates of
    Pfister et al. (2018) (needs n >= 4d - 2). ``"permutation"``: every variable but the first
    is permuted as a whole (all its columns with the same permutation), independently,
    ``n_permutations`` times from ``random_state``; p = (1 + #{null >= stat}) / (1 + B).
    """
    method = _check_test_args(method, n_permutations)
    kernel = _check_dhsic_kernel(kernel)
    bw = _check_bandwidth(bandwidth, kernel)
    xs, _ = _dhsic_inputs(variables, dtype, device)
    n, d = xs[0].shape[0], len(xs)
    parts = _dhsic_parts(
        xs, kernel, bw, median_samples, method == "gamma", parse_memory(max_memory)
    )
    stat = parts.value
    if method == "gamma":
        p, det = _gamma_pvalue(n, stat, parts.log_a.exp(), parts.est_b, parts.est_c)
        return IndependenceTestResult(stat, p, "gamma", n, None, {**det, "n_variables": d})
    rng = _rng(random_state)
    null = np.empty(n_permutations)
    ln = math.log(n)
    ident = torch.arange(n, device=xs[0].device)
    bar = _progress(n_permutations, "dHSIC permutations", progress)
    for b in range(n_permutations):
        perms = [ident] + [
            torch.as_tensor(rng.permutation(n), device=xs[0].device) for _ in range(d - 1)
        ]
        s = _log_sum_matrix(xs, parts, kernel, perms)
        l1 = float(torch.logsumexp(s.flatten(), 0)) - 2 * ln
        pm = torch.stack(perms)  # (d, n): row j holds pi_j
        lrm = torch.gather(parts.log_rowmeans, 1, pm)
        l3 = math.log(2.0) - ln + float(torch.logsumexp(lrm.sum(0), 0))
        null[b] = _combine(l1, parts.log_t2, l3)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return IndependenceTestResult(
        stat,
        _perm_pvalue(stat, null),
        "permutation",
        n,
        n_permutations,
        {"n_variables": d, "null_mean": float(null.mean()), "null_std": float(null.std())},
    )


# ----------------------------------------------------------------------------- representation health

RANKME_EPS = 1e-7


def _health_matrix(Z: Any, name: str = "Z") -> Tensor:
    z = _as_variable(Z, name, DEFAULT_DTYPE, _resolve_device(Z, None))
    if z.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 samples (rows), got {z.shape[0]}")
    return z


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
    z = _health_matrix(Z)
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
    z = _health_matrix(Z)
    n, d = z.shape
    std = z.std(0, correction=1)
    scale = float(z.square().mean().sqrt())
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
