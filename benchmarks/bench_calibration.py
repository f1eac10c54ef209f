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
The pairwise rows apply Holm / BH over all d(d-1)/2 pairs of i.i.d. noise and count data sets
with any significant pair (the family-wise error rate).
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
    z = 1.96
    p = k / m
    c = (p + z * z / (2 * m)) / (1 + z * z / m)
    h = z * math.sqrt(p * (1 - p) / m + z * z / (4 * m * m)) / (1 + z * z / m)
    return max(0.0, c - h), min(1.0, c + h)


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


def pairwise_row(n, d, seeds, correction, base_seed) -> tuple[int, int, str]:
    rej = 0
    for s in range(seeds):
        z = np.random.default_rng(base_seed + s).standard_normal((n, d))
        res = ind.pairwise_hsic_test(z, correction=correction, alpha=ALPHA)
        rej += res["n_significant"] > 0
    return rej, seeds, "median"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=200, help="data sets per null row")
    ap.add_argument("--power-seeds", type=int, default=50, help="data sets per power row")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip-pairwise", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ns, ps = (20, 10) if a.quick else (a.seeds, a.power_seeds)
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
            max(10, ns // 5),
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
    for corr in ("holm", "fdr_bh"):
        t0 = time.perf_counter()
        k, m, _ = pairwise_row(2000, 256, max(5, ps // 2), corr, 900_000)
        lo, hi = wilson(k, m)
        print(
            f"| pairwise HSIC gamma + {corr}: any pair significant | gaussian | 2000 | 256 | "
            f"median | {k}/{m} | {k / m:.3f} [{lo:.3f}, {hi:.3f}] | "
            f"{time.perf_counter() - t0:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
