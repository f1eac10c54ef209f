"""How long does a preset take from a clean cache? Its units' costs, measured, packed on N workers.

    python benchmarks/bench_preset_cost.py --preset full --rows docs/images/bench_wide_regime.json
    python benchmarks/bench_preset_cost.py --preset full --rows ROWS.json --measure-reference

Every training unit of the preset (C2–C4 share them) is priced by the CPU seconds of a
``bench_preset_regime.py`` row of the same configuration (domain, projector kind, width, depth,
loss, ν, frozen BatchNorm — any seed); a unit without a row is priced by the runner's cost model
(``Unit.weight``) times the median measured/model ratio of its domain and marked "modelled". The
units of C1 and C5 (seconds each, far from the total) are priced by ``--other-seconds``
(default: their compute time in the committed report of that preset). One thread per unit: on
an idle machine with ``--jobs N`` ≤ cores, a unit's wall time is close to its CPU time, so the
clean-cache wall time is estimated as the longest-processing-time-first makespan (the order
``vcreg.experiments.parallel`` runs them in) over ``--jobs`` workers.

Rows measured on a loaded machine keep their CPU seconds comparable; ``--measure-reference``
re-times the reference configuration (``--reference``, default the MNIST-1D trained 128-128
run) here and now and prints its ratio to the rows' reference, so a row set measured under load
can be rescaled to this machine (``--scale``). Writes ``--json`` (default:
benchmarks/results/preset_cost_<preset>.json).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import resource
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vcreg.experiments._training import (  # noqa: E402
    RunSpec,
    c2_specs,
    image_specs,
    run_training,
    train_unit,
)
from vcreg.experiments.presets import resolve_settings  # noqa: E402
from vcreg.experiments.runner import Context  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def spec_key(domain: str, r: RunSpec, frozen_bn: bool = True) -> str:
    loss = r.loss if r.nu is None else f"{r.loss}-nu{r.nu:g}"
    bn = "" if r.kind != "frozen" or frozen_bn else "/nobn"
    return f"{domain}/{r.kind}/{r.width}/{r.depth}/{r.spec or '-'}/{loss}{bn}"


def row_key(row: dict) -> str:
    kind, width, depth, *rest = row["spec"].split(":")
    loss = rest[0] if rest and not rest[0][:1].isdigit() else "vicreg"
    nu = float(rest[0]) if rest and rest[0][:1].isdigit() else None
    sets = dict(item.split("=", 1) for item in row.get("set", []))
    if kind == "random_features":
        width = str(64 * max(1, int(width) // 64))  # the run's k = d·m (repr 64)
    r = RunSpec("width", kind, int(width), int(depth), loss, 0, nu=nu)
    return spec_key(row["domain"], r, json.loads(sets.get("frozen_batch_norm", "true")))


def planned(preset: str) -> list[tuple[str, RunSpec, dict]]:
    """(domain, spec, settings) of every training unit of ``preset`` (C2–C4 share them)."""
    s = resolve_settings(preset)
    c2, img = s["C2"], (s["C4"].get("image") or None)
    out = [("mnist1d", r, c2) for r in c2_specs(c2)]
    out += [("image", r, img) for r in image_specs(img)] if img else []
    return out


def other_seconds(preset: str) -> float:
    path = ROOT / "docs" / "report" / preset / "results.json"
    if not path.is_file():
        return 0.0
    exp = json.loads(path.read_text())["experiments"]
    return sum(exp[c]["unit_compute_s"] for c in ("C1", "C5") if c in exp)


def makespan(costs: list[float], jobs: int) -> float:
    workers = [0.0] * jobs
    for c in sorted(costs, reverse=True):
        heapq.heapreplace(workers, workers[0] + c)
    return max(workers)


def price(preset: str, rows: list[dict], scale: float) -> dict:
    measured: dict[str, list[float]] = {}
    for row in rows:
        if row.get("preset", "full") != preset:
            continue
        if row.get("cpu_seconds") is not None:
            measured.setdefault(row_key(row), []).append(float(row["cpu_seconds"]))
    units, ratios = [], {}
    for domain, r, s in planned(preset):
        key = spec_key(domain, r, s.get("frozen_batch_norm", True))
        weight = train_unit(r, s).weight
        if key in measured:
            sec = statistics.mean(measured[key]) * scale
            ratios.setdefault(domain, []).append(sec / weight)
        else:
            sec = None
        units.append({"key": key, "label": r.label, "domain": domain, "weight": weight, "s": sec})
    for u in units:
        u["modelled"] = u["s"] is None
        if u["modelled"]:
            u["s"] = u["weight"] * statistics.median(ratios.get(u["domain"]) or [1.0])
    return {"units": units}


def measure_reference(spec: str, preset: str) -> float:
    """CPU seconds of one run of the reference configuration (``preset``, MNIST-1D) here."""
    s = resolve_settings(preset)["C2"]
    kind, width, depth = spec.split(":")
    r = RunSpec("width", kind, int(width), int(depth), "vicreg", 0)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    run_training(train_unit(r, s), Context(Path("."), "cpu", {}))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    print(
        f"reference {spec}: {time.time() - t0:.1f} s wall, {cpu:.1f} s CPU, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="full")
    ap.add_argument("--rows", nargs="+", type=Path, required=True)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reference", default="trained:128:2")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every measured row")
    ap.add_argument("--measure-reference", action="store_true")
    ap.add_argument("--other-seconds", type=float, help="C1 + C5 unit seconds")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    rows = [row for path in a.rows for row in json.loads(path.read_text())]
    ref_rows = [
        row
        for row in rows
        if row["spec"] == a.reference
        and row["domain"] == "mnist1d"
        and row.get("preset", "full") == a.preset
    ]
    ref = statistics.mean(r["cpu_seconds"] for r in ref_rows if r.get("cpu_seconds"))
    scale = a.scale
    if a.measure_reference:
        now = measure_reference(a.reference, a.preset)
        print(f"reference here / in the rows: {now / ref:.3f} (rows rescaled by it)")
        scale *= now / ref
    out = price(a.preset, rows, scale)
    units = out["units"]
    other = other_seconds(a.preset) if a.other_seconds is None else a.other_seconds
    train_s = sum(u["s"] for u in units)
    wall = makespan([u["s"] for u in units], a.jobs) + other / a.jobs
    groups: dict[str, dict] = {}
    for u in units:
        g = groups.setdefault(u["key"], {"n": 0, "s": u["s"], "modelled": u["modelled"]})
        g["n"] += 1
    print(f"| configuration | units | s / unit | × reference ({ref * scale:.0f} s) | source |")
    print("|---|---|---|---|---|")
    for key, g in sorted(groups.items(), key=lambda kv: -kv[1]["s"] * kv[1]["n"]):
        src = "modelled" if g["modelled"] else "measured"
        print(f"| {key} | {g['n']} | {g['s']:.0f} | {g['s'] / (ref * scale):.2f} | {src} |")
    print(
        f"\n{a.preset}: {len(units)} training units, {train_s / 60:.1f} min of unit compute "
        f"(+ C1/C5 {other / 60:.1f} min); {sum(u['modelled'] for u in units)} units modelled; "
        f"estimated clean-cache wall time with --jobs {a.jobs}: {wall / 60:.1f} min"
    )
    dest = a.json or ROOT / "benchmarks" / "results" / f"preset_cost_{a.preset}.json"
    dest.write_text(
        json.dumps(
            {
                "preset": a.preset,
                "jobs": a.jobs,
                "reference": a.reference,
                "reference_cpu_s": ref * scale,
                "scale": scale,
                "train_units": len(units),
                "modelled_units": sum(u["modelled"] for u in units),
                "unit_compute_min": round(train_s / 60, 2),
                "other_min": round(other / 60, 2),
                "estimated_wall_min": round(wall / 60, 1),
                "configurations": groups,
                "rows": [str(p) for p in a.rows],
            },
            indent=1,
        )
    )
    print(f"written: {dest}")


if __name__ == "__main__":
    main()
