"""Run the claim experiments, cache their work units, and write the report.

Every experiment module (``c1_bridge`` … ``c5_ica``) provides::

    CLAIM_ID, TITLE, CLAIM             # what the paper claims, in words
    plan(settings) -> list[Unit]      # the work, split into cacheable units
    run_unit(unit, ctx) -> dict       # one unit (JSON-serialisable result)
    summarize(settings, values, ctx) -> Summary   # verdict, numbers, tables, figures

Units are cached under ``<out>/cache/<namespace>/`` (see :mod:`vcreg.experiments.cache`), so an
interrupted run resumes where it stopped and experiments sharing units (C2/C3/C4 share their
training runs) compute them once. Summaries are recomputed from the cached values on every run:
verdicts, tables and figures always come from the stored measurements.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcreg import __version__
from vcreg._device import resolve_device
from vcreg._io import atomic_open, atomic_write_text
from vcreg._lock import FolderLock
from vcreg._progress import WorkProgress, resolve_progress
from vcreg.experiments import datafiles, placement
from vcreg.experiments.cache import UnitCache, to_jsonable
from vcreg.experiments.parallel import compute_pending
from vcreg.experiments.presets import CLAIM_IDS, resolve_settings
from vcreg.experiments.report import Block, badge, render_html, render_markdown, stability
from vcreg.experiments.report_sections import build_report_blocks
from vcreg.experiments.verdicts import Verdict, parts_line, retarget_hints

__all__ = ["Unit", "Summary", "Context", "run_reproduction", "EXPERIMENT_MODULES"]

EXPERIMENT_MODULES: dict[str, str] = {
    "C1": "vcreg.experiments.c1_bridge",
    "C2": "vcreg.experiments.c2_projector",
    "C3": "vcreg.experiments.c3_dynamics",
    "C4": "vcreg.experiments.c4_ood",
    "C5": "vcreg.experiments.c5_ica",
}


@dataclass
class Unit:
    """One cacheable piece of work. ``params`` fully determine its result (they form the key)."""

    namespace: str
    params: dict[str, Any]
    label: str
    weight: float = 1.0  # rough cost in seconds on 2 CPU cores, for the time-left estimate


@dataclass
class Summary:
    """What an experiment reports: the measurement, the verdict and every number behind it."""

    measurement: str
    verdict: Verdict
    numbers: dict[str, Any]
    blocks: list[Block] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # the verdict under other analysis choices (verdicts.sensitivity_rows); main row first
    sensitivity: list[dict[str, Any]] = field(default_factory=list)
    # parts of the measurement that were not run (e.g. a domain whose data are not installed):
    # named in the report header and the terminal summary
    skipped: list[str] = field(default_factory=list)
    # the sizes of this claim's run in a phrase, from its settings and results (report header;
    # claims sharing runs give the same phrase, said once)
    scale: str = ""


@dataclass
class Context:
    """What experiments get from the runner: device, output folders, settings of all claims."""

    out_dir: Path
    device: str
    settings: dict[str, Any]
    figures: list[str] = field(default_factory=list)
    dpi: int = 110
    preset: str = ""
    # folder of the datasets read from files (``--data-root``): where this process finds them,
    # so not part of any unit's key (ranks on different machines may keep them elsewhere)
    data_root: str | None = None

    @property
    def figures_dir(self) -> Path:
        return self.out_dir / "figures"

    def save_figure(self, fig: Any, name: str) -> str:
        """Save a matplotlib figure as ``figures/<name>.png`` (atomic); returns the relative path."""
        import matplotlib.pyplot as plt

        self.figures_dir.mkdir(parents=True, exist_ok=True)
        rel = f"figures/{name}.png"
        fig.tight_layout()  # one draw, cheaper than bbox_inches="tight"
        with atomic_open(self.out_dir / rel, "wb") as fh:
            fig.savefig(fh, dpi=self.dpi, format="png")
        plt.close(fig)
        self.figures.append(rel)
        return rel


def _versions() -> dict[str, Any]:
    import importlib.metadata as md

    pkgs = ["torch", "numpy", "scipy", "scikit-learn", "matplotlib", "mnist1d", "python-picard"]
    versions: dict[str, Any] = {"vcreg": __version__, "python": sys.version.split()[0]}
    for p in pkgs:
        try:
            versions[p] = md.version(p)
        except md.PackageNotFoundError:
            versions[p] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
        )
        versions["git_commit"] = commit.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        versions["git_commit"] = None
    return versions


def _environment(device: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        env["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
    try:
        env["load_average_at_start"] = list(os.getloadavg())
    except OSError:
        env["load_average_at_start"] = None
    return env


def _load(claim: str):
    return importlib.import_module(EXPERIMENT_MODULES[claim])


def parse_only(only: str | Sequence[str] | None) -> list[str]:
    """``"C1,c3"`` / ``["C1", "C3"]`` / ``None`` -> ordered list of claim ids (validated)."""
    if only is None:
        return list(CLAIM_IDS)
    items = only.split(",") if isinstance(only, str) else list(only)
    claims = [c.strip().upper() for c in items if c.strip()]
    unknown = [c for c in claims if c not in CLAIM_IDS]
    if unknown or not claims:
        raise ValueError(
            f"unknown claim(s) {unknown or only!r}; choose from {', '.join(CLAIM_IDS)}"
        )
    return [c for c in CLAIM_IDS if c in claims]


def _pending(plans: dict[str, list[Unit]], cache: UnitCache) -> list[tuple[str, Unit]]:
    """``(module, unit)`` of the units still to compute (units shared by C2–C4 once)."""
    pending: dict[Path, tuple[str, Unit]] = {}
    for claim, units in plans.items():
        for u in units:
            if not cache.contains(u.namespace, u.params):
                pending.setdefault(
                    cache.path(u.namespace, u.params), (EXPERIMENT_MODULES[claim], u)
                )
    return list(pending.values())


class _ClaimRun:
    """One claim: compute (or reuse) its units, then summarize; errors are kept, not raised."""

    def __init__(
        self, mod, plan, settings, cache: UnitCache, ctx: Context, bar, fresh: set[Path]
    ) -> None:
        self.mod, self.plan, self.settings = mod, plan, settings
        self.cache, self.ctx, self.bar = cache, ctx, bar
        self.fresh = fresh  # units computed by worker processes, not yet credited to a claim
        self.computed = self.cached = 0
        self.seconds = 0.0
        self.unit_seconds: dict[Path, float] = {}

    def values(self, claim: str) -> list[dict[str, Any]]:
        values = []
        for unit in self.plan:
            record = self.cache.get(unit.namespace, unit.params)
            if record is None:
                self.bar.describe(f"{claim} {unit.label}")
                u0 = time.time()
                value = self.mod.run_unit(unit, self.ctx)
                record = self.cache.put(unit.namespace, unit.params, value, time.time() - u0)
                self.bar.done(f"{claim} {unit.label}", unit.weight, record["seconds"])
                self.computed += 1
            elif self.cache.path(unit.namespace, unit.params) in self.fresh:
                # credited to the first claim that uses it; later claims reuse it
                self.fresh.discard(self.cache.path(unit.namespace, unit.params))
                self.computed += 1
            else:
                self.cached += 1
            values.append(record["value"])
            sec = float(record.get("seconds", 0.0))
            self.seconds += sec
            self.unit_seconds[self.cache.path(unit.namespace, unit.params)] = sec
        return values

    def execute(self, claim: str, say) -> tuple[dict[str, Any], Summary | None]:
        t0 = time.time()
        mod = self.mod
        entry: dict[str, Any] = {"title": mod.TITLE, "claim": mod.CLAIM, "settings": self.settings}
        summary = None
        try:
            values = self.values(claim)
            self.bar.describe(f"{claim} summarizing")
            self.ctx.figures = []
            summary = mod.summarize(self.settings, values, self.ctx)
            summary.figures = list(self.ctx.figures)
            retarget_hints(summary.verdict, self.ctx.preset)
            entry.update(
                measurement=summary.measurement,
                verdict=summary.verdict.to_dict(),
                numbers=to_jsonable(summary.numbers),
                figures=summary.figures,
                notes=summary.notes,
                sensitivity=summary.sensitivity,
                stability=stability(summary.sensitivity) if summary.sensitivity else None,
                skipped=summary.skipped,
            )
            line = parts_line(summary.verdict)
            say(
                f"{claim} {badge(summary.verdict.status)}"
                + (f" [{line}]" if line else "")
                + f": {summary.verdict.statistic}"
            )
            for what in summary.skipped:
                say(f"{claim} SKIPPED PART: {what}")
        except Exception as exc:  # one failing experiment must not lose the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["traceback"] = traceback.format_exc()
            say(f"{claim} FAILED: {entry['error']}")
            summary = None
        entry.update(
            wall_time_s=time.time() - t0,
            units_computed=self.computed,
            units_cached=self.cached,
            unit_compute_s=self.seconds,
        )
        return entry, summary


def run_reproduction(
    preset: str = "quick",
    only: str | Sequence[str] | None = None,
    seeds: int | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool | str = True,
    overrides: dict[str, dict[str, Any]] | None = None,
    command: str | None = None,
    log: Callable[[str], None] | None = None,
    jobs: int = 1,
    data_root: str | Path | None = None,
) -> dict[str, Any]:
    """Re-run the paper's claims and write ``report.md``, ``report.html``, ``results.json``.

    Args:
        preset: ``"tiny"`` (seconds, for tests), ``"quick"`` (a first look on CPU; the README
            gives its measured time) or ``"full"`` (statistically meaningful settings).
        only: subset of claims, e.g. ``"C1,C5"``.
        seeds: number of seeds for the claims that repeat over seeds (overrides the preset).
        out: output folder (default ``reports/<preset>``).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        force: recompute every unit even if cached.
        progress: ``True`` (a bar on a terminal, else one line per unit with the time left
            estimated from the units' costs), ``"log"`` (lines), ``"bar"`` or ``False``
            (:mod:`vcreg._progress`).
        overrides: ``{"C2": {"epochs": 3}}`` — per-claim setting overrides (advanced).
        jobs: units computed at once in worker processes (:mod:`vcreg.experiments.parallel`),
            each with ``cpu_count // jobs`` torch threads; 1 = in this process, in order.
            Under ``torchrun`` (``WORLD_SIZE`` > 1) the units are placed on the job's ranks
            instead, one at a time per rank (:mod:`vcreg.experiments.placement`).
        data_root: folder holding the datasets read from files (CIFAR-10, CIFAR-10-C).

    Returns the content of ``results.json`` as a dict; under ``torchrun``, on ranks other than
    0, what the rank computed (``rank``, ``units``, ...: rank 0 writes the report). Raises
    :class:`~vcreg._lock.FolderLockedError` at once if another vcreg process writes to ``out``
    (two runs into one folder would interleave their cache and report files).
    """
    claims = parse_only(only)
    if int(jobs) < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs}")
    device = str(resolve_device(device))
    settings = resolve_settings(preset, seeds=seeds, overrides=overrides, device=device)
    out_dir = Path(out if out is not None else Path("reports") / preset)
    root = str(data_root) if data_root is not None else None
    data_notes = datafiles.resolve_ood_sources(settings, root)  # the OOD source: in the unit keys
    check = functools.partial(datafiles.missing_for_units, root=root)
    with placement.join(device) as job:
        if job.rank != 0:  # rank 0 alone owns the output folder
            ctx = Context(out_dir=out_dir, device=device, settings=settings, data_root=root)
            return placement.serve(job, ctx, Unit, check=check)
        with FolderLock(out_dir, purpose="vcreg reproduce"):
            meta = {"preset": preset, "command": command, "seeds_override": seeds, "force": force}
            meta.update(jobs=1 if job.distributed else int(jobs), data_root=root, job=job)
            meta.update(data_notes=data_notes, check=check)
            return _reproduce(claims, settings, out_dir, device, meta, progress, log)


def _reproduce(
    claims: list[str],
    settings: dict[str, Any],
    out_dir: Path,
    device: str,
    meta: dict[str, Any],
    progress: bool | str,
    log: Callable[[str], None] | None,
) -> dict[str, Any]:
    """:func:`run_reproduction` once its arguments are resolved and ``out_dir`` is locked."""
    preset, force = meta["preset"], meta["force"]
    cache = UnitCache(out_dir / "cache", force=force)
    ctx = Context(
        out_dir=out_dir,
        device=device,
        settings=settings,
        dpi=50 if preset == "tiny" else 110,
        preset=preset,
        data_root=meta["data_root"],
    )
    started = time.time()
    job = meta["job"]
    environment = {**_environment(device), "jobs": meta["jobs"]}  # load average before the work
    environment["world_size"] = job.world

    modules = {c: _load(c) for c in claims}
    plans = {c: modules[c].plan(settings[c]) for c in claims}
    pending = _pending(plans, cache)
    if not job.distributed:  # under torchrun every rank checks its own machine (placement)
        missing = meta["check"]([u for _, u in pending])
        if missing:
            raise FileNotFoundError("; ".join(missing))
    now = {cache.path(u.namespace, u.params) for _, u in pending}  # computed by this run
    bar = WorkProgress(
        sum(u.weight for _, u in pending),
        len(pending),
        mode=resolve_progress(progress),
        jobs=job.world if job.distributed else meta["jobs"],
        write=log,
    )
    say = bar.write
    for note in meta["data_notes"]:
        say(f"WARNING: {note}")

    experiments: dict[str, Any] = {}
    summaries: dict[str, Summary] = {}
    unit_seconds: dict[Path, float] = {}  # compute time of every unit used (shared ones once)
    try:
        fresh: set[Path] = set()

        def done(u: Unit) -> None:
            fresh.add(cache.path(u.namespace, u.params))
            seconds = (cache.get(u.namespace, u.params) or {}).get("seconds", 0.0)
            bar.done(u.label, u.weight, seconds)

        if job.distributed:  # every rank waits for the unit list, even an empty one
            bar.describe(f"{len(pending)} units on {job.world} ranks")
            placement.compute_on_ranks(job, pending, cache, ctx, done, say, meta["check"])
            environment["ranks"] = job.ranks
        elif meta["jobs"] > 1 and len(pending) > 1:
            bar.describe(f"{len(pending)} units, {meta['jobs']} at once")
            compute_pending(pending, cache, ctx, meta["jobs"], done, say)
        for claim in claims:
            run = _ClaimRun(modules[claim], plans[claim], settings[claim], cache, ctx, bar, fresh)
            experiments[claim], summary = run.execute(claim, say)
            experiments[claim]["units_from_earlier_runs"] = sum(
                p not in now for p in run.unit_seconds
            )
            unit_seconds.update(run.unit_seconds)
            if summary is not None:
                summaries[claim] = summary
    finally:
        bar.close()

    results = {
        "preset": preset,
        "command": meta["command"],
        "claims": claims,
        "seeds_override": meta["seeds_override"],
        "force": force,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_time_s": time.time() - started,
        # time spent computing the units this report uses, in this or earlier (resumed) runs
        "unit_compute_s": sum(unit_seconds.values()),
        "units": _unit_counts(unit_seconds, now),
        "versions": _versions(),
        "environment": environment,
        "data": {
            "root": meta["data_root"],
            "notes": meta["data_notes"],
            "datasets": datafiles.data_status(settings, meta["data_root"]),
        },
        "experiments": experiments,
    }
    try:
        results["environment"]["load_average_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    results = to_jsonable(results)
    _write_outputs(out_dir, results, summaries)
    return results


def _unit_counts(unit_seconds: dict[Path, float], now: set[Path]) -> dict[str, Any]:
    """How many of the units this report uses were computed by this run, how many came from
    the cache of earlier runs, and their compute seconds (the report's cache sentences)."""
    this = [s for p, s in unit_seconds.items() if p in now]
    earlier = [s for p, s in unit_seconds.items() if p not in now]
    return {
        "computed_in_this_run": len(this),
        "from_earlier_runs": len(earlier),
        "compute_s_this_run": sum(this),
        "compute_s_earlier": sum(earlier),
    }


def _write_outputs(out_dir: Path, results: dict[str, Any], summaries: dict[str, Summary]) -> None:
    """``results.json``, ``report.md`` and the self-contained ``report.html`` (atomic writes)."""
    atomic_write_text(out_dir / "results.json", json.dumps(results, indent=1, allow_nan=False))
    blocks = build_report_blocks(results, summaries)
    atomic_write_text(out_dir / "report.md", render_markdown(blocks))
    title = f"vcreg reproduce ({results['preset']})"
    atomic_write_text(out_dir / "report.html", render_html(blocks, out_dir, title=title))
