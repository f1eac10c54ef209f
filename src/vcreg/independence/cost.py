"""What measuring will cost, before paying it: seconds per step and peak memory of the pairwise
step, for :func:`vcreg.independence.measure_embeddings` and ``vcreg measure``.

Every step that takes time has a model here, so the estimate printed before a run covers the
whole run. Each model counts the step's operations from (n, d) and divides by a rate measured
on the 2-core CPU machine the project is developed on (``benchmarks/bench_measure_estimate.py``
prints estimate vs measured per step; the rates below are from its runs). The estimate is for
an otherwise idle machine of that class: a shared machine is slower by its load, a GPU faster.

Steps (the keys of ``steps`` here and of ``cost.steps_seconds`` in the report):

- ``pairwise``: all-pairs HSIC (:func:`measure_cost`) and the pair p-values (each column's
  kernel spectrum to rank <= 128, then a saddlepoint tail per pair).
- ``lowrank_accuracy``: with lowrank, the pairs of 8 features recomputed exactly.
- ``dhsic``: the statistic (one (n, n) kernel per variable) and, with the permutation test,
  ``n_permutations`` permuted statistics (a float64 (n, d) x (d, n) product each).
- ``health``: dead units, mutual dependence (<= 512 rows, one (m, m) kernel per feature),
  effective rank (an SVD), feature std.
- ``labels``: feature-label dependence (one (n, d) x (n, classes) product; negligible).
- ``write`` (``vcreg measure``): the d x d matrices as ``.npy`` and the heatmap.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcreg.independence._common import MEDIAN_SAMPLES, parse_memory

__all__ = [
    "AUTO_EXACT_LIMIT_S",
    "STEP_NAMES",
    "exact_pair_count",
    "exact_pairwise_seconds",
    "measure_cost",
    "measure_plan",
    "resolve_method",
    "write_seconds",
]

EXACT_FLOPS = 1e10  # conservative float64 rate of the exact product on a shared 2-core CPU
BUILD_SECONDS = 1e-7  # per kernel entry (exp + centring of one column's triangle)
AUTO_EXACT_LIMIT_S = 60.0
LOWRANK_FLOPS = 2e10  # conservative float32 Gram rate on a shared 2-core CPU (bench: 33-48)
ASSUMED_RANK = 16  # per-column rank at rank_tol 1e-2 (measured 11.5 on ReLU features, max 16)
CUDA_SPEEDUP = 20  # assumed for the torch steps on a GPU (the p-value tails stay on the CPU)

# Rates of the other steps, fitted to CPU seconds (all threads) measured on the 2-core machine
# at n = 256..2048, d = 64..512 (dHSIC statistic and permutations, mutual dependence, p-values):
# CPU seconds do not grow with other jobs' load the way wall time does, and on 2 idle cores the
# wall time is at most that. bench_measure_estimate.py prints estimate vs measured per step.
PERM_MM_FLOPS = 2.8e10  # (n, d) x (d, n) products of the dHSIC permutations (2 n^2 d flops)
PERM_ENTRY_SECONDS = 6.5e-9  # per (n, n) entry of a permuted joint kernel (exp, logsumexp)
PERM_ND_SECONDS = 5e-9  # per (n, d) entry of a permutation (drawing it, gathering rows)
MARGINAL_SECONDS = 1.7e-8  # per variable and (n, n) entry of the dHSIC statistic's kernels
MEDIAN_PAIR_SECONDS = 3.5e-8  # per variable and pair of the <= 256 rows of a median bandwidth
PAIR_PVALUE_SECONDS = 6e-6  # saddlepoint tail of one pair (NumPy, 64 eigenvalue products)
COLUMN_NULL_SECONDS = 9.5e-6  # per row and column: its kernel spectrum and eigenvector shapes
EXACT_PAIR_SECONDS = 1e-4  # one pair's exact (overlap) null, measured at n = 1000 and 2048
MUTUAL_SECONDS = 5.5e-8  # per feature and (m, m) entry of mutual dependence (m <= 512 rows)
SVD_FLOPS = 5e9  # float64 singular values (effective rank)
WRITE_SECONDS = 2e-7  # per entry of the d x d results (3 .npy files and the heatmap PNG)
WRITE_BASE_SECONDS = 1.0  # importing matplotlib, drawing an empty figure, publishing the folder
MUTUAL_ROWS = 512  # rows of mutual dependence (measurement.MUTUAL_SAMPLES)

STEP_NAMES = {
    "encode": "encoding the data",
    "pairwise": "pairwise HSIC + p-values",
    "lowrank_accuracy": "low-rank accuracy check",
    "dhsic": "dHSIC test",
    "health": "dead units, mutual dependence, rank",
    "labels": "feature-label dependence",
    "write": "writing results",
}


def exact_pairwise_seconds(
    n: int, d: int, max_memory: int | str = "4GB", cuda: bool = False
) -> float:
    """Rough wall time of exact ``pairwise_hsic`` on (n, d): 2 T d^2 flops for T = n(n-1)/2
    kernel entries per column (the batched product) plus building the T d kernel entries, x3
    when the (T, d) stack exceeds ``max_memory`` and column blocks are recomputed, /20 on CUDA.
    Conservative for a shared machine: bench_independence.py measured 12 s at n = 1024,
    d = 512 on an idle 2-core CPU and 46 s at load 13; the estimate is 54 s."""
    t = n * (n - 1) / 2
    sec = 2 * t * d * d / EXACT_FLOPS + t * d * BUILD_SECONDS
    if t * d * 8 > parse_memory(max_memory):
        sec *= 3
    return sec / CUDA_SPEEDUP if cuda else sec


def resolve_method(method: str, n: int, d: int, budget: int, cuda: bool) -> tuple[str, str]:
    """``method`` with "auto" resolved (lowrank when exact would take more than
    AUTO_EXACT_LIMIT_S) and the reason in words."""
    if method != "auto":
        return method, ""
    sec = exact_pairwise_seconds(n, d, budget, cuda)
    if sec > AUTO_EXACT_LIMIT_S:
        return "lowrank", (
            f"method auto: exact pairwise HSIC would take ~{sec:.0f} s (estimate) > "
            f"{AUTO_EXACT_LIMIT_S:.0f} s, so lowrank (pivoted Cholesky) is used"
        )
    return "exact", f"method auto: exact pairwise HSIC (estimated ~{max(sec, 0.1):.1f} s)"


def measure_cost(
    n: int, d: int, method: str, max_memory: int | str = "4GB", cuda: bool = False,
    world: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Estimate of the pairwise HSIC step before paying it: ``{"method", "seconds",
    "peak_bytes", "flops", "assumptions"}``. Exact: :func:`exact_pairwise_seconds`, peak
    min(T d, budget) float64. Lowrank: a Gram of D = d r features (r = ASSUMED_RANK, the real
    rank is known only after the factorisation) costs n D^2 flops (upper triangle) at
    LOWRANK_FLOPS, sharded over ``world`` ranks; peak = the float32 features twice + (d, d)
    float64 results. Per rank."""
    budget = parse_memory(max_memory)
    if method == "exact":
        t = n * (n - 1) / 2
        sec = exact_pairwise_seconds(n, d, budget, cuda) / world
        peak = min(t * d * 8 + 16 * t, budget) + 3 * d * d * 8
        flops, note = 2 * t * d * d, "float64 batched product of the centred kernel triangles"
    else:
        big_d = d * ASSUMED_RANK  # features in all
        flops = n * float(big_d) ** 2 + 4 * n * d * ASSUMED_RANK**2
        sec = flops / LOWRANK_FLOPS / world / (CUDA_SPEEDUP if cuda else 1)
        peak = min(2 * n * big_d * 4 + 3 * d * d * 8 + n * d * 8, budget)
        note = f"assumes rank {ASSUMED_RANK} per feature (pivoted Cholesky, rank_tol 1e-2)"
    return {
        "method": method,
        "seconds": float(sec),
        "peak_bytes": int(peak),
        "flops": float(flops),
        "world_size": int(world),
        "assumptions": note,
    }


