"""VCRegICA on a source bank: accuracy vs FastICA and Picard, and its failure warning (issue 23).

Each run draws one problem: a family of :data:`vcreg.ica.problems.BANK_FAMILIES` (sub-Gaussian
uniform / binary / sines, super-Gaussian Laplace / Student-t 3-10 dof / sparse, mixed,
near-Gaussian), a number of sources ``d`` from ``D_GRID`` (2 ... 32) and of samples ``n`` from
``N_GRID`` (500 ... 20,000), both uniformly on those log-spaced grids, and a well- (cond 2) or
ill-conditioned (cond 1000) mixing, all from ``(split seed, run, family)``. The splits use
disjoint seeds: ``dev`` (seeds 10,000 + i) calibrated the thresholds of
:mod:`vcreg.ica.diagnostics`, ``test`` (seeds i) is the held-out evaluation.

Reported per family: median and 90th-percentile classic Amari distance of VCRegICA (defaults),
FastICA (logcosh) and Picard (``ortho=True``, i.e. Picard-O, extended: handles sub-Gaussian
sources); the warning rate of VCRegICA's quality warning on bad runs (Amari > 0.1; want 100 %)
and on good ones (Amari <= 0.1; want < 5 %); the median-Amari ratio to FastICA where n >= 1000
and d <= 20 (target <= 1.25x). ``--timing`` adds the wall time at d = 10, n = 10,000 (Laplace and
uniform, 3 seeds), VCRegICA / FastICA measured in the same run.

    nice -n 5 python benchmarks/bench_ica_bank.py --split test --runs 10 --timing \\
        --out docs/images/bench_ica_bank.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from picard import picard
from sklearn.decomposition import FastICA
from sklearn.exceptions import ConvergenceWarning

from vcreg.ica import VCRegICA, amari_distance, make_ica_problem
from vcreg.ica.problems import BANK_FAMILIES

D_GRID = (2, 3, 4, 6, 8, 12, 16, 20, 24, 32)
N_GRID = (500, 1000, 2000, 5000, 10000, 20000)
SPLIT_SEED = {"dev": 10_000, "test": 0}
BAD = 0.1  # a run with a larger Amari distance is a failure the warning must flag


def draw_problem(family: str, split: str, run: int) -> dict:
    seed = SPLIT_SEED[split] + run
    rng = np.random.default_rng([seed, BANK_FAMILIES.index(family)])
    d = int(rng.choice(D_GRID))
    n = int(rng.choice(N_GRID))
    cond = str(rng.choice(["well", "ill"]))
    return dict(family=family, split=split, seed=seed, d=d, n=n, cond=cond)


def _fastica(X, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FastICA(whiten="unit-variance", max_iter=1000, random_state=seed).fit(X).components_


def _picard(X, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        K, W, _ = picard(X.T, ortho=True, random_state=seed, max_iter=1000)
    return W @ K


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_one(problem: dict) -> dict:
    p = problem
    _, A, X = make_ica_problem(p["family"], p["n"], p["d"], p["cond"], random_state=p["seed"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est, t_vc = _timed(lambda: VCRegICA(random_state=p["seed"]).fit(X))
    W_fa, t_fa = _timed(lambda: _fastica(X, p["seed"]))
    W_pi, t_pi = _timed(lambda: _picard(X, p["seed"]))
    diag = est.diagnostics_
    return dict(
        p,
        amari={
            "VCRegICA": amari_distance(est.components_, A),
            "FastICA": amari_distance(W_fa, A),
            "Picard": amari_distance(W_pi, A),
        },
        time={"VCRegICA": t_vc, "FastICA": t_fa, "Picard": t_pi},
        fixed_point_distance=diag["fixed_point_distance"],
        predicted_amari=diag["predicted_amari"],
        warned=not diag["reliable"],
        any_convergence_warning=any(issubclass(w.category, ConvergenceWarning) for w in caught),
    )


def _q(values, q):
    return float(np.quantile(values, q)) if len(values) else float("nan")


def summarize(rows: list[dict]) -> dict:
    """Per family (and over all): Amari median / p90 per method, warning rates, target ratio."""
    out = {}
    for fam in (*BANK_FAMILIES, "all"):
        rs = [r for r in rows if fam in ("all", r["family"])]
        if not rs:
            continue
        s = {"runs": len(rs)}
        for m in ("VCRegICA", "FastICA", "Picard"):
            a = [r["amari"][m] for r in rs]
            s[m] = {"median": _q(a, 0.5), "p90": _q(a, 0.9)}
        bad = [r for r in rs if r["amari"]["VCRegICA"] > BAD]
        good = [r for r in rs if r["amari"]["VCRegICA"] <= BAD]
        s["bad_runs"], s["bad_warned"] = len(bad), sum(r["warned"] for r in bad)
        s["good_runs"], s["good_warned"] = len(good), sum(r["warned"] for r in good)
        tgt = [r for r in rs if r["n"] >= 1000 and r["d"] <= 20]
        if tgt:
            vc = _q([r["amari"]["VCRegICA"] for r in tgt], 0.5)
            fa = _q([r["amari"]["FastICA"] for r in tgt], 0.5)
            s["target_runs"], s["target_ratio"] = len(tgt), vc / fa
        out[fam] = s
    return out


def table(summary: dict) -> str:
    lines = [
        "| family | runs | VCRegICA median / p90 | FastICA median / p90 | Picard median / p90 "
        "| bad runs warned | good runs warned | VCReg/FastICA median (n ≥ 1000, d ≤ 20) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fam, s in summary.items():
        cells = [
            f"{s[m]['median']:.3f} / {s[m]['p90']:.3f}" for m in ("VCRegICA", "FastICA", "Picard")
        ]
        ratio = (
            f"{s['target_ratio']:.2f}× ({s['target_runs']} runs)" if "target_ratio" in s else "–"
        )
        lines.append(
            f"| {fam} | {s['runs']} | {' | '.join(cells)} | {s['bad_warned']}/{s['bad_runs']} | "
            f"{s['good_warned']}/{s['good_runs']} | {ratio} |"
        )
    return "\n".join(lines)


def timing(seeds: int) -> dict:
    """Wall time at d = 10, n = 10,000 (Laplace, uniform), after a warm-up fit."""
    _, _, X = make_ica_problem("laplace", 2000, 5, "well", 0)
    VCRegICA(random_state=0).fit(X)
    rows = []
    for fam in ("laplace", "uniform"):
        for s in range(seeds):
            _, A, X = make_ica_problem(fam, 10_000, 10, "well", s)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                est, t_vc = _timed(lambda X=X, s=s: VCRegICA(random_state=s).fit(X))
            W_fa, t_fa = _timed(lambda X=X, s=s: _fastica(X, s))
            rows.append(dict(family=fam, seed=s, VCRegICA=t_vc, FastICA=t_fa))
    ratio = np.median([r["VCRegICA"] for r in rows]) / np.median([r["FastICA"] for r in rows])
    return {"rows": rows, "ratio": float(ratio)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=sorted(SPLIT_SEED), default="test")
    ap.add_argument("--runs", type=int, default=10, help="runs (problems) per family")
    ap.add_argument("--families", nargs="+", default=list(BANK_FAMILIES))
    ap.add_argument("--timing", action="store_true", help="also time d = 10, n = 10,000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="write rows + summary as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    rows = []
    for run in range(args.runs):
        for fam in args.families:
            r = run_one(draw_problem(fam, args.split, run))
            rows.append(r)
            print(
                f"{fam:14s} d={r['d']:2d} n={r['n']:5d} {r['cond']:4s} "
                + " ".join(f"{m}={a:.3f}" for m, a in r["amari"].items())
                + f" fp={r['fixed_point_distance']:.3f} pred={r['predicted_amari']:.3f}"
                + f" warned={r['warned']} t={r['time']['VCRegICA']:.1f}s",
                flush=True,
            )
    summary = summarize(rows)
    result = {
        "split": args.split,
        "runs_per_family": args.runs,
        "threads": args.threads,
        "wall_s": time.time() - t0,
        "load_average": os.getloadavg(),
        "summary": summary,
        "rows": rows,
    }
    if args.timing:
        result["timing"] = timing(3)
        print(f"time d=10, n=10000: VCRegICA / FastICA = {result['timing']['ratio']:.1f}x")
    print(table(summary))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
