"""C3 — training dynamics: pairwise HSIC falls while dHSIC stagnates.

Uses the training runs of C2 (same cache units), whose trainer measured the representation's
mean pairwise HSIC, normalized HSIC and dHSIC on held-out test samples after every epoch
(``monitor.every = 1``; the first point is the encoder before training when the trainer records
it). Curves: the configuration ``loss``/``kind``/``width`` of the settings, mean ± sd over seeds.

Verdict (over every C2 run, one pair per run, Student-t CI over runs): (a) the relative change
``r_H = (HSIC_end − HSIC_start) / HSIC_start`` is negative; (b) dHSIC "stagnates" relative to
HSIC: ``r_H − r_D < 0`` (the pairwise measure falls more than the joint one).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcreg.experiments import c2_projector
from vcreg.experiments.report import Figure, Paragraph, Table
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import INCONCLUSIVE, Verdict, combine_verdicts, difference_verdict

CLAIM_ID = "C3"
TITLE = "Dynamics: pairwise HSIC falls, dHSIC stagnates"
CLAIM = (
    "During VCReg/VICReg training, the pairwise HSIC between the representation's features "
    "decreases while the mutual-independence measure dHSIC stagnates."
)

_KEYS = (("hsic", "pairwise_hsic_mean"), ("nhsic", "pairwise_nhsic_mean"), ("dhsic", "dhsic"))


def plan(settings: dict[str, Any]) -> list[Unit]:
    return c2_projector.plan(settings["train"])


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    return c2_projector.run_unit(unit, ctx)


def _curve(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = c2_projector.unique_runs(c2_projector.records(settings["train"], values))
    # relative changes over training, one pair per run
    r_h, r_d, rows = [], [], []
    r_h1, r_n = [], []  # companions: from the end of epoch 1; normalized HSIC
    for r in recs:
        _, hs = _curve(r["history"], "pairwise_hsic_mean")
        _, ds = _curve(r["history"], "dhsic")
        if len(hs) < 2 or len(ds) < 2 or hs[0] <= 0 or ds[0] <= 0:
            continue
        rh, rd = (hs[-1] - hs[0]) / hs[0], (ds[-1] - ds[0]) / ds[0]
        r_h.append(rh)
        r_d.append(rd)
        rows.append([r["config_id"], r["seed"], hs[0], hs[-1], rh, ds[0], ds[-1], rd])
        if len(hs) >= 3 and hs[1] > 0:
            r_h1.append((hs[-1] - hs[1]) / hs[1])
        _, ns = _curve(r["history"], "pairwise_nhsic_mean")
        if len(ns) >= 2 and ns[0] > 0:
            r_n.append((ns[-1] - ns[0]) / ns[0])
    if len(r_h) >= 2:
        v_fall = difference_verdict(r_h, [0.0] * len(r_h), "less", aname="r_HSIC", bname="0")
        v_stag = difference_verdict(r_h, r_d, "less", aname="r_HSIC", bname="r_dHSIC")
    else:
        v_fall = Verdict(INCONCLUSIVE, f"{len(r_h)} runs with monitored curves", "need ≥ 2 runs")
        v_stag = Verdict(INCONCLUSIVE, f"{len(r_h)} runs with monitored curves", "need ≥ 2 runs")
    v_fall.name = "pairwise HSIC falls"
    v_stag.name = "dHSIC changes less than pairwise HSIC"
    headline = (
        f"relative change over training (mean over {len(r_h)} runs): pairwise HSIC "
        f"{np.mean(r_h) * 100 if r_h else float('nan'):+.1f}%, dHSIC "
        f"{np.mean(r_d) * 100 if r_d else float('nan'):+.1f}%; "
        f"r_HSIC − r_dHSIC: {v_stag.statistic.split('= ', 1)[-1]}"
    )
    verdict = combine_verdicts([v_fall, v_stag], name="C3", statistic=headline)

    # curves of the selected configuration
    sel = [
        r
        for r in recs
        if r["group"] == "width"
        and r["loss"] == settings["loss"]
        and r["kind"] == settings["kind"]
        and r["width"] == settings["width"]
    ] or [r for r in recs if r["group"] == "width"][:1]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    curve_numbers: dict[str, Any] = {}
    for ax, (short, key) in zip(axes, _KEYS, strict=True):
        curves = [_curve(r["history"], key) for r in sel]
        curves = [c for c in curves if c[0]]
        if not curves:
            continue
        n = min(len(c[0]) for c in curves)
        ep = np.array(curves[0][0][:n])
        ys = np.array([c[1][:n] for c in curves])
        mean, sd = ys.mean(0), ys.std(0, ddof=1) if len(ys) > 1 else np.zeros(n)
        for y in ys:
            ax.plot(ep, y, color="C0", alpha=0.25, lw=1)
        ax.plot(ep, mean, "o-", color="C0", label=f"mean of {len(ys)} seeds")
        ax.fill_between(ep, mean - sd, mean + sd, color="C0", alpha=0.2, label="± sd")
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_ylabel(short)
        ax.legend(fontsize=8)
        curve_numbers[short] = {"epochs": ep.tolist(), "mean": mean.tolist(), "sd": sd.tolist()}
    cid = sel[0]["config_id"] if sel else "none"
    fig.suptitle(f"{cid}: independence of the representation along training")
    f_curves = ctx.save_figure(fig, "c3_dynamics")

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter(np.array(r_h) * 100, np.array(r_d) * 100, s=16)
    lim = [min([*r_h, *r_d, 0]) * 100 - 5, max([*r_h, *r_d, 0]) * 100 + 5]
    ax.plot(lim, lim, "k--", lw=1, label="equal change")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel("relative change of pairwise HSIC (%)")
    ax.set_ylabel("relative change of dHSIC (%)")
    ax.set_title("every run of the C2 sweep")
    ax.legend(fontsize=8)
    f_scatter = ctx.save_figure(fig, "c3_changes")

    measurement = (
        "The C2 training runs, each measured after every epoch on held-out test signals (mean "
        "pairwise HSIC, mean normalized HSIC and dHSIC of the representation). Curves: "
        f"configuration `{cid}` over {len(sel)} seeds; statistics over all {len(r_h)} runs."
    )
    blocks = [
        Figure(
            f_curves,
            "Pairwise HSIC, normalized HSIC and dHSIC along training (mean ± sd over seeds).",
        ),
        Figure(
            f_scatter, "Relative change over training of pairwise HSIC vs dHSIC, one point per run."
        ),
        Table(
            [
                "run",
                "seed",
                "HSIC start",
                "HSIC end",
                "r_HSIC",
                "dHSIC start",
                "dHSIC end",
                "r_dHSIC",
            ],
            rows,
            caption="Per-run values before training (start) and after the last epoch (end)",
        ),
    ]
    companions = []
    for name, vals in (
        ("pairwise HSIC, from the end of epoch 1 to the end", r_h1),
        ("normalized pairwise HSIC, from initialization", r_n),
    ):
        if len(vals) >= 2:
            dv = difference_verdict(vals, [0.0] * len(vals), "less", aname="r", bname="0")
            companions.append(
                [
                    name,
                    dv.values["mean_diff"],
                    dv.values["ci_low"],
                    dv.values["ci_high"],
                    dv.values["n"],
                ]
            )
    if companions:
        blocks.append(
            Table(
                ["relative change of", "mean", "CI low", "CI high", "runs"],
                companions,
                caption="Companion statistics (not part of the verdict; 95% t-CI over runs)",
            )
        )
    if r_d:
        blocks.append(
            Paragraph(
                f"dHSIC changed by {np.mean(r_d) * 100:+.1f}% on average (sd "
                f"{np.std(r_d, ddof=1) * 100 if len(r_d) > 1 else 0:.1f}%) vs {np.mean(r_h) * 100:+.1f}% for "
                "pairwise HSIC."
            )
        )
    numbers = {"per_run": rows, "curves": curve_numbers, "config": cid, "companions": companions}
    return Summary(measurement, verdict, numbers, blocks)
