"""Calibration of vcreg's independence tests: type-I rates and powers measured over seeds.

    .venv/bin/python benchmarks/bench_calibration.py            # the table in the docs
    .venv/bin/python benchmarks/bench_calibration.py --quick    # fewer seeds, a smoke run

Each row runs one test on ``seeds`` independently generated data sets and reports the fraction
with p <= alpha = 0.05, with a Wilson 95 % interval. Null rows (independent Gaussian or Laplace
variables) should sit at 0.05 (the tests' acceptance band is [0.02, 0.09]); power rows are
alternatives: a weak common factor Z = sqrt(1 - rho) e + sqrt(rho) f (pairwise correlation
rho = 0.1) and a shared random scale Z_j = s e_j (uncorrelated, dependent; log s ~ N(0, 0.5^2)).
The "gamma, joint-width" rows give the gamma approximation the joint bandwidth as a fixed number
(median of a standard Gaussian's distances x sqrt(d)), where ``dhsic_test`` itself refuses it.
The pairwise rows apply Holm over all d(d-1)/2 = 32,640 pairs of 2000 x 256 i.i.d. noise and
count data sets with any significant pair (the family-wise error rate), for the spectral
(default) and the gamma null, with the pooled numbers of pair p-values below 1e-3 ... 1.5e-6
(the Bonferroni threshold 0.05 / 32,640) against their expectation under a calibrated null.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

from vcreg import independence as ind  # noqa: E402

ALPHA = 0.05
MEDIAN_STD_GAUSS = 0.9539  # median |e - e'| for e, e' ~ N(0, 1): sqrt(2) * 0.6745


def data(kind: str, n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return rng.standard_normal((n, d))
    if kind == "laplace":
        return rng.laplace(size=(n, d))
    if kind == "factor":  # pairwise correlation 0.1
        return math.sqrt(0.9) * rng.standard_normal((n, d)) + math.sqrt(0.1) * rng.standard_normal(
            (n, 1)
        )
    if kind == "scale":  # Z_j = s e_j: uncorrelated, jointly dependent
        return np.exp(0.5 * rng.standard_normal((n, 1))) * rng.standard_normal((n, d))
    raise ValueError(kind)


def wilson(k: int, m: int) -> tuple[float, float]:
    """Wilson 95 % interval of k successes in m trials (scipy's)."""
    ci = stats.binomtest(k, m).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def dhsic_row(kind, n, d, seeds, method, bandwidth, perms, base_seed) -> tuple[int, int, str]:
    rej, rules = 0, set()
    for s in range(seeds):
        rng = np.random.default_rng(base_seed + s)
        z = data(kind, n, d, rng)
        bw = MEDIAN_STD_GAUSS * math.sqrt(d) if bandwidth == "joint-fixed" else bandwidth
        r = ind.dhsic_test(z, method=method, n_permutations=perms, random_state=s, bandwidth=bw)
        rules.add(str(r.details["bandwidth_rule"]))
        rej += r.p_value <= ALPHA
    return rej, seeds, "/".join(sorted(rules))


def pairwise_rows(n, d, seeds, base_seed) -> list[str]:
    """FWER after Holm and pooled tail counts, spectral vs gamma nulls, on i.i.d. noise."""
    thresholds = (1e-3, 1e-4, 1e-5, 1.5e-6)
    out = []
    for null in ("spectral", "gamma"):
        t0 = time.perf_counter()
        any_sig, counts, m = 0, np.zeros(len(thresholds), int), 0
        for s in range(seeds):
            z = np.random.default_rng(base_seed + s).standard_normal((n, d))
            res = ind.pairwise_hsic_test(z, correction="holm", method="lowrank", null=null)
            any_sig += res["n_significant"] > 0
            p = res["p_values"][np.triu_indices(d, 1)]
            counts += [(p < t).sum() for t in thresholds]
            m += p.size
        lo, hi = wilson(any_sig, seeds)
        tail = ", ".join(
            f"p<{t:g}: {c} (exp. {t * m:.1f})" for t, c in zip(thresholds, counts, strict=True)
        )
        out.append(
            f"| pairwise HSIC, {null} null + Holm: any pair significant | gaussian | {n} | {d} | "
            f"median | {any_sig}/{seeds} | {any_sig / seeds:.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{time.perf_counter() - t0:.0f} |"
        )
        out.append(f"|   pooled tail, {null} null, {m} pair tests | {tail} |||||||")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200, help="data sets per null row")
    ap.add_argument("--power-seeds", type=int, default=50, help="data sets per power row")
    ap.add_argument("--pairwise-seeds", type=int, default=20, help="noise sets, pairwise rows")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-pairwise", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ns, ps = (20, 10) if a.quick else (a.seeds, a.power_seeds)
    if a.quick:
        a.pairwise_seeds = 3
    # (label, kind, n, d, seeds, method, bandwidth, permutations)
    rows = [
        *(
            (f"permutation (auto), B=19, {k}", k, 256, d, ns, "auto", "auto", 19)
            for d in (2, 8, 64)
            for k in ("gaussian", "laplace")
        ),
        (
            "permutation (auto), B=19, gaussian",
            "gaussian",
            512,
            512,
            max(10, ns // 10),
            "auto",
            "auto",
            19,
        ),
        *(
            (f"gamma, median, {k}", k, 256, d, ns, "gamma", "median", 1)
            for d in (2, 8)
            for k in ("gaussian", "laplace")
        ),
        ("gamma, joint-width (fixed)", "gaussian", 256, 64, ns, "gamma", "joint-fixed", 1),
        (
            "power: permutation (auto), B=99, factor rho=0.1",
            "factor",
            512,
            64,
            ps,
            "auto",
            "auto",
            99,
        ),
        ("power: permutation (auto), B=99, shared scale", "scale", 512, 64, ps, "auto", "auto", 99),
        ("power: permutation (auto), B=99, shared scale", "scale", 256, 8, ps, "auto", "auto", 99),
    ]
    print("| test | data | n | d | rule used | rejected at α=0.05 | rate [95 % CI] | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for i, (label, kind, n, d, seeds, method, bw, perms) in enumerate(rows):
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ind.SaturationWarning)
            k, m, rule = dhsic_row(kind, n, d, seeds, method, bw, perms, 10_000 * (i + 1))
        lo, hi = wilson(k, m)
        print(
            f"| dHSIC {label} | {kind} | {n} | {d} | {rule} | {k}/{m} | {k / m:.3f} "
            f"[{lo:.3f}, {hi:.3f}] | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
    if a.skip_pairwise:
        return
    for line in pairwise_rows(2000, 256, a.pairwise_seeds, 900_000):
        print(line, flush=True)


if __name__ == "__main__":
    main()
