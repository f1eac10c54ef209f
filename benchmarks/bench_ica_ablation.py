"""Ablations of VCRegICA's defaults, on the benchmark's problems (median Amari).

    .venv/bin/python benchmarks/bench_ica_ablation.py --d 10 --families uniform mixed laplace
    .venv/bin/python benchmarks/bench_ica_ablation.py --d 20 --seeds 1 --families laplace uniform

Variants (each a change of the resolved ``SolverConfig`` of the default estimator, or of one
solver function): ``default``; ``kernel`` (``scale="kernel"``: kernel-amplitude features, the
method before standardized features); ``no-floor`` (standardized features without the variance
floor of the few-samples regime); ``floor-always`` (that floor with many samples too);
``floor=L`` (the floor λ = L instead of the default where it applies);
``wide-scales`` (bandwidth multipliers ×(0.5, 1, 2, 4) for unfloored standardized features
instead of ×(0.25, 0.5, 1, 2)); ``polish`` (with few samples per parameter, the sweeps followed
by the quasi-Newton polish with hold-out early stopping, the default before the sweeps-only
rule); ``parabola`` (the sweeps' angle refined by the parabola through the best grid angle and
its neighbours instead of the trigonometric interpolant); ``restarts=3`` (``n_restarts=3``: the
lowest final contrast of three random starts); ``no-step-stop`` (the polish
stops on the contrast's decrease only, not also on a rotation step ≤ 10·tol);
``angle-tol=X`` (``angle_tol=X``). Besides the accuracy, each row counts the cost of a fit in
machine-independent units (Jacobi sweeps, evaluations of the full contrast with its gradient,
hold-out evaluations included) next to its CPU seconds. Problems:
``make_ica_problem(family, n, d, cond, seed)`` for both conditionings and ``--seeds`` seeds,
``VCRegICA(random_state=seed)``; single-threaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vcreg.ica import VCRegICA, amari_distance, estimator, make_ica_problem, solver  # noqa: E402

VARIANTS = (
    "default",
    "kernel",
    "no-floor",
    "floor-always",
    "wide-scales",
    "polish",
    "parabola",
    "restarts=3",
    "no-step-stop",
)


class _Variant(VCRegICA):
    variant = "default"

    def _resolve_params(self, n_samples, n_features):
        k, cfg = super()._resolve_params(n_samples, n_features)
        v, replace = self.variant, dataclasses.replace
        if v == "no-floor":
            cfg = replace(cfg, variance_floor=0.0)
        elif v == "floor-always":
            cfg = replace(cfg, variance_floor=estimator._FEW_SAMPLES_VARIANCE_FLOOR)
        elif v.startswith("floor=") and cfg.variance_floor > 0:
            cfg = replace(cfg, variance_floor=float(v.split("=")[1]))
        elif v == "wide-scales" and cfg.standardize and cfg.variance_floor == 0.0:
            if len(cfg.kernel_scales) > 1:
                wide = (0.5, 1.0, 2.0, 4.0)
                cfg = replace(cfg, kernel_scales=wide, sweep_scales=wide)
        elif v == "polish" and cfg.optimizer == "jacobi":
            cfg = replace(cfg, optimizer="jacobi+lbfgs", holdout_check=True)
        return k, cfg


def _refine_parabola(cost: torch.Tensor, step: float) -> tuple[float, float]:
    """The previous angle refinement: parabola through the best grid angle and its (cyclic)
    neighbours."""
    T = cost.shape[0]
    b = int(torch.argmin(cost))
    lo, mid, hi = (float(cost[(b + d) % T]) for d in (-1, 0, 1))
    curv = lo - 2 * mid + hi
    shift = min(max(0.5 * (lo - hi) / curv, -0.5), 0.5) if curv > 0 else 0.0
    theta = (b + shift) * step
    return (theta - math.pi / 2 if theta > math.pi / 4 else theta), float(cost[0]) - mid


def _counting(contrast_fn, calls: list[int]):
    """``solver._contrast_fn`` whose functions count their evaluations in ``calls[0]``."""

    def make(*args, **kwargs):
        f = contrast_fn(*args, **kwargs)

        def counted(theta):
            calls[0] += 1
            return f(theta)

        return counted

    return make


def run(variant: str, family: str, d: int, n: int, seeds: range) -> tuple[np.ndarray, dict]:
    """Amari distances of the variant's fits, and per-fit means of the polish's kept share,
    sweeps, full contrast evaluations (value and gradient; machine-independent cost) and CPU s."""
    _Variant.variant = variant
    refine, step_tol = solver._refine, solver.STEP_TOL_PER_TOL
    contrast_fn, calls = solver._contrast_fn, [0]
    solver._contrast_fn = _counting(contrast_fn, calls)
    if variant == "parabola":
        solver._refine = _refine_parabola
    if variant == "no-step-stop":
        solver.STEP_TOL_PER_TOL = 0.0
    kwargs = {"scale": "kernel"} if variant == "kernel" else {}
    if variant == "restarts=3":
        kwargs = {"n_restarts": 3}
    if variant.startswith("angle-tol="):
        kwargs = {"angle_tol": float(variant.split("=")[1])}
    amari, polished, sweeps, t0 = [], 0, 0, time.process_time()
    try:
        for seed in seeds:
            for cond in ("well", "ill"):
                _, A, X = make_ica_problem(family, n, d, cond, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = _Variant(random_state=seed, **kwargs).fit(X)
                amari.append(amari_distance(est.components_, A))
                polished += est.polished_
                sweeps += est.n_sweeps_
    finally:
        solver._refine = refine
        solver.STEP_TOL_PER_TOL, solver._contrast_fn = step_tol, contrast_fn
    fits = len(amari)
    cost = dict(
        polished=polished,
        sweeps=sweeps / fits,
        evaluations=calls[0] / fits,
        cpu=(time.process_time() - t0) / fits,
    )
    return np.asarray(amari), cost


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed … +seeds−1")
    ap.add_argument("--families", nargs="+", default=["uniform", "mixed", "laplace"])
    ap.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), help=f"{VARIANTS}, floor=L, angle-tol=X"
    )
    a = ap.parse_args()
    unknown = [
        v for v in a.variants if v not in VARIANTS and not v.startswith(("floor=", "angle-tol="))
    ]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {VARIANTS}, floor=L or angle-tol=X")
    torch.set_num_threads(1)
    with warnings.catch_warnings():  # warm-up fit: torch's first calls are not the method's cost
        warnings.simplefilter("ignore")
        VCRegICA(random_state=0).fit(make_ica_problem("laplace", 200, 2, random_state=0)[2])
    print(
        f"d = {a.d}, n = {a.n}, seeds {a.first_seed}–{a.first_seed + a.seeds - 1}: {2 * a.seeds} problems per family"
    )
    print(
        "| variant | family | median Amari | max | fits > 0.3 | polish kept "
        "| sweeps / fit | contrast evaluations / fit | CPU s / fit |"
    )
    print("|---" * 9 + "|")
    for v in a.variants:
        for fam in a.families:
            seeds = range(a.first_seed, a.first_seed + a.seeds)
            r, c = run(v, fam, a.d, a.n, seeds)
            print(
                f"| {v} | {fam} | {np.median(r):.4f} | {r.max():.3f} | {(r > 0.3).sum()} "
                f"| {c['polished']}/{r.size} | {c['sweeps']:.1f} | {c['evaluations']:.1f} "
                f"| {c['cpu']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
