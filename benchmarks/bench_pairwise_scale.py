"""Benchmark: all-pairs HSIC at encoder scale, against the FLOP limit of this machine, and the
whole default ``vcreg measure`` against main's code in the same run.

    python benchmarks/bench_pairwise_scale.py                       # (n, d) = (2048, 2048)
    python benchmarks/bench_pairwise_scale.py --n 4096 --d 8192 --world 2   # sharded, 2 ranks
    python benchmarks/bench_pairwise_scale.py --measure             # + default measure_embeddings
    python benchmarks/bench_pairwise_scale.py --measure --baseline-src /tmp/main_ref/src \
        --json benchmarks/results/measure_2048.json               # + main's code, same data
    python benchmarks/bench_pairwise_scale.py --quick               # (512, 256) smoke run

ReLU features (relu of a random projection of Gaussian data, as an encoder's last layer
gives). Times ``pairwise_hsic(method="lowrank")`` (the method ``vcreg measure`` picks at this
size) split into its steps, counts the FLOPs of its Gram step (n D^2 on the upper triangle, D
= the features of all columns), and runs a plain ``torch.matmul`` of the same operands (one
slab of F^T F) in the same process to give the achieved fraction of the matmul rate. The error
vs exact: ``--pairs`` random pairs recomputed with the exact per-pair ``hsic``. With ``--world
2`` the pairwise step runs sharded over 2 gloo ranks (CPU) and rank 0 reports.

``--measure`` times the default ``measure_embeddings`` (what ``vcreg measure`` runs) end to end
in a fresh process per code base, with the wall and CPU seconds of each step (pairwise HSIC
matrix, per-column null profiles, the criterion, spectral p-values, exact nulls, low-rank
accuracy check, dHSIC permutation test, health sections) taken by wrapping the library's
functions; ``--baseline-src DIR`` runs the same on another source tree (e.g. main's, from
``git archive <commit> src | tar -x -C /tmp/main_ref``) right after, so the ratio is of one
machine state. Prints a table and writes ``--json``. The machine is shared: read the ratios
and CPU seconds; the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from vcreg import independence as ind  # noqa: E402
from vcreg.independence import pairwise as pw  # noqa: E402
from vcreg.independence.kernels import _column_sigmas  # noqa: E402

# (module, function, step label): wrapped with timers when the code base has them (this branch
# and main name some steps differently; a step missing from one code base is left out there)
STEPS = [
    ("vcreg.independence.measurement", "pairwise_hsic_test", "pairwise test (all of it)"),
    ("vcreg.independence.pairwise", "_pairwise_raw", "  HSIC matrix (bandwidths, low-rank Gram)"),
    ("vcreg.independence.nulls", "column_profiles", "  per-column null profiles"),
    ("vcreg.independence.pairwise", "_column_null_parts", "  per-column null profiles"),
    ("vcreg.independence.nulls", "spectral_tail_error", "  criterion (tail error per pair)"),
    ("vcreg.independence.nulls", "spectral_pvalues", "  spectral p-values"),
    ("vcreg.independence.pairwise", "_pair_spectral_pvalues", "  spectral p-values"),
    ("vcreg.independence.pairwise", "_exact_null_pvalues", "  exact nulls"),
    ("vcreg.independence.measurement", "_lowrank_accuracy", "low-rank accuracy check"),
    ("vcreg.independence.measurement", "dhsic_test", "dHSIC permutation test"),
    ("vcreg.independence.measurement", "_health_sections", "health (mutual dependence, rank)"),
]


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 256))
    return np.maximum(x @ (rng.standard_normal((256, d)) / 16), 0)


def _steps(z: torch.Tensor, sharded: bool) -> dict:
    """The low-rank pairwise step by step (what pairwise_hsic does), timed."""
    out, t = {}, time.perf_counter()
    sig, _ = _column_sigmas(z, "median", ind.MEDIAN_SAMPLES)
    out["bandwidth_s"] = time.perf_counter() - t
    t = time.perf_counter()
    f, ranks, _ = pw._lowrank_features(z, sig, "gaussian", 2**34, 1e-2, 64, False)
    out["cholesky_s"] = time.perf_counter() - t
    seg = torch.repeat_interleave(torch.arange(z.shape[1]), ranks)
    f = f.to(pw.CHOLESKY_DTYPE)
    f -= f.mean(0)
    t = time.perf_counter()
    g = pw._segment_gram(f, seg, ranks, 2**34, sharded)
    out["gram_s"] = time.perf_counter() - t
    n, big_d = f.shape
    out |= {"mean_rank": float(ranks.double().mean()), "features": big_d}
    out["gram_flops"] = float(n) * big_d * big_d  # upper triangle: half of 2 n D^2
    out["gram_gflops"] = out["gram_flops"] / out["gram_s"] / 1e9
    k = -(-big_d // 8)  # a plain matmul of one slab's operands, same dtype, same process
    torch.matmul(f[:, :k].T, f)
    t = time.perf_counter()
    torch.matmul(f[:, :k].T, f)
    tm = time.perf_counter() - t
    out["matmul_gflops"] = 2.0 * n * k * big_d / tm / 1e9
    out["fraction_of_matmul"] = out["gram_gflops"] / out["matmul_gflops"]
    out["total_s"] = out["bandwidth_s"] + out["cholesky_s"] + out["gram_s"]
    out["hsic"] = (g / n**2).double().numpy()
    return out


def _error_vs_exact(z: np.ndarray, raw: np.ndarray, pairs: int, seed: int = 1) -> dict:
    d = z.shape[1]
    iu, ju = np.triu_indices(d, 1)
    pick = np.random.default_rng(seed).choice(iu.size, min(pairs, iu.size), replace=False)
    t = time.perf_counter()
    ex = np.array([ind.hsic(z[:, iu[k]], z[:, ju[k]]) for k in pick])
    lr = raw[iu[pick], ju[pick]]
    return {
        "pairs": int(pick.size),
        "relative_error_of_mean": float(abs(lr.mean() - ex.mean()) / ex.mean()),
        "max_abs_error_over_mean": float(np.abs(lr - ex).max() / ex.mean()),
        "exact_seconds_for_pairs": time.perf_counter() - t,
    }


def _rank_main(rank: int, world: int, port: int, args, out_path: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(hours=2),
    )
    try:
        torch.set_num_threads(max(1, args.threads // world))
        z = torch.from_numpy(make_data(args.n, args.d))
        res = _steps(z / z.std(0).clamp_min(1e-12), True)
        if rank == 0:  # the Gram rate is of all ranks together, so is the matmul baseline
            res["matmul_gflops"] *= world
            res["fraction_of_matmul"] = res["gram_gflops"] / res["matmul_gflops"]
            torch.save(res, out_path)
    finally:
        dist.destroy_process_group()


def _sharded(args) -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = f"/tmp/bench_pairwise_scale_{os.getpid()}.pt"
    mp.spawn(_rank_main, args=(args.world, port, args, path), nprocs=args.world, join=True)
    res = torch.load(path, weights_only=False)
    os.remove(path)
    return res


def _wrap_steps(timing: dict) -> None:
    """Replace each STEPS function by a timed version (cumulative wall and CPU seconds)."""
    import importlib

    for mod_name, attr, label in STEPS:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError:
            continue
        fn = getattr(mod, attr, None)
        if fn is None:
            continue

        def timed(*a, _fn=fn, _label=label, **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                t = timing.setdefault(_label, [0.0, 0.0])
                t[0] += time.perf_counter() - w
                t[1] += time.process_time() - c

        setattr(mod, attr, timed)


def _measure_child(n: int, d: int) -> None:
    """One default ``measure_embeddings`` run in this process; prints its timings as JSON."""
    import warnings

    timing: dict = {}
    _wrap_steps(timing)
    z = make_data(n, d)
    w, c = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rep = ind.measure_embeddings(z, max_samples=n)
    out = {"wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c, "steps": timing}
    out["method"] = rep["settings"]["method"]
    out["runtime_warnings"] = sum(issubclass(x.category, RuntimeWarning) for x in caught)
    pt = rep["pairwise_tests"]
    out["pairwise"] = {k: pt.get(k) for k in ("n_pairs", "n_significant", "n_not_tested", "nulls")}
    out["vcreg"] = os.path.dirname(ind.__file__)
    print("MEASURE-JSON " + json.dumps(out), flush=True)


def _measure(n: int, d: int, threads: int, src: str | None) -> dict:
    """The child run in a fresh interpreter, with ``src`` first on PYTHONPATH when given."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if src is not None:
        env["PYTHONPATH"] = os.pathsep.join([src, os.path.dirname(__file__)])
    cmd = [sys.executable, os.path.abspath(__file__), "--measure-child", "--n", str(n)]
    cmd += ["--d", str(d), "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("MEASURE-JSON "))
    return json.loads(line[len("MEASURE-JSON ") :])


def _measure_table(new: dict, base: dict | None) -> None:
    print("\n| step | this code: wall s (CPU s) | baseline: wall s (CPU s) | ratio (CPU) |")
    print("|---|---|---|---|")
    labels = list(dict.fromkeys([lab for _, _, lab in STEPS]))
    for lab in ["end to end"] + labels:
        a = [new["wall_s"], new["cpu_s"]] if lab == "end to end" else new["steps"].get(lab)
        b = None
        if base is not None:
            b = [base["wall_s"], base["cpu_s"]] if lab == "end to end" else base["steps"].get(lab)
        if a is None and b is None:
            continue
        fa = f"{a[0]:.1f} ({a[1]:.1f})" if a else "-"
        fb = f"{b[0]:.1f} ({b[1]:.1f})" if b else "-"
        ratio = f"{b[1] / a[1]:.2f}x faster" if a and b and a[1] > 0 else ""
        print(f"| {lab} | {fa} | {fb} | {ratio} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--d", type=int, default=2048)
    ap.add_argument("--world", type=int, default=1, help="ranks (gloo, CPU) for the sharded run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--measure", action="store_true", help="also time measure_embeddings")
    ap.add_argument("--measure-only", action="store_true", help="only the measure comparison")
    ap.add_argument("--baseline-src", default=None, help="source tree to compare with (main's)")
    ap.add_argument("--measure-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.quick:
        args.n, args.d, args.pairs = 512, 256, 32
    torch.set_num_threads(args.threads)
    if args.measure_child:
        _measure_child(args.n, args.d)
        return
    load = os.getloadavg()
    res: dict = {}
    if not args.measure_only:
        z = make_data(args.n, args.d)
        zs = z / z.std(0)
        res = _sharded(args) if args.world > 1 else _steps(torch.from_numpy(zs), False)
        res["error_vs_exact"] = _error_vs_exact(zs, res.pop("hsic"), args.pairs)
    if args.measure or args.measure_only:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
        res["measure"] = _measure(args.n, args.d, args.threads, os.path.abspath(here))
        res["measure_embeddings_s"] = res["measure"]["wall_s"]
        if args.baseline_src:
            res["baseline"] = _measure(args.n, args.d, args.threads, args.baseline_src)
            res["baseline_src"] = args.baseline_src
            res["ratio_cpu"] = res["baseline"]["cpu_s"] / res["measure"]["cpu_s"]
            res["ratio_wall"] = res["baseline"]["wall_s"] / res["measure"]["wall_s"]
    res |= {"n": args.n, "d": args.d, "world": args.world, "threads": args.threads}
    res["load_average_before"] = load
    res["load_average_after"] = os.getloadavg()
    res["torch"] = torch.__version__
    print("| step | value |\n|---|---|")
    for k, v in res.items():
        if k not in ("measure", "baseline"):
            print(f"| {k} | {v if not isinstance(v, float) else f'{v:.4g}'} |")
    if "measure" in res:
        _measure_table(res["measure"], res.get("baseline"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
