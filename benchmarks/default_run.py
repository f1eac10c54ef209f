"""The README's default training run, end to end, saved as a results file the README is checked
against (docs/numbers.yaml): ``vcreg train -c configs/mnist1d_vicreg.yaml`` then ``vcreg
evaluate``, as a user runs them.

Writes ``benchmarks/results/default_run.json``: the wall time of each command, the run's regime
(``run.json["regime"]``: fraction of embedding dims at the hinge, off-diagonal correlation
relative to its independent-features level), the linear-probe accuracies (``eval.json``), the
commit and the load average before and after (the machine may be shared).

    python benchmarks/default_run.py [--config mnist1d_vicreg] [--out benchmarks/results/default_run.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip() or None


def _timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="mnist1d_vicreg")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/default_run.json")
    a = ap.parse_args()
    vcreg = [sys.executable, "-m", "vcreg"]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        train_s = _timed([*vcreg, "train", "-c", a.config, "--out", str(run), "--no-progress"])
        eval_s = _timed([*vcreg, "evaluate", str(run), "--no-progress"])
        summary = json.loads((run / "run.json").read_text())
        ev = json.loads((run / "eval.json").read_text())
    ood = ev["ood_acc"]
    result = {
        "command": f"vcreg train -c {a.config} --out RUN && vcreg evaluate RUN",
        "commit": _commit(),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "train_wall_s": train_s,
        "evaluate_wall_s": eval_s,
        "train_time_s": summary["wall_time_s_last_session"],
        "epochs": summary["epochs_completed"],
        "regime": summary["regime"],
        "in_domain_acc": ev["in_domain_acc"],
        "ood_acc": ood,
        "ood_acc_mean": sum(ood.values()) / len(ood) if ood else None,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    reg = result["regime"]
    print(
        f"{a.config}: trained in {train_s:.0f} s, {100 * reg['emb_at_hinge_frac']:.0f} % of dims "
        f"at the hinge, off-diagonal {reg['emb_offdiag_excess']:.1f}x, in-domain accuracy "
        f"{result['in_domain_acc']:.3f}, OOD mean {result['ood_acc_mean']:.3f} "
        f"(load {load_before[0]:.1f} -> {result['load_average_after'][0]:.1f}); wrote {a.out}"
    )


if __name__ == "__main__":
    main()
