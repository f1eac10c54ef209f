"""The test suites as ``.ci/run`` runs them, timed, saved as a results file the README is checked
against (docs/numbers.yaml): the default suite (``python -m pytest``), then the slow one
(``python -m pytest -m slow``).

Writes ``benchmarks/results/ci_timing.json``: per suite the pytest counts (passed, failed,
skipped, deselected, ...) from its summary line, its wall time, the commit and the load average
before and after (the machine may be shared: say so with the numbers).

    python benchmarks/ci_timing.py [--suites default,slow] [--out benchmarks/results/ci_timing.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = {"default": [], "slow": ["-m", "slow"]}
_COUNT = re.compile(r"(\d+) (passed|failed|skipped|deselected|xfailed|xpassed|errors?|warnings?)")


def summary_counts(line: str) -> dict[str, int]:
    """``{"passed": 733, "skipped": 3, ...}`` from pytest's closing line."""
    counts = {}
    for n, what in _COUNT.findall(line):
        what = {"error": "errors", "warning": "warnings"}.get(what, what)
        counts[what] = int(n)
    return counts


def run_suite(name: str) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITES[name]]
    load = os.getloadavg()
    t0 = time.perf_counter()
    env = {
        **os.environ,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }  # as .ci/run
    # the README's sentence about this file is checked against the file this run writes: skipped
    env["VCREG_WRITING_RESULTS"] = "benchmarks/results/ci_timing.json"
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    return {
        "command": "python -m pytest" + "".join(f" {a}" for a in SUITES[name]),
        "returncode": proc.returncode,
        "summary": last.strip("= "),
        "not_passed": [ln for ln in lines if ln.startswith(("FAILED ", "ERROR "))],
        **summary_counts(last),
        "wall_s": seconds,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--suites", default="default,slow")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ci_timing.json")
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    result = {"commit": commit.stdout.strip() or None, "cpu_count": os.cpu_count(), "suites": {}}
    for name in a.suites.split(","):
        res = run_suite(name)
        result["suites"][name] = res
        print(
            f"{name}: {res['summary']} ({res['wall_s']:.0f} s, load {res['load_average_before'][0]:.1f})"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
