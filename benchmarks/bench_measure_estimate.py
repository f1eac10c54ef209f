"""Benchmark: the estimate `vcreg measure` prints before a run, step by step, vs the run.

    python benchmarks/bench_measure_estimate.py                  # 4 shapes, ~2 min idle
    python benchmarks/bench_measure_estimate.py --shapes 2048x2048 --cli   # + the whole command

For each (n, d): ReLU features (an encoder's last layer: relu of a random projection of
Gaussian data) with 10-class labels, measured by ``measure_embeddings`` with the defaults
(``max_samples=None`` so that n rows are used). Prints, per step, the estimate
(``cost.estimate.steps``, :mod:`vcreg.independence.cost`) next to the measured wall and CPU
seconds (``cost.steps_seconds`` / ``steps_cpu_seconds``) and their ratios; ``--cli`` also runs
``vcreg measure`` on the saved array in a subprocess and compares its printed total estimate
with the command's wall time. The machine may be shared: the load average is recorded, and
CPU seconds (this process, all threads) are the load-independent measure of the work. Writes
``--json`` (default benchmarks/results/measure_estimate.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle threads do not burn CPU seconds

import numpy as np  # noqa: E402
import torch  # noqa: E402

from vcreg import independence as ind  # noqa: E402
from vcreg.independence.cost import write_seconds  # noqa: E402


def make_data(n: int, d: int, seed: int = 0, sparse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ReLU features; ``sparse``: each unit active on a fraction of the rows drawn from
    0.1 % .. 50 % (log-uniform), as real encoders' ReLU units are (dead units included)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 256))
    h = x @ (rng.standard_normal((256, d)) / 16)
    if sparse:
        active = np.exp(rng.uniform(np.log(1e-3), np.log(0.5), d))
        h = h - np.array([np.quantile(h[:, j], 1 - active[j]) for j in range(d)])
    return np.maximum(h, 0), rng.integers(0, 10, n)


def one_shape(n: int, d: int, sparse: bool) -> dict:
    z, y = make_data(n, d, sparse=sparse)
    rep = ind.measure_embeddings(z, labels=y, max_samples=None)
    cost = rep["cost"]
    rows = []
    for step, est in cost["estimate"]["steps"].items():
        wall, cpu = cost["steps_seconds"].get(step, 0.0), cost["steps_cpu_seconds"].get(step, 0.0)
        rows.append({"step": step, "estimate_s": est, "wall_s": wall, "cpu_s": cpu})
    return {
        "n": n, "d": d, "method": rep["settings"]["method"],
        "estimate_s": cost["estimate"]["seconds"], "wall_s": cost["seconds"],
        "cpu_s": float(sum(cost["steps_cpu_seconds"].values())), "steps": rows,
    }  # fmt: skip


def cli_run(n: int, d: int, sparse: bool) -> dict:
    z, _ = make_data(n, d, sparse=sparse)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "z.npy", z)
        cmd = [sys.executable, "-m", "vcreg", "measure", str(Path(tmp) / "z.npy"),
               "--out", str(Path(tmp) / "out"), "--max-samples", str(n)]  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    est = re.search(r"estimate: ~?(\d+) s in all", proc.stdout)
    return {"n": n, "d": d, "printed_estimate_s": float(est.group(1)) if est else None,
            "command_wall_s": wall, "first_line": proc.stdout.splitlines()[0]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default="300x512,1000x256,2048x512,1024x1024")
    ap.add_argument("--cli", action="store_true", help="also time the whole `vcreg measure`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparse", action="store_true", help="units active on 0.1-50 %% of rows")
    ap.add_argument("--json", default="benchmarks/results/measure_estimate.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    load0 = os.getloadavg()
    results = [one_shape(n, d, args.sparse) for n, d in shapes]
    clis = [cli_run(n, d, args.sparse) for n, d in shapes] if args.cli else []
    print(f"{'n x d':>11} {'step':>17} {'estimate s':>11} {'wall s':>8} {'cpu s':>8} "
          f"{'wall/est':>9} {'cpu/est':>8}")  # fmt: skip
    for r in results:
        for s in [*r["steps"], {"step": "ALL", "estimate_s": r["estimate_s"],
                                "wall_s": r["wall_s"], "cpu_s": r["cpu_s"]}]:  # fmt: skip
            e = max(s["estimate_s"], 1e-9)
            print(f"{r['n']:>5}x{r['d']:<5} {s['step']:>17} {s['estimate_s']:>11.2f} "
                  f"{s['wall_s']:>8.2f} {s['cpu_s']:>8.2f} {s['wall_s'] / e:>9.2f} "
                  f"{s['cpu_s'] / e:>8.2f}")  # fmt: skip
    for c in clis:
        print(f"vcreg measure {c['n']}x{c['d']}: printed estimate {c['printed_estimate_s']} s "
              f"(incl. writing ~{write_seconds(c['d']):.1f} s), command {c['command_wall_s']:.1f} s "
              "wall (incl. ~3 s of imports)")  # fmt: skip
    out = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": socket.gethostname(), "torch_threads": args.threads, "sparse": args.sparse,
        "load_average_before": load0, "load_average_after": os.getloadavg(),
        "shapes": results, "cli": clis,
    }  # fmt: skip
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    print(f"load average before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}; wrote {args.json}")


if __name__ == "__main__":
    main()
