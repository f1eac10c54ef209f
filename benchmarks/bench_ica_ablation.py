"""Ablations of VCRegICA's small-sample rules, on the benchmark's problems (median Amari).

    .venv/bin/python benchmarks/bench_ica_ablation.py --d 10 --families uniform mixed laplace
    .venv/bin/python benchmarks/bench_ica_ablation.py --d 20 --families laplace uniform

Variants (each a change of the resolved ``SolverConfig`` of the default estimator):
``default``; ``no-holdout`` (the last polish always runs to ``tol``); ``lean-sweeps`` (the Jacobi
sweeps with 16 features of one bandwidth instead of the rich contrast's features);
``holdout-fit=F`` (the hold-out polish fits a share F of the samples instead of
``solver.HOLDOUT_FIT``). Problems: ``make_ica_problem(family, n, d, cond, seed)`` for both
conditionings and ``--seeds`` seeds, ``VCRegICA(random_state=seed)``; single-threaded.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vcreg.ica import VCRegICA, amari_distance, make_ica_problem, solver  # noqa: E402


class _Variant(VCRegICA):
    variant = "default"

    def _resolve_params(self, n_samples, n_features):
        k, cfg = super()._resolve_params(n_samples, n_features)
        if self.variant == "no-holdout":
            cfg = dataclasses.replace(cfg, holdout_check=False)
        elif self.variant == "lean-sweeps":
            cfg = dataclasses.replace(cfg, sweep_width=16, sweep_scales=(1.0,))
        return k, cfg


def run(variant: str, family: str, d: int, n: int, seeds: int) -> tuple[np.ndarray, int, float]:
    _Variant.variant = variant
    fit_share = solver.HOLDOUT_FIT
    if variant.startswith("holdout-fit="):
        solver.HOLDOUT_FIT = float(variant.split("=")[1])
    amari, polished, t0 = [], 0, time.process_time()
    try:
        for seed in range(seeds):
            for cond in ("well", "ill"):
                _, A, X = make_ica_problem(family, n, d, cond, random_state=seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = _Variant(random_state=seed).fit(X)
                amari.append(amari_distance(est.components_, A))
                polished += est.polished_
    finally:
        solver.HOLDOUT_FIT = fit_share
    return np.asarray(amari), polished, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=10)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--families", nargs="+", default=["uniform", "mixed", "laplace"])
    ap.add_argument(
        "--variants", nargs="+", default=["default", "no-holdout", "lean-sweeps", "holdout-fit=0.5"]
    )
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"d = {a.d}, n = {a.n}, {2 * a.seeds} problems per family")
    print("| variant | family | median Amari | max | fits > 0.3 | polish kept | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for v in a.variants:
        for fam in a.families:
            r, pol, sec = run(v, fam, a.d, a.n, a.seeds)
            print(
                f"| {v} | {fam} | {np.median(r):.4f} | {r.max():.3f} | {(r > 0.3).sum()} "
                f"| {pol}/{r.size} | {sec:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
