"""What the ``paper`` preset costs: ``vcreg reproduce --preset paper --estimate`` as numbers.

Two kinds of number, kept apart:

* **measured on this machine**: the estimate's device-hours from a timed step of every model
  on the device found here (``--device``; on a CPU at batch 8, scaled by FLOPs);
* **a model for GPUs** (no GPU measured): the exact FLOP count of every unit (counted on the
  meta device: hardware-independent) divided by a *stated* sustained throughput
  (``--tflops``), and the wall time with the units placed over 1, 8 and 16 GPUs
  (``vcreg.experiments.placement.makespan``). It is as good as the throughput assumed: run
  ``vcreg reproduce --preset paper --estimate`` on the GPU itself for a calibrated number.

    python benchmarks/bench_paper_cost.py                       # -> benchmarks/results/paper_cost.json
    python benchmarks/bench_paper_cost.py --table benchmarks/results/paper_cost.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from vcreg.experiments.estimate import estimate_reproduction
from vcreg.experiments.placement import makespan

OUT = Path(__file__).parent / "results" / "paper_cost.json"


def gpu_model(units: list[dict], tflops: float) -> dict:
    """Device-hours and wall hours over 1/8/16 GPUs at a sustained ``tflops`` (units that
    train nothing: their preset weight, seconds on 2 CPU cores)."""
    seconds = [u["flops"] / (tflops * 1e12) if "flops" in u else u["seconds"] for u in units]
    return {
        "sustained_tflops": tflops,
        "device_hours": sum(seconds) / 3600,
        "wall_hours": {str(n): makespan(seconds, n) / 3600 for n in (1, 8, 16)},
    }


def run(args: argparse.Namespace) -> dict:
    t0 = time.time()
    load = os.getloadavg()
    est = estimate_reproduction("paper", device=args.device, data_root=args.data_root)
    train = [u for u in est["units"] if "flops" in u]
    return {
        "command": " ".join(["python", *sys.argv]),
        "host": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
        "torch": torch.__version__,
        "load_average_start": list(load),
        "load_average_end": list(os.getloadavg()),
        "seconds": time.time() - t0,
        "measured_here": {
            "device": est["device"],
            "device_hours": est["total"]["device_hours"],
            "wall_hours": est["total"]["wall_hours"],
        },
        "flops": {
            "total_pflop": est["total"]["pflop"],
            "training_units": len(train),
            "pflop_per_unit_min": min(u["flops"] for u in train) / 1e15,
            "pflop_per_unit_max": max(u["flops"] for u in train) / 1e15,
            "steps_per_unit": train[0]["steps"],
            "activation_gib_fp32_max": max(u["activation_gib"] for u in train),
            "batch": train[0]["batch"],
        },
        "gpu_model": [gpu_model(est["units"], t) for t in args.tflops],
        "estimate": est,
    }


def table(res: dict) -> str:
    f, here = res["flops"], res["measured_here"]
    lines = [
        f"paper preset: {f['training_units']} training units of {f['steps_per_unit']} steps at "
        f"batch {f['batch']}, {f['pflop_per_unit_min']:.0f}-{f['pflop_per_unit_max']:.0f} PFLOP "
        f"each, {f['total_pflop']:.0f} PFLOP in total (counted); activations saved for the "
        f"backward at most {f['activation_gib_fp32_max']:.0f} GiB (float32)",
        f"measured here ({here['device']['name']}, load {res['load_average_start'][0]:.1f}): "
        f"{here['device_hours']:.0f} device-hours",
        "",
        "| assumed sustained throughput | GPU-hours | wall time, 1 GPU | 8 GPUs | 16 GPUs |",
        "|---|---|---|---|---|",
    ]
    for m in res["gpu_model"]:
        w = m["wall_hours"]
        lines.append(
            f"| {m['sustained_tflops']:g} TFLOP/s | {m['device_hours']:.0f} | {w['1']:.0f} h | "
            f"{w['8']:.1f} h | {w['16']:.1f} h |"
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--data-root", default=None)
    p.add_argument("--tflops", type=float, nargs="+", default=[50.0, 100.0, 200.0])
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--table", type=Path, help="print the table of a saved result and exit")
    args = p.parse_args()
    if args.table:
        print(table(json.loads(args.table.read_text())))
        return
    res = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(table(res))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