def exact_pair_count(rows_off_mode: np.ndarray, n: int) -> int:
    """Pairs likely to need the pair test's exact null (or to be 'not tested'): both columns
    with a mode on at least half of the rows (:func:`vcreg.independence.nulls.choose_null`'s
    condition) and at least one active on at most a tenth of them, where the spectral null's
    tail error is large (sparse ReLU units, rare binary values). An estimate from the marginals
    only: the test decides per pair from the measured error."""
    k = np.asarray(rows_off_mode)
    moded, sparse = int((2 * k <= n).sum()), int((10 * k <= n).sum())
    return moded * (moded - 1) // 2 - (moded - sparse) * (moded - sparse - 1) // 2


def _pvalue_seconds(n: int, d: int, exact_pairs: int) -> float:
    pairs = d * (d - 1) / 2
    exact = min(exact_pairs, pairs)
    return (
        (pairs - exact) * PAIR_PVALUE_SECONDS
        + exact * EXACT_PAIR_SECONDS
        + (n * d * COLUMN_NULL_SECONDS)
    )


def _dhsic_seconds(n: int, d: int, test: str, n_permutations: int, cuda: bool) -> float:
    m = min(n, MEDIAN_SAMPLES)
    stat = d * (n * n * MARGINAL_SECONDS + m * (m - 1) / 2 * MEDIAN_PAIR_SECONDS)  # bandwidths
    perms = n_permutations if test in ("auto", "permutation") else 0
    one = 2.0 * n * n * d / PERM_MM_FLOPS + n * n * PERM_ENTRY_SECONDS + n * d * PERM_ND_SECONDS
    return (stat + perms * one) / (CUDA_SPEEDUP if cuda else 1)


