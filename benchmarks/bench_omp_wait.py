"""Effect of the CLI's OpenMP wait policy on a shared CPU: ``vcreg train`` beside busy processes.

The ``vcreg`` entry point sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it
(``vcreg/cli/__init__.py``). This runs the same short ``vcreg train`` (small MNIST-1D config,
``--threads`` torch threads) alternately with ``OMP_WAIT_POLICY=ACTIVE`` (spinning waits) and
with the variable unset (the entry point's passive default), ``--repeats`` times each in ABAB
order, while ``--busy`` CPU-bound processes run beside it (the shared-machine situation).
Prints each wall time and ``ratio = median ACTIVE ÷ median default`` (> 1: the passive default
is faster), plus the load averages, since other jobs may share the machine.

``--library`` runs the same training as the README's Python snippet instead
(``from vcreg.training import TrainConfig, train``: ``import vcreg`` sets the policy too).

    python benchmarks/bench_omp_wait.py [--busy 2] [--threads 2] [--repeats 2] [--epochs 2]
        [--library]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BUSY = "while True: pass"


def config(epochs: int, threads: int) -> dict:
    return {
        "name": "omp-bench",
        "epochs": epochs,
        "batch_size": 128,
        "device": "cpu",
        "threads": threads,
        "tensorboard": False,
        "data": {"name": "mnist1d", "options": {"num_samples": 2000, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 64},
        "projector": {"spec": "512-512"},
        "monitor": {"every": 0},
    }


LIBRARY = (
    "import sys; from vcreg.training import TrainConfig, train; "
    "train(TrainConfig.from_yaml(sys.argv[1]), out_dir=sys.argv[2], progress=False)"
)


def run_once(cfg_path: Path, out: Path, policy: str | None, library: bool) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    if library:
        cmd = [sys.executable, "-c", LIBRARY, str(cfg_path), str(out)]
    else:
        cmd = [sys.executable, "-m", "vcreg", "train", "-c", str(cfg_path), "--out", str(out)]
        cmd.append("--no-progress")
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busy", type=int, default=2, help="CPU-bound processes run beside it")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the training")
    ap.add_argument("--repeats", type=int, default=2, help="runs per policy (ABAB order)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--library", action="store_true", help="the README's Python snippet")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()}")
    busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    times: dict[str, list[float]] = {"ACTIVE": [], "default (PASSIVE)": []}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            cfg_path = Path(tmp) / "cfg.yaml"
            cfg_path.write_text(yaml.safe_dump(config(args.epochs, args.threads)))
            for r in range(args.repeats):
                for label, policy in (("ACTIVE", "ACTIVE"), ("default (PASSIVE)", None)):
                    out = Path(tmp) / f"run-{label[:6]}-{r}"
                    t = run_once(cfg_path, out, policy, args.library)
                    times[label].append(t)
                    print(f"{label:<18} run {r + 1}: {t:7.1f} s", flush=True)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    active, passive = (statistics.median(v) for v in times.values())
    print(f"load average at end: {os.getloadavg()}")
    print(
        f"{'library (train())' if args.library else 'vcreg train'}: "
        f"busy processes {args.busy}, torch threads {args.threads}, {args.epochs} epochs: "
        f"median ACTIVE {active:.1f} s, default {passive:.1f} s, ratio {active / passive:.2f}"
    )


if __name__ == "__main__":
    main()
