"""The C2–C4 training runs as flat records, their sweeps, the hygiene guard and control pairs.

One record per distinct training run (``RunSpec`` fields + :func:`run_metrics`), in the order
of :func:`c2_specs`. :func:`sweep_groups` gives every sweep its runs (a run can serve several
sweeps); :func:`flagged_configs` applies the fixed hygiene rule
(:func:`vcreg.experiments.verdicts.flag_low_accuracy`); :func:`control_pairs` pairs a VCReg
configuration with its equal-budget control at the same width and seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vcreg.experiments._training import RunSpec, c2_specs, memberships, run_metrics
from vcreg.experiments.verdicts import flag_low_accuracy

__all__ = [
    "run_records",
    "sweep_groups",
    "flagged_configs",
    "without",
    "control_pairs",
    "matched_accuracy_point",
    "SSL_LOSSES",
]

SSL_LOSSES = ("vicreg", "barlow", "wmse")  # the VCReg family (InfoNCE and supervised: controls)


def run_records(settings: dict[str, Any], values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per run: the RunSpec fields, ``config_id`` and the measured metrics."""
    specs = c2_specs(settings)
    if len(specs) != len(values):
        raise ValueError(f"expected {len(specs)} runs, got {len(values)}")
    return [
        {**r.__dict__, "config_id": r.config_id, "method": r.method, **run_metrics(v)}
        for r, v in zip(specs, values, strict=True)
    ]


def sweep_groups(
    settings: dict[str, Any], recs: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    """Records of every sweep ("width", "depth", "loss", "control"), shared runs included."""
    by_key = {(r["config_id"], r["seed"]): r for r in recs}
    out: dict[str, list[dict[str, Any]]] = {}
    for group, specs in memberships(settings).items():
        out[group] = [_as_member(by_key[(s.config_id, s.seed)], s) for s in specs]
    return out


def _as_member(rec: dict[str, Any], spec: RunSpec) -> dict[str, Any]:
    return {**rec, "group": spec.group}


def flagged_configs(recs: list[dict[str, Any]], ratio: float) -> dict[str, float]:
    """Configurations (all but the supervised control) whose mean in-domain accuracy is below
    ``ratio`` × the median configuration's: ``{config_id: mean accuracy}``."""
    acc: dict[str, list[float]] = {}
    for r in recs:
        if r["loss"] != "supervised" and r["acc_id"] is not None:
            acc.setdefault(r["config_id"], []).append(r["acc_id"])
    return flag_low_accuracy(acc, ratio)


def without(recs: list[dict[str, Any]], flagged: dict[str, float]) -> list[dict[str, Any]]:
    return [r for r in recs if r["config_id"] not in flagged]


def control_pairs(
    recs: list[dict[str, Any]],
    treated: Callable[[dict[str, Any]], bool],
    control: Callable[[dict[str, Any]], bool],
    key: str,
    match: tuple[str, ...] = ("width", "seed"),
) -> tuple[list[float], list[float]]:
    """(treated values, control values) of ``key`` for runs matched on ``match``."""
    ctrl = {tuple(r[m] for m in match): r[key] for r in recs if control(r)}
    pairs = [
        (r[key], ctrl[tuple(r[m] for m in match)])
        for r in recs
        if treated(r) and tuple(r[m] for m in match) in ctrl
    ]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    return [a for a, _ in pairs], [b for _, b in pairs]


def matched_accuracy_point(
    history: list[dict[str, Any]], target_acc: float, key: str = "pairwise_hsic_mean"
) -> dict[str, Any] | None:
    """The first epoch ≥ 1 whose monitored probe accuracy reaches ``target_acc`` (the last
    epoch when none does): ``{"epoch", "acc", key}`` — the accuracy-matched control."""
    rows = [h for h in history if h.get("epoch", 0) >= 1 and h.get("linear_acc") is not None]
    rows = [h for h in rows if h.get(key) is not None]
    if not rows:
        return None
    hit = next((h for h in rows if h["linear_acc"] >= target_acc), rows[-1])
    return {"epoch": hit["epoch"], "acc": hit["linear_acc"], key: hit[key]}
