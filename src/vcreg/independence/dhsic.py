"""dHSIC (joint independence of d variables, Pfister et al. 2018), its tests, and a second
mutual-dependence summary (mean one-vs-rest normalized HSIC).

Bandwidth rules for d variables (``bandwidth=``):

- ``"median"`` / ``"dhsic"`` / a number: per-variable bandwidths (module docs of
  :mod:`vcreg.independence`). The product kernel exp(-sum_j |x_j - x'_j|^2 / (2 sigma_j^2)) then
  has an exponent that is a *sum* of d terms of order 1: for d >~ 16 (n = 512) every off-diagonal
  entry of the joint kernel matrix vanishes, the matrix is the identity and dHSIC ~ 1/n whatever
  the data (measured: 0.001953 = 1/512 at d = 64 for independent and strongly dependent data).
- ``"joint"``: sigma_j = median_j * sqrt(d) (Gaussian; median_j * d for the Laplacian kernel,
  whose exponent is linear in the distance). The exponent becomes the *average* of the d
  per-variable standardised distances, so a typical pair keeps an O(1) joint kernel value at any
  d (about exp(-1.1) for i.i.d. Gaussians): the product kernel's bandwidth is the joint distance
  of median-standardised data, up to a distribution-dependent constant (~1.5 for Gaussians).
  It depends only on the marginals, which permutations leave unchanged, so the permutation test
  with this rule stays exact.
- ``"auto"`` (default): ``"median"`` unless its joint kernel matrix is near-diagonal (mean
  off-diagonal row mass < ``AUTO_JOINT_MASS`` = 1: every sample is more similar to itself than
  to all others together), then ``"joint"``.

Saturation: when the chosen rule still gives a joint kernel matrix ~ identity (mean off-diagonal
row mass < ``SATURATION_MASS`` = 1e-3), dHSIC is within float noise of its trivial value 1/n;
:func:`dhsic` then warns (:class:`SaturationWarning`) and returns NaN and :func:`dhsic_test`
refuses (NaN statistic and p-value, the reason in ``details["refused"]``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg.independence._common import (
    DEFAULT_DTYPE,
    KERNELS,
    MEDIAN_SAMPLES,
    IndependenceTestResult,
    _as_variable,
    _check_choice,
    _check_median_samples,
    _check_n,
    _check_same_n,
    _is_constant,
    _progress,
    _require_memory,
    _rescale,
    _resolve_device,
    _rng,
    _warn_constant,
    parse_memory,
)
from vcreg.independence.hsic import _check_test_args, _gamma_pvalue, _perm_pvalue
from vcreg.independence.kernels import (
    BANDWIDTH_RULES,
    _check_bandwidth,
    _column_sigmas,
    _median_chunk,
    _sigma,
    _subsample_rows,
)


def _dhsic_inputs(
    variables: Any, dtype: torch.dtype, device: str | torch.device | None, scale_free: bool = True
) -> tuple[list[Tensor], Any]:
    """A (n, d) matrix (columns = variables) or a list/tuple of (n,) | (n, p_j) variables,
    each rescaled exactly if its values would over/underflow (see _rescale)."""
    if isinstance(variables, list | tuple):
        if len(variables) < 2:
            raise ValueError(f"dHSIC needs at least 2 variables, got {len(variables)}")
        dev = _resolve_device(variables[0], device)
        sc = "variable" if scale_free else None  # centred and scaled in float64 first
        ts = [
            _as_variable(v, f"variable {j}", dtype, dev, centre=True, scale=sc)
            for j, v in enumerate(variables)
        ]
        ts = [_rescale(t, f"variable {j}", scale_free, False)[0] for j, t in enumerate(ts)]
        _check_same_n(ts, [f"variable {j}" for j in range(len(ts))])
        return ts, variables[0]
    dev = _resolve_device(variables, device)
    z = _as_variable(
        variables, "Z", dtype, dev, centre=True, scale="column" if scale_free else None
    )
    z, _ = _rescale(z, "Z", scale_free, per_column=True)
    _check_n(z.shape[0], "Z")
    if z.shape[1] < 2:
        raise ValueError(f"dHSIC needs at least 2 variables (columns), got {z.shape[1]}")
    return [z[:, j : j + 1] for j in range(z.shape[1])], variables


DHSIC_BANDWIDTH_RULES = ("auto", "joint", *BANDWIDTH_RULES)
DHSIC_TEST_METHODS = ("auto", "permutation", "gamma")
AUTO_JOINT_MASS = 1.0
GAMMA_MAX_D = 3  # measured: at d = 8 (median bandwidths, n = 256) gamma rejects 11-18 % at 0.05
SATURATION_MASS = 1e-3


class SaturationWarning(RuntimeWarning):
    """A statistic is saturated (e.g. the joint kernel matrix is ~ identity): reported as NaN."""


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
    rule: str | float = "median"
    offdiag_mass: float = 0.0  # mean over rows of sum_{b != a} prod_j K_j[a, b]

    @property
    def value(self) -> float:
        return _combine(self.log_t1, self.log_t2, self.log_t3)

    @property
    def saturated(self) -> bool:
        return self.offdiag_mass < SATURATION_MASS


def _combine(l1: float, l2: float, l3: float) -> float:
    # t1 >= 1/n (diagonal terms), so factoring it out never underflows
    return math.exp(l1) * (1.0 + math.exp(l2 - l1) - math.exp(l3 - l1))


def _log_sum_matrix(
    xs: list[Tensor], parts: _DhsicParts, kernel: str, perms: Tensor | None = None
) -> Tensor:
    """(n, n) matrix sum_j log K_j[pi_j(a), pi_j(b)]; perms (d, n) holds pi_j in row j."""
    if kernel == "gaussian":
        x = parts.scaled
        if perms is not None:
            if x.shape[1] == len(parts.blocks):  # scalar variables: one gather
                x = torch.gather(x, 0, perms.T)
            else:
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


def _log_offdiag_mass(s: Tensor) -> float:
    """log of (1/n) sum_{a != b} exp(s[a, b]), the mean off-diagonal row mass."""
    n = s.shape[0]
    off = s.clone()
    off.diagonal().fill_(-math.inf)
    return float(torch.logsumexp(off.flatten(), 0)) - math.log(n)


def _variable_sigmas(
    xs: list[Tensor], kernel: str, rule: str | float, median_samples: int, budget: int
) -> list[float]:
    """Per-variable bandwidths; ``"joint"`` scales the median rule by sqrt(d) (laplacian: d)."""
    if rule == "joint":
        d = len(xs)
        factor = math.sqrt(d) if kernel == "gaussian" else float(d)
        sig = _variable_sigmas(xs, kernel, "median", median_samples, budget)
        return [s * factor for s in sig]
    base = rule
    if all(v.shape[1] == 1 for v in xs) and not isinstance(base, float):
        sig_t, const = _column_sigmas(
            torch.cat(xs, 1), base, median_samples, _median_chunk(budget, xs[0].element_size())
        )
        sigmas, constant = sig_t.tolist(), const.tolist()
    else:
        constant = [_is_constant(v) for v in xs]
        sigmas = [
            1.0 if c else _sigma(v, base, median_samples) for v, c in zip(xs, constant, strict=True)
        ]
    if any(constant):
        _warn_constant(f"variable {j}" for j, c in enumerate(constant) if c)
    return sigmas


def _marginal_stats(
    xs: list[Tensor], kernel: str, sigmas: list[float], gamma_stats: bool, budget: int
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """log row means (d, n), log means (d,) of each K_j, and the gamma moments if asked."""
    n, d = xs[0].shape[0], len(xs)
    dev, dt = xs[0].device, xs[0].dtype
    scalar = all(v.shape[1] == 1 for v in xs)
    log_rm = torch.empty(d, n, dtype=dt, device=dev)
    log_a = torch.empty(d, dtype=dt, device=dev)
    est_b = torch.empty(d, dtype=dt, device=dev) if gamma_stats else None
    est_c = torch.empty(d, dtype=dt, device=dev) if gamma_stats else None
    # chunks of <= 64 variables: bounded by max_memory, and cache-friendlier than one huge block
    # the joint (n, n) log-kernel is alive meanwhile
    chunk = max(1, min(64, budget // (3 * n * n * xs[0].element_size()) - 1))
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
    return log_rm, log_a, est_b, est_c


def _joint_parts(
    xs: list[Tensor], kernel: str, rule: str | float, sigmas: list[float]
) -> tuple[_DhsicParts, Tensor]:
    """Scaled data and the joint log-kernel matrix under one rule's bandwidths (no marginals)."""
    dev, dt = xs[0].device, xs[0].dtype
    blocks, pos = [], 0
    for v in xs:
        blocks.append((pos, pos + v.shape[1]))
        pos += v.shape[1]
    scaled = (
        torch.cat([v / (math.sqrt(2.0) * s) for v, s in zip(xs, sigmas, strict=True)], 1)
        if kernel == "gaussian"
        else torch.empty(0, dtype=dt, device=dev)
    )
    empty = torch.empty(0, dtype=dt, device=dev)
    parts = _DhsicParts(0.0, 0.0, 0.0, empty, empty, None, None, scaled, blocks, sigmas, rule)
    s = _log_sum_matrix(xs, parts, kernel)
    parts.offdiag_mass = math.exp(_log_offdiag_mass(s))
    return parts, s