def _health_seconds(n: int, d: int, cuda: bool) -> float:
    m = min(n, MUTUAL_ROWS)
    torch_part = d * m * m * MUTUAL_SECONDS + 4.0 * n * d * min(n, d) / SVD_FLOPS
    return torch_part / (CUDA_SPEEDUP if cuda else 1) + 1e-7 * n * d  # + sorting (NumPy)


def measure_plan(
    n: int, d: int, *, method: str = "auto", with_dhsic: bool = True, test: str = "auto",
    n_permutations: int = 199, estimator: str = "biased", labels: bool = False,
    max_memory: int | str = "4GB", cuda: bool = False, world: int = 1, write: bool = False,
    exact_pairs: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Seconds of every step of measuring n rows of d (non-constant) features with these
    options (module docstring), before any work. ``exact_pairs``: pairs expected to take the
    exact null (:func:`exact_pair_count`; 0 when the data are not known yet). Returns
    ``{"method" (resolved), "n", "d", "steps":
    {step: seconds}, "seconds" (their sum), "peak_bytes" and "assumptions" (of the pairwise
    step, :func:`measure_cost`), "pairwise": measure_cost(...)}``."""
    budget = parse_memory(max_memory)
    resolved, _ = resolve_method(method, n, d, budget, cuda)
    pair = measure_cost(n, d, resolved, budget, cuda, world)
    hsic_s = pair["seconds"] * (2 if estimator == "unbiased" else 1)
    steps = {"pairwise": hsic_s + _pvalue_seconds(n, d, exact_pairs)}
    if resolved == "lowrank":
        steps["lowrank_accuracy"] = exact_pairwise_seconds(n, min(d, 8), budget, cuda)
    if with_dhsic:
        steps["dhsic"] = _dhsic_seconds(n, d, test, n_permutations, cuda)
    steps["health"] = _health_seconds(n, d, cuda)
    if labels:
        steps["labels"] = 4.0 * n * d * 16 / PERM_MM_FLOPS
    if write:
        steps["write"] = write_seconds(d)
    return {
        "method": resolved,
        "n": int(n),
        "d": int(d),
        "steps": {k: float(v) for k, v in steps.items()},
        "seconds": float(sum(steps.values())),
        "peak_bytes": pair["peak_bytes"],
        "world_size": int(world),
        "assumptions": pair["assumptions"],
        "pairwise": pair,
    }


def write_seconds(d: int) -> float:
    """``vcreg measure`` writing its d x d results (3 ``.npy`` files and the heatmap PNG)."""
    return WRITE_BASE_SECONDS + 4.0 * d * d * WRITE_SECONDS
