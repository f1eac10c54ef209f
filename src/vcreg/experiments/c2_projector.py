"""C2 — which projectors favour pairwise independence (MNIST-1D sweep).

Runs (shared with C3/C4, see :mod:`vcreg.experiments._training`): VICReg with a 2-layer MLP
projector of width k ∈ ``widths`` (trained or frozen at its random init), element-wise random
Fourier features with k = d·m outputs, MLP depth 1–3 at ``depth_width``, and VICReg vs Barlow
Twins vs W-MSE with a common ``loss_spec`` projector; every configuration × ``seeds``.
Measured per run on held-out test samples: mean pairwise HSIC and mean normalized HSIC between
the representation's features (``vcreg.training.evaluate_run``).

Verdict parts: (a) wider → lower mean pairwise HSIC, for each projector kind — trained MLP,
frozen random MLP ("random frozen projectors also enforce it") and random features (Spearman ρ
between width and HSIC over configs × seeds, bootstrap CI); (b) depth changes it
(Kruskal-Wallis across depths). Reported alongside: frozen − trained HSIC at equal width and the
change from the encoder at initialization (paired t-CIs).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from vcreg.experiments._training import (
    c2_specs,
    run_metrics,
    run_training,
    seeds_mean_sd,
    train_unit,
)
from vcreg.experiments.report import Figure, Paragraph, Table
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import (
    INCONCLUSIVE,
    Verdict,
    combine_verdicts,
    difference_verdict,
    group_difference_verdict,
    trend_verdict,
)

CLAIM_ID = "C2"
TITLE = "Projector: width, depth and random projectors vs pairwise independence"
CLAIM = (
    "Wider projectors give more pairwise-independent representations (lower mean pairwise "
    "HSIC); random frozen projectors also enforce it; depth changes it."
)

KIND_NAMES = {
    "trained": "trained MLP",
    "frozen": "frozen random MLP",
    "random_features": "random features",
}


def plan(settings: dict[str, Any]) -> list[Unit]:
    return [train_unit(r, settings) for r in c2_specs(settings)]


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    return run_training(unit, ctx)


def records(settings: dict[str, Any], values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat record per run: the RunSpec fields plus its measured metrics."""
    specs = c2_specs(settings)
    if len(specs) != len(values):
        raise ValueError(f"expected {len(specs)} runs, got {len(values)}")
    return [
        {**r.__dict__, "config_id": r.config_id, **run_metrics(v)}
        for r, v in zip(specs, values, strict=True)
    ]