def _dhsic_parts(
    xs: list[Tensor],
    kernel: str,
    bw: str | float,
    median_samples: int,
    gamma_stats: bool,
    budget: int,
) -> _DhsicParts:
    """Statistic parts under rule ``bw``; ``"auto"`` tries the median rule, then "joint"."""
    _check_dhsic_memory(xs, budget, "dHSIC")
    first = "median" if bw == "auto" else bw
    sigmas = _variable_sigmas(xs, kernel, first, median_samples, budget)
    parts, s = _joint_parts(xs, kernel, first, sigmas)
    if bw == "auto" and parts.offdiag_mass < AUTO_JOINT_MASS:
        d = len(xs)
        factor = math.sqrt(d) if kernel == "gaussian" else float(d)
        parts, s = _joint_parts(xs, kernel, "joint", [v * factor for v in sigmas])
    log_rm, log_a, est_b, est_c = _marginal_stats(xs, kernel, parts.sigmas, gamma_stats, budget)
    parts.log_rowmeans, parts.log_a, parts.est_b, parts.est_c = log_rm, log_a, est_b, est_c
    ln = math.log(xs[0].shape[0])
    parts.log_t1 = float(torch.logsumexp(s.flatten(), 0)) - 2 * ln
    parts.log_t2 = float(log_a.sum())
    parts.log_t3 = math.log(2.0) - ln + float(torch.logsumexp(log_rm.sum(0), 0))
    return parts


