"""What a reproduction will cost before it runs (``vcreg reproduce --estimate``): no training.

The cost model of one training unit (``seconds = steps × t_step + encoded × t_fwd``):

* **work**, from the unit's configuration: ``steps = epochs × ⌊n_train / batch⌋`` optimizer
  steps, and ``encoded`` samples passed through the encoder alone — the monitor's held-out
  samples and ridge-probe samples at every monitored epoch and at initialization, the final
  logistic probe's training samples, the test split and every out-of-domain set;
* **FLOPs** of one training step (two views through encoder and projector, the loss, the
  backward) at the unit's batch, and of one encoder forward per sample, counted exactly by
  ``torch.utils.flop_counter.FlopCounterMode`` on the meta device (matmuls and convolutions;
  hardware-independent), with the bytes autograd saves for the backward (activation memory);
* **time** ``t_step`` and ``t_fwd``: a short timed step of the unit's own model (its encoder,
  projector, loss, optimizer and the trainer's autocast rule) on random inputs, on the device
  this process detects — at the unit's batch on a GPU (halved until it fits; the estimate says
  it does not fit), on the CPU at :data:`CPU_CALIBRATION_BATCH` (×4 until a step takes
  :data:`CPU_MIN_STEP_SECONDS`: a small model's per-call overheads must not dominate), scaled
  to the unit's batch by the FLOP ratio. One calibration per distinct model (seeds share it).

Not modelled (listed in the output): data loading and augmentation (measured separately by
``benchmarks/bench_pipeline.py``), fitting the probes, the HSIC/dHSIC measures, start-up. Units
that train nothing (C1, C5) are costed by their preset weight (seconds on 2 CPU cores).
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from vcreg._device import resolve_device
from vcreg.data import ood_set_names
from vcreg.experiments import datafiles
from vcreg.experiments.cache import UnitCache
from vcreg.experiments.placement import makespan
from vcreg.experiments.presets import resolve_settings
from vcreg.experiments.runner import EXPERIMENT_MODULES, parse_only
from vcreg.models import build_model
from vcreg.training import TrainConfig
from vcreg.training.optim import build_optimizer
from vcreg.training.trainer import _autocast, build_loss

__all__ = [
    "CPU_CALIBRATION_BATCH",
    "StepCost",
    "calibrate",
    "estimate_plan",
    "estimate_reproduction",
    "format_estimate",
]

CPU_CALIBRATION_BATCH = 8  # first try; ×4 until a step takes CPU_MIN_STEP_SECONDS
CPU_MIN_STEP_SECONDS = 0.25
# The shapes and test-split sizes of the datasets, known without reading them.
INPUT_SHAPES = {
    "cifar10": (3, 32, 32),
    "cifar100": (3, 32, 32),
    "fashion-mnist": (1, 28, 28),
    "mnist1d": (1, 40),
}
TEST_SIZES = {"cifar10": 10_000, "cifar100": 10_000, "fashion-mnist": 10_000, "mnist1d": 1_000}
NOT_MODELLED = (
    "data loading and augmentation (benchmarks/bench_pipeline.py measures the pipeline)",
    "fitting the linear probes",
    "the HSIC / dHSIC measures",
    "process start-up and dataset loading",
)


@dataclass
class StepCost:
    """One model's calibration: FLOPs and seconds of a training step at ``batch`` and of one
    encoder forward per sample, on ``device``."""

    batch: int
    calib_batch: int
    step_flops: float
    step_seconds: float
    fwd_flops: float
    fwd_seconds: float
    activation_bytes: float  # saved for the backward at ``batch``, float32
    peak_bytes: float | None  # device memory of a step at ``batch`` (CUDA: measured, scaled)
    fits: bool | None  # a step at ``batch`` ran on the device (None: not tried, CPU)
    timed: bool = True  # False: seconds from the FLOP rate of a timed model (CPU)

    @property
    def rates(self) -> tuple[float, float]:
        """(training-step FLOP/s, encoder-forward FLOP/s) sustained in the calibration."""
        return self.step_flops / self.step_seconds, self.fwd_flops / self.fwd_seconds


def _views(shape: Sequence[int], batch: int, device: Any):
    if str(device) == "meta":
        x = torch.empty(batch, *shape, device="meta")
        return x, x, torch.zeros(batch, dtype=torch.long, device="meta")
    gen = torch.Generator().manual_seed(0)
    xa = torch.randn(batch, *shape, generator=gen).to(device)
    xb = torch.randn(batch, *shape, generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    return xa, xb, y


def _step_fn(cfg: TrainConfig, model, loss_fn, optimizer, views, device) -> Callable[[], None]:
    """One optimizer step as the trainer takes it (autocast rule, float32 loss)."""
    xa, xb, y = views

    def step() -> None:
        with _autocast(cfg, torch.device(device)):
            za, zb = model(xa), model(xb)
        try:
            if getattr(loss_fn, "needs_labels", False):
                loss = loss_fn(za.float(), zb.float(), y)
            else:
                loss = loss_fn(za.float(), zb.float())
        except RuntimeError:  # on meta, a loss that reads values (label checks): the model's
            if str(device) != "meta":  # FLOPs count, not the loss's (a cross-entropy)
                raise
            loss = za.float().sum() + zb.float().sum()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if optimizer is not None:
            optimizer.step()

    return step


def _count(cfg: TrainConfig, model, loss_fn, shape, batch: int) -> tuple[float, float, float]:
    """``(step FLOPs, forward FLOPs per sample, bytes saved for the backward)`` of a model on
    the meta device."""
    saved = [0.0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    counter = FlopCounterMode(display=False)
    with counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _step_fn(cfg, model.train(), loss_fn, None, _views(shape, batch, "meta"), "meta")()
    fwd = FlopCounterMode(display=False)
    with fwd, torch.no_grad():
        model.encoder.eval()(torch.empty(1, *shape, device="meta"))
    return float(counter.get_total_flops()), float(fwd.get_total_flops()), saved[0]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], None], device: torch.device, min_seconds: float = 0.5) -> float:
    """Seconds per call after one warm-up call: repeated until ``min_seconds`` (at most 5)."""
    fn()
    _sync(device)
    t0, reps = time.perf_counter(), 0
    while reps < 5 and (reps == 0 or time.perf_counter() - t0 < min_seconds):
        fn()
        reps += 1
    _sync(device)
    return (time.perf_counter() - t0) / reps


def _time_step(cfg, model, loss_fn, shape, batch: int, device: torch.device) -> tuple[float, float]:
    """``(seconds per training step, peak bytes)`` at ``batch`` on ``device``."""
    optimizer = build_optimizer([model], cfg.optimizer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    views = _views(shape, batch, device)
    seconds = _timed(_step_fn(cfg, model.train(), loss_fn, optimizer, views, device), device)
    peak = float(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else 0.0
    return seconds, peak


def _time_forward(encoder, shape, device: torch.device, calib: int) -> float:
    """Seconds per sample of the encoder alone, as ``vcreg.evaluation.encode`` runs it (in
    batches of 1024; on a CPU 4 × the training step's calibration batch, at most 1024)."""
    batch = 1024 if device.type == "cuda" else min(1024, 4 * calib)
    x = torch.randn(batch, *shape).to(device)
    encoder.eval()

    def fwd() -> None:
        with torch.no_grad():
            encoder(x)

    return _timed(fwd, device) / batch


def calibrate(
    cfg: TrainConfig, device: torch.device, rates: tuple[float, float] | None = None
) -> StepCost:
    """A timed step of ``cfg``'s model on ``device``, then its FLOPs on the meta device (module
    docstring). ``rates`` = (training-step FLOP/s, forward FLOP/s) of a model with the same
    encoder measured on this CPU: the step is not timed again (CPU only: a GPU's efficiency
    and memory depend on the projector, so each model is timed there)."""
    shape, batch = INPUT_SHAPES[cfg.data.name], cfg.batch_size
    torch.manual_seed(0)
    model, loss_fn = build_model(cfg, tuple(shape)).to(device), build_loss(cfg).to(device)
    calib = batch if device.type == "cuda" else min(batch, CPU_CALIBRATION_BATCH)
    fits = True if device.type == "cuda" else None
    timed = rates is None or device.type == "cuda"
    seconds = peak = fwd_seconds = 0.0
    while timed:
        try:
            seconds, peak = _time_step(cfg, model, loss_fn, shape, calib, device)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if calib <= 8:
                raise
            calib, fits = calib // 2, False
            continue
        if device.type == "cuda" or calib >= batch or seconds >= CPU_MIN_STEP_SECONDS:
            break
        calib = min(batch, 4 * calib)  # a small model: per-call overheads would dominate
    if timed:
        fwd_seconds = _time_forward(model.encoder, shape, device, calib)
    model, loss_fn = model.to("meta"), loss_fn.to("meta")
    step_flops, fwd_flops, saved = _count(cfg, model, loss_fn, shape, batch)
    if not timed:
        seconds, fwd_seconds = step_flops / rates[0], fwd_flops / rates[1]
    elif calib != batch:  # scaled by the FLOP ratio (CPU; or a GPU too small for the batch)
        seconds *= step_flops / max(_count(cfg, model, loss_fn, shape, calib)[0], 1.0)
        peak = peak * batch / calib
    return StepCost(
        batch=batch,
        calib_batch=calib,
        step_flops=step_flops,
        step_seconds=seconds,
        fwd_flops=fwd_flops,
        fwd_seconds=fwd_seconds,
        activation_bytes=saved,
        peak_bytes=peak or None,
        fits=fits,
        timed=timed,
    )


def _workload(params: dict[str, Any], root: str | None) -> tuple[int, int]:
    """``(optimizer steps, samples encoded)`` of a training unit (module docstring)."""
    c = params["config"]
    data, mon = c["data"], c["monitor"]
    n_train = data["train_samples"]
    steps = c["epochs"] * (n_train // c["batch_size"])
    every = mon.get("every", 1)
    monitored = (c["epochs"] // every + 1) if every else 0
    probe = mon.get("probe_train_samples") or n_train
    opts = dict(data.get("options") or {})
    n_ood = len(ood_set_names(data["name"], root, **opts)) if opts.get("ood", True) else 0
    ood_each = opts.get("ood_samples") or TEST_SIZES.get(data["name"], 0)
    final = (params.get("probe_train") or n_train) + TEST_SIZES.get(data["name"], 0)
    encoded = (monitored + 1) * (mon["samples"] + probe) + mon["samples"] + final
    return steps, encoded + n_ood * ood_each


def _signature(config: dict[str, Any]) -> str:
    """The model and batch a unit trains (its calibration key: not the seed or the name)."""
    keep = {k: config[k] for k in ("batch_size", "encoder", "projector", "loss", "optimizer")}
    return json.dumps({**keep, "data": {"name": config["data"]["name"]}}, sort_keys=True)


def _encoder_key(config: dict[str, Any]) -> str:
    """Models sharing an encoder, input and batch: on a CPU they share one FLOP rate."""
    keep = {k: config[k] for k in ("batch_size", "encoder")}
    return json.dumps({**keep, "data": config["data"]["name"]}, sort_keys=True)


def _train_cost(unit, claim, root, device, calibrations) -> dict[str, Any]:
    config = copy.deepcopy(unit.params["config"])
    key = _signature(config)
    if key not in calibrations:
        cfg = TrainConfig.from_dict({**config, "device": str(device)})
        family = _encoder_key(config)
        same = [
            c for k, c in calibrations.items() if c.timed and _encoder_key(json.loads(k)) == family
        ]
        calibrations[key] = calibrate(cfg, device, same[0].rates if same else None)
    cost = calibrations[key]
    steps, encoded = _workload(unit.params, root)
    seconds = steps * cost.step_seconds + encoded * cost.fwd_seconds
    return {
        "label": unit.label,
        "claim": claim,
        "steps": steps,
        "encoded": encoded,
        "flops": steps * cost.step_flops + encoded * cost.fwd_flops,
        "seconds": seconds,
        "batch": cost.batch,
        "activation_gib": cost.activation_bytes / 2**30,
        "peak_gib": cost.peak_bytes / 2**30 if cost.peak_bytes else None,
        "fits": cost.fits,
        "calibration": key,
    }


def _device_info(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {
            "type": "cuda",
            "name": props.name,
            "count": torch.cuda.device_count(),
            "memory_gib": props.total_memory / 2**30,
        }
    return {"type": device.type, "name": "cpu", "count": 1, "cpu_count": os.cpu_count()}


def estimate_plan(
    plans: dict[str, list[Any]],
    settings: dict[str, Any],
    device: str = "auto",
    data_root: str | None = None,
    cache: UnitCache | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The cost of ``plans`` (claim -> units, as the runner plans them) on ``device``: per
    unit, in total, and as wall time on 1, the detected, 8 and 16 devices (:func:`makespan`
    of the units over that many ranks). Units found in ``cache`` cost nothing."""
    dev = resolve_device(device)
    calibrations: dict[str, StepCost] = {}
    units, seen = [], set()
    for claim, plan in plans.items():
        for unit in plan:
            key = (unit.namespace, json.dumps(unit.params, sort_keys=True, default=str))
            if key in seen:
                continue
            seen.add(key)
            if cache is not None and cache.contains(unit.namespace, unit.params):
                units.append({"label": unit.label, "claim": claim, "seconds": 0.0, "cached": True})
                continue
            if unit.namespace == "train":
                if progress:
                    progress(f"calibrating {unit.label}")
                units.append(_train_cost(unit, claim, data_root, dev, calibrations))
            else:  # C1 / C5 work: the preset's weight
                units.append({"label": unit.label, "claim": claim, "seconds": float(unit.weight)})
    info = _device_info(dev)
    seconds = [u["seconds"] for u in units]
    walls = sorted({1, info["count"], 8, 16})
    return {
        "device": info,
        "units": units,
        "total": {
            "units": len(units),
            "cached": sum(bool(u.get("cached")) for u in units),
            "device_hours": sum(seconds) / 3600,
            "pflop": sum(u.get("flops", 0.0) for u in units) / 1e15,
            "wall_hours": {str(n): makespan(seconds, n) / 3600 for n in walls},
        },
        "calibration": {k: asdict(v) for k, v in calibrations.items()},
        "data": datafiles.data_status(settings, data_root),
        "not_modelled": list(NOT_MODELLED),
    }


def estimate_reproduction(
    preset: str = "paper",
    only: str | Sequence[str] | None = None,
    seeds: int | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`estimate_plan` of what ``run_reproduction`` with these arguments would compute
    (the same settings, plans and unit keys; units in ``out``'s cache cost nothing). Reads the
    cache, writes nothing, trains nothing."""
    claims = parse_only(only)
    dev = str(resolve_device(device))
    settings = resolve_settings(preset, seeds=seeds, overrides=overrides, device=dev)
    root = str(data_root) if data_root is not None else None
    notes = datafiles.resolve_ood_sources(settings, root)
    plans = {c: importlib.import_module(EXPERIMENT_MODULES[c]).plan(settings[c]) for c in claims}
    out_dir = Path(out if out is not None else Path("reports") / preset)
    cache = UnitCache(out_dir / "cache") if (out_dir / "cache").is_dir() else None
    est = estimate_plan(plans, settings, dev, root, cache, progress)
    est.update(preset=preset, claims=claims, data_notes=notes, out=str(out_dir))
    return est


def _hours(h: float) -> str:
    return f"{h * 60:.1f} min" if h < 1 else f"{h:.1f} h"


def _rows(units: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int, int]]:
    """``(unit, count, cached)`` per configuration: units differing only in their seed share a
    row (the cost of one unit shown, the count beside it)."""
    rows: dict[tuple[str, str], list] = {}
    for u in units:
        key = (u["claim"], re.sub(r" seed=\d+", "", u["label"]))
        row = rows.setdefault(key, [None, 0, 0])
        row[1] += 1
        if u.get("cached"):
            row[2] += 1
        elif row[0] is None:
            row[0] = u
    return [({**(u or {}), "label": k[1], "claim": k[0]}, n, c) for k, (u, n, c) in rows.items()]


def format_estimate(est: dict[str, Any]) -> str:
    """The estimate as text: data, hardware, one line per configuration (× its seeds), totals."""
    dev, tot = est["device"], est["total"]
    lines = ["Data:"]
    for d in est["data"]:
        lines += _data_lines(d)
    for note in est.get("data_notes") or []:
        lines.append(f"  WARNING: {note}")
    gpu = dev["type"] == "cuda"
    hw = f"{dev['count']} × {dev['name']}" if gpu else f"CPU ({dev['cpu_count']} cores)"
    how = "at its batch" if gpu else "at a smaller batch, scaled by FLOPs"
    hours = f"{'GPU' if gpu else 'CPU'}-h"
    lines += [
        "",
        f"Hardware detected: {hw}; times from a timed step of each model on it ({how}).",
        "",
        f"{'claim':5} {'unit (per seed)':40} {'units':>5} {'steps':>6} {'encoded':>8} "
        f"{'PFLOP':>7} {hours:>8}  memory",
    ]
    for u, n, cached in _rows(est["units"]):
        head = f"{u['claim']:5} {u['label'][:40]:40} {n:5d}"
        if cached == n:
            lines.append(f"{head}  all cached: nothing to compute")
            continue
        done = f"  ({cached} cached)" if cached else ""
        if "steps" not in u:
            lines.append(
                f"{head} {'':>6} {'':>8} {'':>7} {u['seconds'] / 3600:8.3f}  "
                f"(preset weight: seconds on 2 CPU cores){done}"
            )
            continue
        lines.append(
            f"{head} {u['steps']:6d} {u['encoded']:8d} {u['flops'] / 1e15:7.2f} "
            f"{u['seconds'] / 3600:8.3f}  {_memory(u, dev)}{done}"
        )
    walls = ", ".join(
        f"{n} device{'s' if n != '1' else ''}: {_hours(h)}" for n, h in tot["wall_hours"].items()
    )
    lines += [
        "",
        f"Total: {tot['units']} units ({tot['cached']} cached), {tot['pflop']:.1f} PFLOP, "
        f"{tot['device_hours']:.1f} {hours.replace('-h', '-hours')} on this hardware.",
        f"Wall time, units placed over ranks (torchrun, one unit per device at a time): {walls}.",
        "Not modelled: " + "; ".join(est["not_modelled"]) + ".",
    ]
    return "\n".join(lines)


def _memory(u: dict[str, Any], dev: dict[str, Any]) -> str:
    act = f"activations {u['activation_gib']:.2g} GiB (fp32) at batch {u['batch']}"
    if dev["type"] != "cuda":
        return act
    if u["fits"] is False:
        return f"DOES NOT FIT at batch {u['batch']} (est. {u['peak_gib']:.0f} GiB > {dev['memory_gib']:.0f} GiB)"
    return f"peak {u['peak_gib']:.1f} GiB of {dev['memory_gib']:.0f}"


def _data_lines(d: dict[str, Any]) -> list[str]:
    if d.get("format") == "generated":
        return [f"  {d['dataset']}: generated (nothing to download)"]
    if "root" not in d:
        return [f"  {d['dataset']}: {d.get('format')}"]
    out = []
    if d["found"]:
        out.append(f"  {d['dataset']}: found {d['path']} ({d['format']})")
    else:
        out.append(f"  {d['dataset']}: MISSING under {d['root']}: " + ", ".join(d["missing"]))
    ood = d.get("ood")
    if ood:
        title = f"{d['dataset']}-C"
        if ood["source"] == "cifar-c" and not ood["missing"]:
            out.append(f"  {title}: found {ood['path']} ({ood['sets']} out-of-domain sets)")
        elif ood["source"] == "cifar-c":
            out.append(f"  {title}: MISSING: " + ", ".join(ood["missing"]))
        else:
            out.append(
                f"  {title}: MISSING ({ood['path']} has no labels.npy): vcreg's generated "
                f"corruptions would stand in ({ood['sets']} sets), said in the report"
            )
    if not d["found"] or (ood and ood["source"] != "cifar-c"):
        out.append(f"  where to get them: {d['where_to_get']}")
    return out