def unique_runs(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per distinct training run (a run can serve several sweeps, e.g. the 2-layer
    MLP of the width sweep is also the depth-2 point): for statistics over runs (C3, C4)."""
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for r in recs:
        seen.setdefault((r["config_id"], r["seed"]), r)
    return list(seen.values())


def _ci(v: Verdict) -> list[Any]:
    return [v.values["mean_diff"], v.values["ci_low"], v.values["ci_high"], v.values["n"]]


def _agg(rows: list[dict[str, Any]], key: str) -> tuple[float, float]:
    return seeds_mean_sd([r[key] for r in rows])


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = records(settings, values)
    width_recs = [r for r in recs if r["group"] == "width"]
    depth_recs = [r for r in recs if r["group"] == "depth"]
    loss_recs = [r for r in recs if r["group"] == "loss"]
    n_seeds = len(settings["seeds"])

    # (a) width trend per projector kind
    trend_parts = []
    for kind in settings["kinds"]:
        rows = [r for r in width_recs if r["kind"] == kind]
        if len({r["width"] for r in rows}) < 2 or len(rows) < 3:
            continue
        v = trend_verdict(
            [r["width"] for r in rows],
            [r["hsic"] for r in rows],
            "decreasing",
            xname="width",
            yname="pairwise HSIC",
            n_boot=2000,
        )
        v.name = f"wider → lower HSIC ({KIND_NAMES[kind]})"
        trend_parts.append(v)
    # companions (not verdict parts): frozen vs trained at equal width and seed, and the
    # change from the encoder at initialization
    companions: list[list[Any]] = []
    trained = {(r["width"], r["seed"]): r["hsic"] for r in width_recs if r["kind"] == "trained"}
    pairs = [
        (r["hsic"], trained[(r["width"], r["seed"])])
        for r in width_recs
        if r["kind"] == "frozen" and (r["width"], r["seed"]) in trained
    ]
    if len(pairs) >= 2:
        d = difference_verdict(*zip(*pairs, strict=True), "less", aname="frozen", bname="trained")
        companions.append(["HSIC frozen − trained (same width, seed)", *_ci(d)])
    init_pairs = [
        (r["hsic"], r["hsic_initial"]) for r in unique_runs(recs) if r["hsic_initial"] is not None
    ]
    if len(init_pairs) >= 2:
        d = difference_verdict(*zip(*init_pairs, strict=True), "less", aname="final", bname="init")
        companions.append(["HSIC after training − at initialization (all runs)", *_ci(d)])
    # (c) depth
    by_depth: dict[str, list[float]] = defaultdict(list)
    for r in depth_recs:
        by_depth[f"depth {r['depth']}"].append(r["hsic"])
    if len(by_depth) >= 2:
        v_depth = group_difference_verdict(dict(sorted(by_depth.items())), what="pairwise HSIC")
    else:
        v_depth = Verdict(INCONCLUSIVE, "fewer than 2 depths", "depth sweep not run")
    v_depth.name = "depth changes HSIC"
    parts = [*trend_parts, v_depth]
    headline = "; ".join(
        [
            f"ρ(width, HSIC) {p.name.split('(')[-1].rstrip(')')}: {p.values['rho']:+.2f} "
            f"[{p.values['ci_low']:+.2f}, {p.values['ci_high']:+.2f}]"
            for p in trend_parts
        ]
        + [f"depth: {v_depth.statistic.split(' (')[0]}"]
    )
    verdict = combine_verdicts(parts, name="C2", statistic=headline)

    # tables
    def row_for(rows: list[dict[str, Any]], *lead: Any) -> list[Any]:
        out = list(lead)
        for key in ("hsic", "nhsic", "dhsic", "acc_id", "acc_ood"):
            m, s = _agg(rows, key)
            out += [m, s]
        return out

    hdr = ["HSIC", "±", "nHSIC", "±", "dHSIC", "±", "acc ID", "±", "acc OOD", "±"]
    width_rows = []
    for kind in settings["kinds"]:
        for w in sorted({r["width"] for r in width_recs if r["kind"] == kind}):
            rows = [r for r in width_recs if r["kind"] == kind and r["width"] == w]
            width_rows.append(row_for(rows, KIND_NAMES[kind], w))
    depth_rows = [
        row_for([r for r in depth_recs if r["depth"] == dp], dp)
        for dp in sorted({r["depth"] for r in depth_recs})
    ]
    loss_rows = [
        row_for([r for r in loss_recs if r["loss"] == lo], lo)
        for lo in settings["losses"]
        if any(r["loss"] == lo for r in loss_recs)
    ]

    # figures
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in (
        (axes[0], "hsic", "mean pairwise HSIC"),
        (axes[1], "nhsic", "mean pairwise normalized HSIC"),
    ):
        for kind in settings["kinds"]:
            ws = sorted({r["width"] for r in width_recs if r["kind"] == kind})
            ms, ss = (
                zip(
                    *[
                        _agg([r for r in width_recs if r["kind"] == kind and r["width"] == w], key)
                        for w in ws
                    ],
                    strict=True,
                )
                if ws
                else ((), ())
            )
            ax.errorbar(ws, ms, yerr=ss, marker="o", capsize=3, label=KIND_NAMES[kind])
        init = [r["hsic_initial" if key == "hsic" else "nhsic_initial"] for r in width_recs]
        init = [x for x in init if x is not None]
        if init:
            ax.axhline(float(np.mean(init)), color="gray", ls=":", label="encoder at init")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("projector output width k")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
    fig.suptitle(f"MNIST-1D, VICReg, {settings['epochs']} epochs, mean ± sd over {n_seeds} seeds")
    f_width = ctx.save_figure(fig, "c2_width")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    if depth_rows:
        dps = sorted({r["depth"] for r in depth_recs})
        ms, ss = zip(
            *[_agg([r for r in depth_recs if r["depth"] == dp], "hsic") for dp in dps], strict=True
        )
        axes[0].errorbar(dps, ms, yerr=ss, marker="o", capsize=3)
        axes[0].set_xticks(dps)
        axes[0].set_xlabel(f"projector depth (width {settings['depth_width']})")
        axes[0].set_ylabel("mean pairwise HSIC")
        axes[0].set_title("depth (trained MLP)")
    if loss_rows:
        names = [r[0] for r in loss_rows]
        axes[1].bar(names, [r[1] for r in loss_rows], yerr=[r[2] for r in loss_rows], capsize=4)
        axes[1].set_ylabel("mean pairwise HSIC")
        axes[1].set_title(f"loss (projector {settings['loss_spec']})")
    f_depth = ctx.save_figure(fig, "c2_depth_loss")

    measurement = (
        f"SSL on MNIST-1D ({settings['n_train']} training signals), encoder `{settings['encoder']}` "
        f"with representation dimension d = {settings['repr_dim']}, {settings['epochs']} epochs, "
        f"batch {settings['batch_size']}, Adam lr {settings['lr']}, {n_seeds} seeds "
        f"({settings['seeds']}). Width sweep (VICReg, 2-layer MLP k-k, trained or frozen; random "
        f"features with k = d·m): k ∈ {settings['widths']}; depth sweep 1–{max(settings['depths'])} "
        f"at width {settings['depth_width']}; losses {settings['losses']} with projector "
        f"{settings['loss_spec']}. Independence of the representation: mean over feature pairs of "
        f"HSIC (biased, Gaussian kernels, median bandwidth) and of normalized HSIC, and dHSIC, on "
        f"{settings['n_eval']} held-out test signals (encoder before training: same measure). "
        "Linear probe (`vcreg.evaluation.linear_probe`): logistic regression on the frozen "
        + (
            "representation of the whole training split"
            if settings["probe_train"] is None
            else f"representation of {settings['probe_train']} training signals"
        )
        + f" ({settings['probe_iter']} L-BFGS iterations), in-domain test accuracy and mean "
        f"accuracy over the shifted MNIST-1D OOD sets ({settings['ood_samples']} signals each)."
    )
    blocks = [
        Table(
            ["projector", "width k", *hdr],
            width_rows,
            caption="Width sweep (mean and sd over seeds)",
        ),
        Figure(
            f_width,
            "Mean pairwise HSIC / normalized HSIC of the representation vs projector width.",
        ),
        Table(
            ["depth", *hdr],
            depth_rows,
            caption=f"Depth sweep (trained MLP, width {settings['depth_width']})",
        ),
        Table(
            ["loss", *hdr],
            loss_rows,
            caption=f"Losses at a common projector {settings['loss_spec']}",
        ),
        Figure(f_depth, "Pairwise HSIC vs projector depth, and across VCReg-family losses."),
    ]
    if width_recs:
        nh_rows = []
        for kind in settings["kinds"]:
            rows = [r for r in width_recs if r["kind"] == kind]
            if len({r["width"] for r in rows}) >= 2 and len(rows) >= 3:
                t = trend_verdict(
                    [r["width"] for r in rows],
                    [r["nhsic"] for r in rows],
                    "decreasing",
                    n_boot=1000,
                )
                nh_rows.append(
                    f"{KIND_NAMES[kind]} {t.statistic.split('=', 1)[1].strip()} ({t.status})"
                )
        if nh_rows:
            blocks.append(
                Paragraph(
                    "Same trend with the normalized HSIC, ρ(width, nHSIC): "
                    + "; ".join(nh_rows)
                    + "."
                )
            )
    if companions:
        blocks.append(
            Table(
                ["paired difference", "mean", "CI low", "CI high", "pairs"],
                companions,
                caption="Companion comparisons (95% t-CI; not part of the verdict)",
            )
        )
    numbers = {
        "companions": companions,
        "runs": recs,
        "width_table": width_rows,
        "depth_table": depth_rows,
        "loss_table": loss_rows,
    }
    return Summary(measurement, verdict, numbers, blocks)