DHSIC_NN_BUFFERS = 4  # (n, n) matrices alive at the peak: the joint log-kernel, its
# replacement under the "auto" rule's second try, and logsumexp's temporaries


def _dhsic_peak(n: int, width: int, d: int, item: int, per_batch: int = 0) -> int:
    """Peak bytes of dHSIC on n rows of d variables (width scalar columns in all):
    DHSIC_NN_BUFFERS (n, n) matrices (or ``per_batch`` of them for a permutation batch) and
    the O(n d) inputs, scaled copies and log row means."""
    return item * (max(DHSIC_NN_BUFFERS, per_batch) * n * n + 4 * n * width + 2 * d * n)


def _check_dhsic_memory(xs: list[Tensor], budget: int, what: str, per_batch: int = 0) -> None:
    n, d = xs[0].shape[0], len(xs)
    width, item = sum(v.shape[1] for v in xs), xs[0].element_size()
    need = _dhsic_peak(n, width, d, item, per_batch)
    n_fit = int(math.isqrt(max(0, budget // (item * max(DHSIC_NN_BUFFERS, per_batch)))))
    _require_memory(
        need,
        budget,
        f"{what} at n = {n} ({max(DHSIC_NN_BUFFERS, per_batch)} kernel matrices of n x n)",
        f"raise max_memory or subsample the rows (about n <= {n_fit} fit this budget)",
    )


def _saturation_reason(parts: _DhsicParts, d: int, n: int) -> str:
    return (
        f"dHSIC is saturated: with bandwidth rule {parts.rule!r} the joint kernel matrix of "
        f"d = {d} variables is ~ the identity (mean off-diagonal row mass "
        f"{parts.offdiag_mass:.2g} < {SATURATION_MASS:g}), so the statistic is within float "
        f"noise of its trivial value 1/n = {1 / n:.3g} whatever the data. Use bandwidth='joint' "
        "(or 'auto'), a larger fixed bandwidth, or the pairwise / mutual_dependence measures"
    )


def _check_dhsic_kernel(kernel: str) -> str:
    kernel = _check_choice(kernel, "kernel", KERNELS)
    if kernel == "linear":
        raise ValueError(
            "dHSIC needs positive kernels with k(x, x) = 1 (its products are computed in log "
            "space): use kernel='gaussian' or 'laplacian'"
        )
    return kernel


def _check_dhsic_bandwidth(bw: Any, kernel: str) -> str | float:
    if isinstance(bw, str):
        return _check_choice(bw, "bandwidth rule", DHSIC_BANDWIDTH_RULES)
    return _check_bandwidth(bw, kernel)


def dhsic(
    variables: Any,
    kernel: str = "gaussian",
    bandwidth: str | float = "auto",
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
    For d = 2 with ``bandwidth="median"`` it equals the biased HSIC. ``bandwidth``: ``"auto"``
    (default), ``"joint"``, ``"median"``, ``"dhsic"`` or a number (module docs). Returns NaN
    with a :class:`SaturationWarning` when the statistic is saturated.
    """
    kernel = _check_dhsic_kernel(kernel)
    bw = _check_dhsic_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    xs, _ = _dhsic_inputs(variables, dtype, device, isinstance(bw, str))
    parts = _dhsic_parts(xs, kernel, bw, median_samples, False, parse_memory(max_memory))
    if parts.saturated:
        warnings.warn(_saturation_reason(parts, len(xs), xs[0].shape[0]), SaturationWarning, 2)
        return math.nan
    return parts.value


def _check_dhsic_method(method: str, n_permutations: int, rule: str | float) -> str:
    method = _check_choice(method, "test method", DHSIC_TEST_METHODS)
    if method == "gamma" and rule in ("joint", "auto"):
        raise ValueError(
            f"the gamma approximation is not calibrated with bandwidth={rule!r} (measured: it "
            "rejects most independent data sets at alpha = 0.05, see "
            "benchmarks/bench_calibration.py); use method='permutation' or 'auto'"
        )
    return _check_test_args("permutation" if method == "auto" else method, n_permutations)


def dhsic_test(
    variables: Any,
    method: str = "auto",
    n_permutations: int = 199,
    random_state: int | np.random.Generator | None = 0,
    *,
    kernel: str = "gaussian",
    bandwidth: str | float = "auto",
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "4GB",
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> IndependenceTestResult:
    """Test H0: the variables are jointly independent, with the dHSIC statistic.

    ``method="auto"`` (default) runs the permutation test -- exact at every d and n (with
    (1 + B) * alpha an integer, e.g. B = 199 at alpha = 0.05, its level is exactly alpha); the
    result's ``method`` and ``details["method_reason"]`` say so. ``"permutation"``: every
    variable but the first is permuted as a whole (all its columns with the same permutation),
    independently, ``n_permutations`` times from ``random_state``;
    p = (1 + #{null >= stat}) / (1 + B). ``"gamma"``: Gamma approximation of the null of
    n*dHSIC with the moment estimates of Pfister et al. (2018) (needs n >= 4d - 2); refused with
    the "joint"/"auto" bandwidths and for d > GAMMA_MAX_D = 3, where it is not calibrated. A saturated statistic (module
    docs) gives NaN statistic and p-value, a :class:`SaturationWarning` and
    ``details["refused"]``; ``details["bandwidth_rule"]`` is the rule used.
    """
    kernel = _check_dhsic_kernel(kernel)
    bw = _check_dhsic_bandwidth(bandwidth, kernel)
    median_samples = _check_median_samples(median_samples)
    chosen = _check_dhsic_method(method, n_permutations, bw)
    xs, _ = _dhsic_inputs(variables, dtype, device, isinstance(bw, str))
    n, d = xs[0].shape[0], len(xs)
    if chosen == "gamma" and d > GAMMA_MAX_D:
        raise ValueError(
            f"the gamma approximation is not calibrated for d = {d} > {GAMMA_MAX_D} variables "
            "(measured with median bandwidths at d = 8, n = 256: 17.5 % (Gaussian) and 11.5 % "
            "(Laplace) rejections of independent data at alpha = 0.05, "
            "benchmarks/bench_calibration.py); use method='permutation' or 'auto'"
        )
    budget = parse_memory(max_memory)
    if chosen == "permutation":
        _check_dhsic_memory(xs, budget, "the dHSIC permutation test", per_batch=3)
    parts = _dhsic_parts(xs, kernel, bw, median_samples, chosen == "gamma", budget)
    det: dict[str, Any] = {"n_variables": d, "bandwidth_rule": parts.rule}
    det["offdiag_mass"] = parts.offdiag_mass
    if method == "auto":
        det["method_reason"] = "auto: permutation test (exact level at any d; gamma is not)"
    if parts.saturated:
        reason = _saturation_reason(parts, d, n)
        warnings.warn(reason, SaturationWarning, 2)
        det["refused"] = reason
        return IndependenceTestResult(math.nan, math.nan, chosen, n, None, det)
    stat = parts.value
    if chosen == "gamma":
        p, g = _gamma_pvalue(n, stat, parts.log_a.exp(), parts.est_b, parts.est_c)
        return IndependenceTestResult(stat, p, "gamma", n, None, {**g, **det})
    null, ranked = _dhsic_null(
        xs, parts, kernel, n_permutations, _rng(random_state), progress, budget
    )
    det.update(null_mean=float(null.mean()), null_std=float(null.std()))
    return IndependenceTestResult(
        stat, _perm_pvalue(ranked, null), "permutation", n, n_permutations, det
    )


NULL_DTYPE = torch.float32  # the batched permutation null's Gram products (see _dhsic_null)


def _batched_null(parts: _DhsicParts, perms: Tensor, ln: float) -> np.ndarray:
    """dHSIC of a batch of permuted data sets, perms (B, d, n); Gaussian, scalar variables.
    The joint log-kernel -|x_a - x_b|^2 comes from one matrix product per data set in
    NULL_DTYPE (the scaled data are O(1), so float32 resolves it to ~1e-7 of its O(1) size)."""
    x = parts.scaled.to(NULL_DTYPE).T.expand(perms.shape[0], -1, -1)  # (B, d, n)
    xp = torch.gather(x, 2, perms).transpose(1, 2)  # (B, n, d)
    sq = xp.square().sum(2)
    s = torch.empty(xp.shape[0], xp.shape[1], xp.shape[1], dtype=xp.dtype, device=xp.device)
    for b in range(xp.shape[0]):  # a loop of mm beats bmm on CPU
        torch.mm(xp[b], xp[b].T, out=s[b])
    s = (s.mul_(2) - sq[:, :, None] - sq[:, None, :]).clamp_max_(0)
    s.diagonal(dim1=1, dim2=2).zero_()
    l1 = torch.logsumexp(s.flatten(1), 1).double() - 2 * ln
    lrm = torch.gather(parts.log_rowmeans.expand(perms.shape[0], -1, -1), 2, perms).sum(1)
    l3 = math.log(2.0) - ln + torch.logsumexp(lrm, 1)
    l1, l3 = l1.cpu().tolist(), l3.cpu().tolist()
    return np.array([_combine(a, parts.log_t2, c) for a, c in zip(l1, l3, strict=True)])


def _dhsic_null(
    xs: list[Tensor],
    parts: _DhsicParts,
    kernel: str,
    n_permutations: int,
    rng: np.random.Generator,
    progress: bool,
    budget: int,
) -> tuple[np.ndarray, float]:
    """dHSIC of ``n_permutations`` data sets with variables 2..d permuted independently, and
    the observed statistic computed the same way (the identity permutation), against which
    the null is ranked: the p-value stays exact whatever the rounding of that computation.

    The permutations are drawn one after another from ``rng`` whatever the batch size, so the
    null (hence the p-value) depends only on the seed.
    """
    n, d = xs[0].shape[0], len(xs)
    dev = xs[0].device
    ln = math.log(n)
    batched = kernel == "gaussian" and parts.scaled.shape[1] == d
    item = torch.empty((), dtype=NULL_DTYPE).element_size() if batched else 8
    # <= 64 MiB of (n, n) blocks and within the budget: ~3 (n, n) and 2 (n, d) per permutation
    batch = max(1, min(64, 2**26 // (item * n * n), budget // (item * (3 * n * n + 2 * n * d))))
    batch = batch if batched else 1
    base = np.tile(np.arange(n), (d, 1))
    null = []
    ranked = parts.value
    if batched:
        ranked = float(_batched_null(parts, torch.as_tensor(base[None], device=dev), ln)[0])
    bar = _progress(n_permutations, "dHSIC permutations", progress)
    for b0 in range(0, n_permutations, batch):
        pms = []
        for _ in range(min(batch, n_permutations - b0)):
            pm = base.copy()
            pm[1:] = rng.permuted(pm[1:], axis=1)
            pms.append(pm)
        perms = torch.as_tensor(np.stack(pms), device=dev)  # (B, d, n): row j holds pi_j
        if batched:
            null.append(_batched_null(parts, perms, ln))
        else:
            s = _log_sum_matrix(xs, parts, kernel, perms[0])
            l1 = float(torch.logsumexp(s.flatten(), 0)) - 2 * ln
            lrm = torch.gather(parts.log_rowmeans, 1, perms[0])
            l3 = math.log(2.0) - ln + float(torch.logsumexp(lrm.sum(0), 0))
            null.append(np.array([_combine(l1, parts.log_t2, l3)]))
        if bar is not None:
            bar.update(len(pms))
    if bar is not None:
        bar.close()
    return np.concatenate(null), ranked


def mutual_dependence(
    Z: Any,
    reduction: str = "mean",
    *,
    max_samples: int | None = 512,
    median_samples: int = MEDIAN_SAMPLES,
    max_memory: int | str = "1GB",
    dtype: torch.dtype = DEFAULT_DTYPE,
    device: str | torch.device | None = None,
) -> float | np.ndarray:
    """Mean one-vs-rest normalized HSIC of the scalar columns of Z (n, d), d >= 2.

    For every column j: normalized biased HSIC between Z_j (Gaussian kernel, median bandwidth)
    and the other d - 1 columns jointly (product Gaussian kernel with the "joint" rule:
    sigma_i = median_i * sqrt(d - 1), so the kernel of the rest never saturates). Near 0 when
    every feature is independent of the others -- its null level is an O(1/n) bias that grows
    with d (measured at n = 512: ~0.002 at d = 2, ~0.04 at d = 64, ~0.06 at d = 512), so compare
    values at equal n and d -- and 1 for a feature that is a function of the rest. Cost
    O(d n^2): at most ``max_samples`` rows are used (a seeded subsample, seed 0; None = all).
    ``reduction="mean"`` returns the mean over columns (a float), ``"none"`` the (d,) values.
    Constant columns are left out of the rest and get 0 (with a ConstantVariableWarning).
    """
    reduction = _check_choice(reduction, "reduction", ("mean", "none"))
    dev = _resolve_device(Z, device)
    z = _as_variable(Z, "Z", dtype, dev, centre=True, scale="column")
    median_samples = _check_median_samples(median_samples)
    n, d = z.shape
    _check_n(n, "Z")
    if d < 2:
        raise ValueError(f"mutual_dependence needs at least 2 columns (features), got {d}")
    if max_samples is not None:
        if int(max_samples) < 4:
            raise ValueError(f"max_samples must be >= 4 or None, got {max_samples!r}")
        z = _subsample_rows(z, int(max_samples))
    budget = parse_memory(max_memory)
    n = z.shape[0]
    _require_memory(
        z.element_size() * (5 * n * n + 3 * n * d),
        budget,
        f"mutual_dependence at n = {n} (5 kernel matrices of n x n)",
        "raise max_memory or lower max_samples",
    )
    sig, constant = _column_sigmas(
        z, "median", median_samples, _median_chunk(budget, z.element_size())
    )
    if bool(constant.any()):
        _warn_constant(f"column {i}" for i in torch.nonzero(constant).flatten().tolist())
    keep = torch.nonzero(~constant).flatten()
    out = torch.zeros(d, dtype=dtype, device=dev)
    if keep.numel() >= 2:
        u = z[:, keep] / sig[keep]
        out[keep] = _one_vs_rest(u, budget)
    vals = out.cpu().numpy()
    return float(vals.mean()) if reduction == "mean" else vals


def _centred_products(k: Tensor, ell: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """<HKH, HLH>, ||HKH||^2, ||HLH||^2 of batches (c, n, n) from sums and row sums only."""
    n = k.shape[-1]
    rk, rl = k.sum(-1), ell.sum(-1)
    sk, sl = rk.sum(-1), rl.sum(-1)
    cross = (k * ell).sum((1, 2)) - 2 / n * (rk * rl).sum(-1) + sk * sl / n**2
    kk = k.square().sum((1, 2)) - 2 / n * rk.square().sum(-1) + sk.square() / n**2
    ll = ell.square().sum((1, 2)) - 2 / n * rl.square().sum(-1) + sl.square() / n**2
    return cross, kk, ll


def _one_vs_rest(u: Tensor, budget: int) -> Tensor:
    """nHSIC(u_j, u_{-j}) for median-standardised columns u (n, d)."""
    n, d = u.shape
    c = 0.5 / (d - 1)
    # squared distance of all columns; the rest's is total - own, own = (u_aj - u_bj)^2
    total = torch.cdist(u, u, compute_mode="donot_use_mm_for_euclid_dist").square_()
    out = torch.empty(d, dtype=u.dtype, device=u.device)
    chunk = max(1, min(64, budget // (4 * n * n * u.element_size()) - 1))
    for c0 in range(0, d, chunk):
        x = u[:, c0 : c0 + chunk].T  # (c, n)
        own = (x[:, :, None] - x[:, None, :]).square_()
        ell = torch.sub(total, own).clamp_min_(0).mul_(-c).exp_()
        k = own.mul_(-0.5).exp_()
        cross, kk, ll = _centred_products(k, ell)
        den = (kk.clamp_min(0) * ll.clamp_min(0)).sqrt()
        out[c0 : c0 + chunk] = torch.where(den > 0, cross / den.clamp_min(1e-300), 0.0)
        del own, ell, k
    return out
