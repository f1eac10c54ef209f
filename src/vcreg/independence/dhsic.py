"""dHSIC (joint independence of d variables, Pfister et al. 2018) and its tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
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
    _check_n,
    _check_same_n,
    _is_constant,
    _progress,
    _resolve_device,
    _rng,
    _warn_constant,
    parse_memory,
)
from vcreg.independence.hsic import _check_test_args, _gamma_pvalue, _perm_pvalue
from vcreg.independence.kernels import _check_bandwidth, _column_sigmas, _sigma


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
