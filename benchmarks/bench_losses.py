"""Forward+backward time and memory of the covariance term and of the whole VICReg loss.

Compares, in one run and on the same inputs:

* ``ours``    — ``vcreg.functional.covariance_loss`` / ``vcreg.VICRegLoss`` (automatic Gram trick),
* ``plain``   — the k×k formula as written in the official VICReg code
  (facebookresearch/vicreg ``main_vicreg.py``: ``x.T @ x / (n-1)``, ``off_diagonal(cov)``),
* ``lightly`` — ``lightly.loss.vicreg_loss.covariance_loss`` / ``lightly.loss.VICRegLoss``.

Time: median wall time of fwd+bwd over interleaved rounds (after one warm-up), float32, CPU unless
``--device cuda``. Ratios are ``baseline time / ours time`` measured in the same run.

Memory, two honest measures:

* ``largest tensor``: the largest single tensor materialised during fwd+bwd (recorded with a
  ``TorchDispatchMode`` that sees every op output, including autograd's) — exact, noise free.
* ``peak RSS``: extra peak resident memory of a *fresh subprocess* running one fwd+bwd of the
  whole VICReg loss (``ru_maxrss`` after minus before the call; inputs, imports and a small
  warm-up are excluded). It includes allocator behaviour and all intermediates alive at once.

Usage: ``python benchmarks/bench_losses.py`` (add ``--shapes 256x2048`` to restrict,
``--no-rss`` to skip the subprocess measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from lightly.loss import VICRegLoss as LightlyVICRegLoss
from lightly.loss.vicreg_loss import covariance_loss as lightly_covariance_loss
from torch.utils._python_dispatch import TorchDispatchMode

from vcreg import VICRegLoss
from vcreg.functional import covariance_loss

SHAPES = [(256, 2048), (256, 8192), (512, 8192), (2048, 2048)]


# ----------------------------------------------------------------------------- plain baseline
def off_diagonal(x: torch.Tensor) -> torch.Tensor:
    # as in the official VICReg / Barlow Twins code
    n, m = x.shape
    return x.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()


def plain_covariance(x: torch.Tensor) -> torch.Tensor:
    n, k = x.shape
    x = x - x.mean(dim=0)
    cov = (x.T @ x) / (n - 1)
    return off_diagonal(cov).pow_(2).sum().div(k)


def plain_vicreg(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n, k = x.shape
    repr_loss = F.mse_loss(x, y)
    x = x - x.mean(dim=0)
    y = y - y.mean(dim=0)
    std_x = torch.sqrt(x.var(dim=0) + 0.0001)
    std_y = torch.sqrt(y.var(dim=0) + 0.0001)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x = (x.T @ x) / (n - 1)
    cov_y = (y.T @ y) / (n - 1)
    cov_loss = off_diagonal(cov_x).pow_(2).sum().div(k) + off_diagonal(cov_y).pow_(2).sum().div(k)
    return 25.0 * repr_loss + 25.0 * std_loss + 1.0 * cov_loss


_ours_vicreg = VICRegLoss()
_lightly_vicreg = LightlyVICRegLoss()

METHODS = {
    "cov": {
        "ours": lambda a, b: covariance_loss(a),
        "plain": lambda a, b: plain_covariance(a),
        "lightly": lambda a, b: lightly_covariance_loss(a),
    },
    "vicreg": {
        "ours": lambda a, b: _ours_vicreg(a, b),
        "plain": plain_vicreg,
        "lightly": lambda a, b: _lightly_vicreg(a, b),
    },
}


# ----------------------------------------------------------------------------- measurement
def make_inputs(n: int, k: int, device: str):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, k, generator=g).to(device).requires_grad_(True)
    b = (a.detach() + 0.5 * torch.randn(n, k, generator=g).to(device)).requires_grad_(True)
    return a, b


def fwd_bwd(fn, a, b) -> float:
    a.grad = b.grad = None
    loss = fn(a, b)
    loss.backward()
    return float(loss.detach())


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_methods(fns: dict, a, b, device: str, rounds: int, min_time: float) -> dict:
    """Median fwd+bwd time per method, interleaving the methods round by round so that load
    changes on a shared machine hit all of them alike. Cheap methods are repeated within each
    round (up to ``min_time / rounds`` seconds) for more samples."""
    est = {}
    for name, fn in fns.items():  # estimate (the caller already warmed up)
        sync(device)
        t0 = time.perf_counter()
        fwd_bwd(fn, a, b)
        sync(device)
        est[name] = time.perf_counter() - t0
    samples: dict[str, list[float]] = {name: [t] for name, t in est.items()}
    for _ in range(rounds):
        for name, fn in fns.items():
            reps = max(1, min(10, int(min_time / rounds / max(est[name], 1e-6))))
            for _ in range(reps):
                sync(device)
                t0 = time.perf_counter()
                fwd_bwd(fn, a, b)
                sync(device)
                samples[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in samples.items()}


class LargestTensor(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.max_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.max_bytes = max(self.max_bytes, t.numel() * t.element_size())
        return out


def largest_tensor(fn, a, b) -> tuple[int, float]:
    """(bytes of the largest tensor created during fwd+bwd, loss value)."""
    with LargestTensor() as mode:
        value = fwd_bwd(fn, a, b)
    return mode.max_bytes, value


def peak_rss_bytes() -> int:
    # VmHWM belongs to this process's address space; ru_maxrss would be inherited from the
    # parent across fork/exec on Linux and hide the child's own peak.
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_child(kind: str, method: str, n: int, k: int) -> None:
    """Run in a fresh process: print the extra peak RSS (bytes) of one fwd+bwd."""
    fn = METHODS[kind][method]
    fwd_bwd(fn, *make_inputs(8, 16, "cpu"))  # one-time initialisation (autograd, kernels)
    a, b = make_inputs(n, k, "cpu")
    before = peak_rss_bytes()
    fwd_bwd(fn, a, b)
    print(json.dumps({"rss_bytes": peak_rss_bytes() - before}))


def peak_rss(kind: str, method: str, n: int, k: int) -> int:
    out = subprocess.run(
        [sys.executable, __file__, "--_rss-child", kind, method, str(n), str(k)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["rss_bytes"]


def mb(x: float) -> str:
    return f"{x / 2**20:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="*", default=None, help="e.g. 256x8192 2048x2048")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved timing rounds after the first"
    )
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="time budget for repeating cheap methods"
    )
    parser.add_argument("--no-rss", action="store_true", help="skip peak-RSS subprocesses")
    parser.add_argument("--_rss-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._rss_child:
        kind, method, n, k = args._rss_child
        rss_child(kind, method, int(n), int(k))
        return

    shapes = SHAPES if not args.shapes else [tuple(map(int, s.split("x"))) for s in args.shapes]
    print(
        f"torch {torch.__version__}, device {args.device}, threads {torch.get_num_threads()}, "
        f"float32, median fwd+bwd time over {args.rounds + 1} interleaved rounds, "
        f"load average at start {os.getloadavg()[0]:.1f}\n"
    )
    rows = []
    for n, k in shapes:
        a, b = make_inputs(n, k, args.device)
        for kind in ("cov", "vicreg"):
            res = {}
            for method, fn in METHODS[kind].items():  # also the warm-up call
                largest, value = largest_tensor(fn, a, b)
                res[method] = {"largest": largest, "value": value}
            times = time_methods(METHODS[kind], a, b, args.device, args.rounds, args.min_time)
            for method in METHODS[kind]:
                res[method]["time"] = times[method]
                if kind == "vicreg" and args.device == "cpu" and not args.no_rss:
                    res[method]["rss"] = peak_rss(kind, method, n, k)
            rel = max(
                abs(res[m]["value"] - res["ours"]["value"]) / abs(res["ours"]["value"])
                for m in ("plain", "lightly")
            )
            rows.append((n, k, kind, res, rel))
            print(
                f"  {kind:6s} n={n:5d} k={k:5d}: "
                + ", ".join(f"{m} {r['time'] * 1e3:.1f} ms" for m, r in res.items()),
                flush=True,
            )

    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    print(
        "\n| term | n | k | ours (ms) | plain k×k (ms) | lightly (ms) | plain / ours "
        "| lightly / ours | largest tensor ours / plain (MB) | peak RSS ours / plain / "
        "lightly (MB) | value rel. diff |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n, k, kind, res, rel in rows:
        o, p, lt = res["ours"], res["plain"], res["lightly"]
        rss = " / ".join(mb(r["rss"]) for r in (o, p, lt)) if "rss" in o else "–"
        print(
            f"| {'covariance' if kind == 'cov' else 'VICReg'} | {n} | {k} "
            f"| {o['time'] * 1e3:.1f} | {p['time'] * 1e3:.1f} | {lt['time'] * 1e3:.1f} "
            f"| **{p['time'] / o['time']:.1f}×** | {lt['time'] / o['time']:.1f}× "
            f"| {mb(o['largest'])} / {mb(p['largest'])} | {rss} | {rel:.1e} |"
        )


if __name__ == "__main__":
    main()
