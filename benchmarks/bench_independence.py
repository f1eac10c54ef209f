"""Benchmark: all-pairs HSIC of a representation, vcreg vs per-pair loops.

    .venv/bin/python benchmarks/bench_independence.py            # (n, d) = (1024, 512)
    .venv/bin/python benchmarks/bench_independence.py --quick    # (256, 64), a smoke run

Measures, in one run on the same machine: ``pairwise_hsic`` exact and lowrank (each in a fresh
subprocess, so that its peak resident memory can be read), a Python loop of our own ``hsic``
over a random sample of pairs and hyppo's ``Hsic().statistic`` over a smaller sample, both
extrapolated to all d(d-1)/2 pairs. Prints a markdown table with times, speed-up ratios, the
lowrank error on the mean off-diagonal value, and peak memory next to ``max_memory``.
Timings are wall clock on whatever the machine is doing: read the ratios.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402


def make_data(n: int, d: int, seed: int) -> np.ndarray:
    """Standardized features with weak nonlinear dependencies (a mixed tanh layer)."""
    rng = np.random.default_rng(seed)
    w = np.eye(d) + 0.05 * rng.standard_normal((d, d))
    z = np.tanh(rng.standard_normal((n, d)) @ w)
    z[:, 1] = np.cos(2 * z[:, 0]) + 0.3 * rng.standard_normal(n)
    return (z - z.mean(0)) / z.std(0)


def _rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def _child(args: tuple, queue) -> None:
    n, d, seed, method, max_memory, threads = args
    torch.set_num_threads(threads)
    from vcreg import independence as ind

    z = make_data(n, d, seed)
    ind.pairwise_hsic(z[:16, :4], method=method)  # warm-up (imports, allocator)
    with open("/proc/self/status") as fh:  # current resident memory before the run
        base = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS"))
    t0, c0 = time.perf_counter(), time.process_time()
    raw = ind.pairwise_hsic(z, normalized=False, method=method, max_memory=max_memory)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    queue.put((elapsed, cpu, raw, max(0, _rss_bytes() - base)))


def run_isolated(*args) -> tuple[float, float, np.ndarray, int]:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(args, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--max-memory", default="4GB")
    ap.add_argument("--pairs-ours", type=int, default=200, help="sampled pairs, own hsic loop")
    ap.add_argument("--pairs-hyppo", type=int, default=20, help="sampled pairs, hyppo loop")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="(n, d) = (256, 64), few pairs")
    ap.add_argument(
        "--no-baselines", action="store_true", help="only exact + lowrank (memory checks)"
    )
    a = ap.parse_args()
    if a.quick:
        a.n, a.d, a.pairs_ours, a.pairs_hyppo = 256, 64, 50, 10
    torch.set_num_threads(a.threads)
    from hyppo.independence import Hsic

    from vcreg import independence as ind

    n, d = a.n, a.d
    n_pairs = d * (d - 1) // 2
    budget = ind.parse_memory(a.max_memory)
    z = make_data(n, d, a.seed)
    print(
        f"(n, d) = ({n}, {d}), {n_pairs:,} pairs, torch threads = {a.threads}, "
        f"max_memory = {a.max_memory}, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )

    t_ex, c_ex, m_ex, mem_ex = run_isolated(n, d, a.seed, "exact", a.max_memory, a.threads)
    print(f"exact: {t_ex:.2f} s (CPU {c_ex:.1f} s)", flush=True)
    t_lr, c_lr, m_lr, mem_lr = run_isolated(n, d, a.seed, "lowrank", a.max_memory, a.threads)
    print(f"lowrank: {t_lr:.2f} s (CPU {c_lr:.1f} s)", flush=True)

    if a.no_baselines:
        iu, ju = np.triu_indices(d, 1)
        rel = float(m_lr[iu, ju].mean() / m_ex[iu, ju].mean() - 1)
        print(
            f"peak extra RSS: exact {mem_ex / 2**30:.2f} GiB, lowrank {mem_lr / 2**30:.2f} GiB "
            f"(max_memory {budget / 2**30:.2f} GiB); lowrank mean rel. error {rel:+.2e}"
        )
        return
    rng = np.random.default_rng(a.seed)
    iu, ju = np.triu_indices(d, 1)
    sample = rng.choice(n_pairs, max(a.pairs_ours, a.pairs_hyppo), replace=False)
    own = sample[: a.pairs_ours]
    ind.hsic(z[:, 0], z[:, 1])  # warm-up
    t0 = time.perf_counter()
    vals = [ind.hsic(z[:, iu[k]], z[:, ju[k]]) for k in own]
    t_own = (time.perf_counter() - t0) / len(own) * n_pairs
    err_loop = float(np.max(np.abs(np.array(vals) - m_ex[iu[own], ju[own]]) / np.abs(vals)))
    print(f"own hsic loop (extrapolated): {t_own:.1f} s", flush=True)
    hy = sample[: a.pairs_hyppo]
    Hsic().statistic(z[:, [0]], z[:, [1]])  # warm-up: hyppo compiles with numba on first use
    t0 = time.perf_counter()
    for k in hy:
        Hsic().statistic(z[:, [iu[k]]], z[:, [ju[k]]])
    t_hy = (time.perf_counter() - t0) / len(hy) * n_pairs
    print(f"hyppo Hsic loop (extrapolated): {t_hy:.1f} s", flush=True)

    off = m_ex[iu, ju]
    rel = float(m_lr[iu, ju].mean() / off.mean() - 1)
    nrm_ex = ind.normalize_hsic_matrix(m_ex)[iu, ju].mean()
    nrm_lr = ind.normalize_hsic_matrix(m_lr)[iu, ju].mean()
    rel_n = float(nrm_lr / nrm_ex - 1)

    def gib(b: float) -> str:
        return f"{b / 2**30:.2f} GiB"

    print()
    print(
        f"| method (n={n}, d={d}, {n_pairs:,} pairs) | time (s) | vs own `hsic` loop "
        "| vs hyppo `Hsic` loop | peak extra RSS (max_memory) | CPU time (s) |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| `pairwise_hsic` exact | {t_ex:.2f} | {t_own / t_ex:,.0f}x faster "
        f"| {t_hy / t_ex:,.0f}x faster | {gib(mem_ex)} ({gib(budget)}) | {c_ex:.1f} |"
    )
    print(
        f"| `pairwise_hsic` lowrank | {t_lr:.2f} | {t_own / t_lr:,.0f}x faster "
        f"| {t_hy / t_lr:,.0f}x faster | {gib(mem_lr)} ({gib(budget)}) | {c_lr:.1f} |"
    )
    print(
        f"| own `hsic`, per-pair loop ({len(own)} pairs, extrapolated) | {t_own:,.0f} | 1x | | | |"
    )
    print(
        f"| hyppo `Hsic().statistic` loop ({len(hy)} pairs, extrapolated) | {t_hy:,.0f} | | 1x | | |"
    )
    print()
    print(
        f"lowrank vs exact, mean off-diagonal: HSIC {rel:+.2e} relative, "
        f"normalized HSIC {rel_n:+.2e} relative"
    )
    print(
        f"exact matrix vs per-pair `hsic` on {len(own)} sampled pairs: max relative "
        f"difference {err_loop:.1e}"
    )


if __name__ == "__main__":
    main()
