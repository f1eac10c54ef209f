"""C3 — training dynamics: pairwise HSIC falls while dHSIC stagnates (against controls).

Uses the training runs of C2 (same cache units), whose trainer measured the representation's
mean pairwise HSIC, normalized HSIC and dHSIC on held-out test samples after every epoch (epoch
0 = the encoder before training). The randomly initialised encoder carries little structure
(every objective multiplies HSIC in its first epoch), so the baseline of the main analysis is
the end of epoch 1; the change from initialization and from the peak are reported beside it.

Verdict (fixed rules; runs of flagged configurations and runs missing the preconditions of
:mod:`vcreg.experiments.preconditions` left out; ``Δ = log(v_end / v_base)``, Student-t CIs over
runs): (a) pairwise HSIC falls in VCReg-family runs: mean Δ_HSIC < 0;
(b) VCReg causes the fall: Δ_HSIC of VICReg minus Δ_HSIC of the equal-budget control without
covariance term (ν = 0, same projector, width, seed) < 0; (c) dHSIC stagnates, tested as an
*equivalence*: TOST that mean Δ_dHSIC lies inside ±:data:`DHSIC_MARGIN` (a dHSIC change by less
than a factor e^0.1 ≈ 1.105 either way counts as "stagnates"; a saturated dHSIC is NaN and leaves
this part inconclusive). The older comparison Δ_HSIC − Δ_dHSIC < 0 is reported beside it.

Baseline (pre-registered, :data:`BASELINE_EPOCH`): the end of epoch 1. Justification: the claim
is about *training dynamics under the VCReg objective*; the random initialization is not a
point of that trajectory (every objective, supervised included, multiplies HSIC in its first
epoch as the encoder leaves the random init), so a change from initialization measures leaving
the init, not the objective's dynamics. Both baselines are reported in every table, and the
initialization baseline is a row of the sensitivity table; the rule was fixed in code after the
first full run (the issue records that), so the initialization baseline is shown with equal
prominence in the verdict's statistic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcreg.experiments import c2_projector
from vcreg.experiments.preconditions import claim_gate, gate
from vcreg.experiments.records import (
    SSL_LOSSES,
    control_pairs,
    flagged_configs,
    without,
)
from vcreg.experiments.report import Figure, Paragraph, Table, flagged_note
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import (
    INCONCLUSIVE,
    Verdict,
    combine_verdicts,
    difference_verdict,
    equivalence_verdict,
    not_assessable,
    sensitivity_rows,
)

CLAIM_ID = "C3"
TITLE = "Dynamics: pairwise HSIC falls, dHSIC stagnates"
CLAIM = (
    "During VCReg/VICReg training, the pairwise HSIC between the representation's features "
    "decreases while the mutual-independence measure dHSIC stagnates."
)

_KEYS = (("hsic", "pairwise_hsic_mean"), ("nhsic", "pairwise_nhsic_mean"), ("dhsic", "dhsic"))
BASELINE_EPOCH = 1
DHSIC_MARGIN = 0.1  # |mean Δlog dHSIC| < 0.1: dHSIC "stagnates" (TOST, 90 % CI)


def plan(settings: dict[str, Any]) -> list[Unit]:
    return c2_projector.plan(settings["train"])


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    return c2_projector.run_unit(unit, ctx)


# -- statistics ---------------------------------------------------------------------------------


def _curve(history: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(h["epoch"], h[key]) for h in history if h.get(key) is not None and h[key] > 0]
    return [p[0] for p in pts], [p[1] for p in pts]


def changes(history: list[dict[str, Any]], key: str, baseline: int) -> dict[str, float] | None:
    """log-change and relative change of ``key`` from epoch ``baseline`` (and from init and the
    peak) to the last epoch; None when the curve lacks the baseline or the end."""
    ep, ys = _curve(history, key)
    if baseline not in ep or len(ep) < 2 or ep[-1] <= baseline:
        return None
    base, end = ys[ep.index(baseline)], ys[-1]
    out = {"log": float(np.log(end / base)), "rel": end / base - 1, "base": base, "end": end}
    out["rel_init"] = end / ys[0] - 1 if ep[0] == 0 else float("nan")
    out["rel_peak"] = end / max(ys) - 1  # ≤ 0 by construction: descriptive only
    return out


def _run_changes(recs: list[dict[str, Any]], key: str, baseline: int) -> list[dict[str, Any]]:
    out = []
    for r in recs:
        h = changes(r["history"], key, baseline)
        d = changes(r["history"], "dhsic", baseline)
        if h is not None:
            out.append({**r, "dH": h, "dD": d})
    return out


def statistics(
    s: dict[str, Any],
    values: list[dict[str, Any]],
    baseline: int = BASELINE_EPOCH,
    key: str = "pairwise_hsic_mean",
    exclude: bool = True,
) -> dict[str, Any]:
    train = s["train"]
    recs, img_recs = c2_projector.split_values(train, values)
    flagged = flagged_configs(recs, train["guard_ratio"])
    keep = without(recs, flagged) if exclude else recs
    valid, excluded = gate(keep)
    all_runs = _run_changes(keep, key, baseline)
    runs = _run_changes(valid, key, baseline)
    family = [r for r in runs if r["loss"] in SSL_LOSSES and r["nu"] is None]
    fam_all = [r for r in all_runs if r["loss"] in SSL_LOSSES and r["nu"] is None]
    rh = [r["dH"]["log"] for r in family]
    if len(rh) >= 2:
        v_fall = difference_verdict(rh, [0.0] * len(rh), "less", aname="Δlog HSIC", bname="0")
    elif len(fam_all) >= 2:
        v_fall = not_assessable("", f"{len(rh)} of {len(fam_all)} runs meet the preconditions")
    else:
        v_fall = Verdict(INCONCLUSIVE, f"{len(rh)} runs with curves", "need ≥ 2 runs")
    v_fall.name = "pairwise HSIC falls (VCReg-family runs)"
    widths = set(train.get("control_widths", []))
    t, c = control_pairs(
        [{**r, "dlog": r["dH"]["log"]} for r in runs],
        lambda r: c2_projector.is_reference(r) and r["width"] in widths,
        lambda r: r["loss"] == "vicreg" and r["nu"] == 0.0,
        "dlog",
    )
    if len(t) >= 2:
        v_cause = difference_verdict(t, c, "less", aname="Δlog HSIC VICReg", bname="ν = 0")
    else:
        v_cause = not_assessable(
            "", f"{len(t)} VICReg/ν = 0 pairs meet the preconditions (need ≥ 2)"
        )
    v_cause.name = "VCReg causes the fall (vs VICReg ν = 0, equal budget)"
    both = [r for r in family if r["dD"] is not None]
    if len(both) >= 2 and len(both) >= len(family) / 2:
        v_stag = equivalence_verdict(
            [r["dD"]["log"] for r in both], DHSIC_MARGIN, what="mean Δlog dHSIC"
        )
        v_less = difference_verdict(
            [r["dH"]["log"] for r in both],
            [r["dD"]["log"] for r in both],
            "less",
            aname="Δlog HSIC",
            bname="Δlog dHSIC",
        )
    else:
        v_stag = v_less = Verdict(
            INCONCLUSIVE,
            f"dHSIC defined in {len(both)}/{len(family)} runs",
            "dHSIC undefined (saturated) in most runs, or too few runs",
        )
    v_stag.name = f"dHSIC stagnates (TOST: |mean Δlog dHSIC| < {DHSIC_MARGIN:g})"
    parts = [v_fall, v_cause, v_stag]
    if img_recs:
        parts.append(_image_fall(train["image"]["dataset"], img_recs, key, baseline))
    return {
        "recs": recs,
        "runs": runs,
        "family": family,
        "flagged": flagged,
        "excluded": excluded,
        "gate": claim_gate("C3", [r for r in keep if r["loss"] in SSL_LOSSES and r["nu"] is None]),
        "parts": parts,
        "less_than_hsic": v_less,
        "baseline": baseline,
        "key": key,
    }


def _image_fall(name: str, img_recs: list[dict[str, Any]], key: str, baseline: int) -> Verdict:
    """Part (a) on the second domain: pairwise HSIC falls after the baseline epoch in the
    image-domain VICReg runs meeting the preconditions (not assessable when fewer than half)."""
    what = f"pairwise HSIC falls [{name}]"
    blocked = claim_gate(what, img_recs)
    if blocked is not None:
        return blocked
    runs = _run_changes(gate(img_recs)[0], key, baseline)
    rh = [r["dH"]["log"] for r in runs]
    if len(rh) >= 2:
        v = difference_verdict(rh, [0.0] * len(rh), "less", aname="Δlog HSIC", bname="0")
    else:
        v = Verdict(INCONCLUSIVE, f"{len(rh)} runs with curves", "need ≥ 2 runs")
    v.name = what
    return v


# -- verdict ------------------------------------------------------------------------------------


def _ci_text(v: Verdict) -> str:
    if "ci_low" not in v.values:
        return v.statistic
    x = v.values
    return f"{x['mean_diff']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}] ({x['n']} pairs)"


def _pct(xs: list[float]) -> str:
    return f"{np.nanmean(xs) * 100:+.1f}%" if xs else "n/a"


def verdict(st: dict[str, Any]) -> Verdict:
    if st["gate"] is not None:
        return st["gate"]
    fam = st["family"]
    rel = [r["dH"]["rel"] for r in fam]
    rel0 = [r["dH"]["rel_init"] for r in fam]
    rel_d = [r["dD"]["rel"] for r in fam if r["dD"] is not None]
    v_fall, v_cause, v_stag = st["parts"][:3]
    headline = (
        f"change of {st['key']} (mean over {len(fam)} VCReg-family runs) from epoch "
        f"{st['baseline']}: {_pct(rel)}, from initialization: {_pct(rel0)} "
        f"(dHSIC from epoch {st['baseline']}: {_pct(rel_d)}); "
        f"Δlog HSIC VICReg − ν = 0 control: {_ci_text(v_cause)}; "
        f"dHSIC stagnates: {v_stag.statistic}"
        + "".join(f"; {p.name}: {p.statistic}" for p in st["parts"][3:])
    )
    return combine_verdicts(st["parts"], name="C3", statistic=headline)


def sensitivity(s: dict[str, Any], values: list[dict[str, Any]], main: Verdict) -> list[dict]:
    alts = {
        "baseline = initialization (epoch 0)": verdict(statistics(s, values, baseline=0)),
        "normalized HSIC": verdict(statistics(s, values, key="pairwise_nhsic_mean")),
        "flagged configurations included": verdict(statistics(s, values, exclude=False)),
    }
    return sensitivity_rows(main, alts)


# -- tables and figures -------------------------------------------------------------------------


def _group_of(r: dict[str, Any]) -> str:
    if r["loss"] in SSL_LOSSES and r["nu"] is None:
        return "VCReg family (" + ("projector" if r["kind"] != "none" else "no projector") + ")"
    return r["config_id"].split("/")[0] + (" (no projector)" if r["kind"] == "none" else "")


def _objective_rows(st: dict[str, Any]) -> list[list[Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in st["runs"]:
        groups.setdefault(_group_of(r), []).append(r)
    rows = []
    for name, rs in groups.items():
        ch = [r["dH"] for r in rs]
        dd = [r["dD"]["rel"] for r in rs if r["dD"] is not None]
        rows.append(
            [
                name,
                len(rs),
                np.nanmean([c["rel_init"] for c in ch]),
                np.mean([c["rel"] for c in ch]),
                np.mean([c["rel_peak"] for c in ch]),
                float(np.mean(dd)) if dd else None,
                sum(c["rel"] < 0 for c in ch),
            ]
        )
    return rows


def tables(st: dict[str, Any]) -> list[Any]:
    rows = _objective_rows(st)
    fam = st["family"]
    pv = [r["dhsic_p"] for r in fam if r.get("dhsic_p") is not None]
    test_row = [
        [
            "final representation jointly dependent (dHSIC permutation test, α = 0.05)",
            sum(p < 0.05 for p in pv),
            len(pv),
        ]
    ]
    per_run = [
        [
            r["config_id"],
            r["seed"],
            r["dH"]["base"],
            r["dH"]["end"],
            r["dH"]["rel"],
            r["dH"]["rel_init"],
            r["dD"]["rel"] if r["dD"] else None,
        ]
        for r in st["runs"]
    ]
    b = st["baseline"]
    return [
        Table(
            [
                "runs",
                "n",
                "HSIC change from init",
                f"from epoch {b}",
                "from peak",
                f"dHSIC change from epoch {b}",
                f"n falling after epoch {b}",
            ],
            rows,
            caption="Mean relative change of pairwise HSIC by objective (the controls have the "
            "same budget; 'from peak' is ≤ 0 by construction)",
        ),
        Table(
            ["calibrated test", "runs rejecting", "VCReg-family runs tested"],
            test_row,
            caption="dHSIC (the independence module's default rule: median × √d when the "
            "per-variable rule saturates) with a permutation null, `dhsic_test(method='auto')`; "
            "not a verdict part",
        ),
        Table(
            [
                "run",
                "seed",
                f"HSIC epoch {b}",
                "HSIC end",
                f"change from epoch {b}",
                "change from init",
                f"dHSIC change from epoch {b}",
            ],
            per_run,
            caption="Per run",
        ),
    ]


def _mean_curve(rs: list[dict[str, Any]], key: str):
    curves = [c for c in (_curve(r["history"], key) for r in rs) if c[0]]
    if not curves:
        return None
    n = min(len(c[0]) for c in curves)
    return np.array(curves[0][0][:n]), np.array([c[1][:n] for c in curves])


def figures(s: dict[str, Any], st: dict[str, Any], ctx: Context) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = s["width"]
    sel = {
        f"VICReg {s['kind']} {w}": [
            r
            for r in st["runs"]
            if r["kind"] == s["kind"]
            and r["loss"] == "vicreg"
            and r["nu"] is None
            and r["width"] == w
            and r["depth"] == 2
        ],
        "ν = 0": [r for r in st["runs"] if r["nu"] == 0.0 and r["width"] == w],
        "InfoNCE": [r for r in st["runs"] if r["loss"] == "infonce" and r["width"] == w],
        "no projector": [r for r in st["runs"] if r["kind"] == "none"],
        "supervised": [r for r in st["runs"] if r["loss"] == "supervised"],
    }
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (short, key) in zip(axes, _KEYS, strict=True):
        for i, (name, rs) in enumerate(sel.items()):
            mc = _mean_curve(rs, key)
            if mc is not None:
                ax.plot(
                    mc[0],
                    mc[1].mean(0),
                    "o-" if i == 0 else "--",
                    ms=3,
                    color=f"C{i}",
                    label=f"{name} ({len(rs)})",
                )
        ax.set_yscale("log")
        ax.set_xlabel("epoch (0 = before training)")
        ax.set_ylabel(short)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Independence of the representation along training (mean over seeds; "
        "flagged configurations not shown)"
    )
    f_curves = ctx.save_figure(fig, "c3_dynamics")
    return [
        Figure(
            f_curves,
            "Pairwise HSIC, normalized HSIC and dHSIC along training: the reference VICReg "
            "configuration and its equal-budget controls.",
        ),
        *_scatter_figure(st, ctx),
    ]


def _scatter_figure(st: dict[str, Any], ctx: Context) -> list[Any]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    pts = [(r["dH"]["rel"] * 100, r["dD"]["rel"] * 100) for r in st["family"] if r["dD"]]
    if pts:
        x, y = np.array(pts).T
        ax.scatter(x, y, s=16)
        lim = [min(x.min(), y.min(), 0) - 5, max(x.max(), y.max(), 0) + 5]
        ax.plot(lim, lim, "k--", lw=1, label="equal change")
    ax.axhline(0, color="gray", lw=0.5)
    ax.axvline(0, color="gray", lw=0.5)
    ax.set_xlabel(f"relative change of pairwise HSIC from epoch {st['baseline']} (%)")
    ax.set_ylabel(f"relative change of dHSIC from epoch {st['baseline']} (%)")
    ax.set_title("VCReg-family runs of the C2 sweep")
    f_scatter = ctx.save_figure(fig, "c3_changes")
    return [
        Figure(
            f_scatter, "Relative change after the first epoch, HSIC vs dHSIC, one point per run."
        )
    ]


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    st = statistics(settings, values)
    v = verdict(st)
    blocks = figures(settings, st, ctx) + tables(st)
    less = st["less_than_hsic"]
    blocks.append(
        Paragraph(
            f"Beside the verdict (the pre-equivalence rule): Δlog HSIC − Δlog dHSIC = "
            f"{_ci_text(less)} — {less.status} that dHSIC changes less than pairwise HSIC."
        )
    )
    if st["excluded"]:
        blocks.append(
            Paragraph(
                f"{len(st['excluded'])} runs miss the preconditions and are left out (table "
                "in C2): "
                + ", ".join(f"`{k}`" for k in sorted(st["excluded"])[:12])
                + (" …" if len(st["excluded"]) > 12 else "")
            )
        )
    if st["flagged"]:
        blocks.insert(0, Paragraph(flagged_note(st["flagged"], settings["train"]["guard_ratio"])))
    measurement = (
        "The C2 training runs, each measured before training and after every epoch on held-out "
        "test signals (mean pairwise HSIC, mean normalized HSIC and dHSIC of the representation). "
        f"Main analysis: change from the end of epoch {BASELINE_EPOCH} (the randomly initialised "
        f"encoder has little structure; every objective raises HSIC in its first epoch) to the "
        f"last epoch, over {len(st['family'])} VCReg-family runs, against the equal-budget "
        "controls."
    )
    numbers = {
        "per_run": [[r["config_id"], r["seed"], r["dH"], r["dD"]] for r in st["runs"]],
        "flagged": st["flagged"],
        "excluded_by_preconditions": st["excluded"],
        "dhsic_margin": DHSIC_MARGIN,
        "dhsic_less_than_hsic": st["less_than_hsic"].to_dict(),
    }
    return Summary(measurement, v, numbers, blocks, sensitivity=sensitivity(settings, values, v))
