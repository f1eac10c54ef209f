"""C2 — which projectors favour pairwise independence (MNIST-1D sweep), against controls.

Runs (shared with C3/C4, see :mod:`vcreg.experiments._training`): VICReg with a 2-layer MLP
projector of width k ∈ ``widths`` (trained or frozen at its random init), element-wise random
Fourier features (``rf_scale``, default each cosine feature standardized over the batch, of the
standardized representation) with
k = d·m outputs, MLP depth 1–3 at ``depth_width``, VICReg vs Barlow Twins vs W-MSE with a
common ``loss_spec`` projector, and the equal-budget controls (VICReg with ν = 0 and InfoNCE
through the same trained MLPs, VICReg without projector, supervised cross-entropy); every
configuration × ``seeds``, one optimiser setting (Adam, ``lr``) for all. Measured per run on
held-out test signals: mean pairwise HSIC / normalized HSIC of the representation.

Verdict parts (fixed rules, :mod:`vcreg.experiments.verdicts`; configurations flagged by the
hygiene guard are left out). The paper's statements (PAPER.md, C2, and the abstract's "VCReg
combined with an MLP projector enforces pairwise independence"): (a) "wider projectors give
lower HSIC", per projector kind (Spearman ρ over configs × seeds, bootstrap CI); (b) "VCReg
through the MLP enforces it": VICReg's HSIC below the equal-budget control without the
covariance term (ν = 0, same trained MLP, width and seed); (c) "random frozen projectors also
enforce it": VICReg through a frozen random MLP / random features below the ν = 0 control of the
same width and seed (paired log-ratio t-CIs); (d) "depth changes it" (Kruskal–Wallis). Added
test (reported, never deciding): (e) the projector lowers HSIC against VICReg without projector.
InfoNCE and supervised training are reported beside them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from vcreg.experiments._training import (
    c2_specs,
    image_records,
    image_units,
    run_training,
    seeds_mean_sd,
    train_unit,
)
from vcreg.experiments.preconditions import (
    PRECONDITION_HEADER,
    PRECONDITION_TEXT,
    claim_gate,
    gate,
    precondition_rows,
)
from vcreg.experiments.presets import domain_title, ood_text, optimizer_text, sample_word
from vcreg.experiments.records import (
    control_pairs,
    flagged_configs,
    matched_accuracy_point,
    run_records,
    sweep_groups,
    without,
)
from vcreg.experiments.report import (
    Figure,
    Paragraph,
    Table,
    flagged_note,
    part_label,
    table_or_note,
)
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import (
    MIN_RANK_UNITS,
    MIN_T_N,
    Verdict,
    added_test,
    combine_verdicts,
    control_verdict,
    group_difference_verdict,
    not_assessable,
    sensitivity_rows,
    trend_verdict,
)

CLAIM_ID = "C2"
TITLE = "Projector: width, depth and random projectors vs pairwise independence"
CLAIM = (
    "Wider projectors give more pairwise-independent representations (lower mean pairwise "
    "HSIC); random frozen projectors also enforce it; depth changes it."
)

# the one definition of "at the hinge" in the report: the precondition's (constraint_met)
# (the target, ≈ γ for projectors narrow relative to the batch: PRECONDITION_TEXT)
AT_HINGE = "fraction of embedding dimensions with std ≥ 0.9 × the hinge target"

KIND_NAMES = {
    "trained": "trained MLP",
    "frozen": "frozen random MLP",
    "random_features": "random features",
    "none": "no projector",
    "head": "linear head",
}
# sensitivity: HSIC variants of the same runs (vcreg.experiments.measures)
HSIC_VARIANTS = {
    "unbiased HSIC estimator": "hsic_unbiased",
    "fixed bandwidth σ = 1 on standardized features": "hsic_fixed_bw",
    "normalized HSIC": "nhsic",
}


def plan(settings: dict[str, Any]) -> list[Unit]:
    """The MNIST-1D sweep, then (``image``: the full preset) the image-domain runs."""
    return [train_unit(r, settings) for r in c2_specs(settings)] + image_units(
        settings.get("image")
    )


def split_values(s: dict[str, Any], values: list[dict[str, Any]]) -> tuple[list, list]:
    """(MNIST-1D records, image-domain records) of the values of :func:`plan`'s units."""
    n1 = len(c2_specs(s))
    recs = run_records(s, values[:n1])
    img = image_records(s["image"], values[n1:]) if len(values) > n1 else []
    return recs, img


def image_parts(s: dict[str, Any], img_recs: list[dict[str, Any]], key: str) -> list[Verdict]:
    """The second domain's width trends (one per projector kind), on the runs meeting the
    preconditions; the whole domain "not assessable" when fewer than half of them do."""
    if not img_recs:
        return []
    name = s["image"]["dataset"]
    blocked = claim_gate(f"image domain ({name})", img_recs)
    if blocked is not None:
        blocked.name, blocked.short = f"wider → lower {key} [{name}]", f"width [{name}]"
        return [blocked]
    parts = _width_trends(s["image"], gate(img_recs)[0], key, img_recs)
    for p in parts:
        p.name, p.short = f"{p.name} [{name}]", f"width [{name}]"
        p.values["label"] = f"{p.values.get('label', 'width')} [{name}]"
    return parts


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    return run_training(unit, ctx)


# -- statistics ---------------------------------------------------------------------------------


def is_reference(r: dict[str, Any], width: int | None = None) -> bool:
    """VICReg (official ν) through a trained 2-layer MLP (at ``width`` if given)."""
    return (
        _is_vicreg(r)
        and r["kind"] == "trained"
        and r["depth"] == 2
        and (width is None or r["width"] == width)
    )


def _enough_for_trend(rows: list[dict[str, Any]]) -> bool:
    return len({r["width"] for r in rows}) >= 2 and len(rows) >= MIN_RANK_UNITS


def _width_trends(
    s: dict[str, Any], rows: list[dict[str, Any]], key: str, ungated: list[dict[str, Any]]
) -> list[Verdict]:
    parts = []
    for kind in s["kinds"]:
        kr = [r for r in rows if r["kind"] == kind and r[key] is not None]
        design = [r for r in ungated if r["kind"] == kind]
        if len({r["width"] for r in design}) < 2:
            continue  # one width of this kind: not a sweep
        if not _enough_for_trend(kr):
            # too few runs meet the preconditions, or the preset has too few (2 widths × 2)
            v = not_assessable(
                "",
                f"{len(kr)} of {len(design)} runs over {len({r['width'] for r in kr})} "
                f"widths meet the preconditions (a trend needs ≥ {MIN_RANK_UNITS} runs "
                "over ≥ 2 widths)",
            )
        else:
            v = trend_verdict(
                [r["width"] for r in kr],
                [r[key] for r in kr],
                "decreasing",
                xname="width",
                yname=key,
                n_boot=2000,
            )
        v.name, v.short = f"wider → lower {key} ({KIND_NAMES[kind]})", "width"
        v.values["label"] = f"width ({KIND_NAMES[kind]})"
        parts.append(v)
    if not parts:
        v = not_assessable("", "no projector kind has ≥ 2 widths in this preset")
        v.name, v.short = f"wider → lower {key}", "width"
        parts.append(v)
    return parts


def _depth_verdict(rows: list[dict[str, Any]], key: str, depths: list[int]) -> Verdict:
    by_depth: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r[key] is not None:
            by_depth[f"depth {r['depth']}"].append(r[key])
    if len(depths) < 2:
        v = not_assessable("", f"no depth sweep in this preset (depth {depths} only)")
    elif len(by_depth) >= 2:
        v = group_difference_verdict(dict(sorted(by_depth.items())), what=key)
    else:
        v = not_assessable(
            "", f"{len(by_depth)} of {len(depths)} depths have runs meeting the preconditions"
        )
    v.name, v.short = f"depth changes {key}", "depth"
    return v


def _paired_part(
    rows: list[dict[str, Any]],
    ungated: list[dict[str, Any]],
    treated,
    control,
    match: tuple[str, ...],
    key: str,
    names: tuple[str, str],
) -> Verdict:
    """VICReg (``treated``) vs an equal-budget control (paired log-ratio t-CI, "less"); not
    assessable when the preconditions leave too few of the design's pairs."""
    t, c = control_pairs(rows, treated, control, key, match)
    n_all = len(control_pairs(ungated, treated, control, key, match)[0])
    if n_all == 0:
        return not_assessable("", f"no {names[0]} / {names[1]} pairs in this preset")
    if len(t) < MIN_T_N:  # too few meet the preconditions, or the preset has too few
        return not_assessable(
            "",
            f"{len(t)} of {n_all} {names[0]} / {names[1]} pairs meet the preconditions "
            f"(a paired t-CI needs ≥ {MIN_T_N})",
        )
    return control_verdict(t, c, "less", what=key, tname=names[0], cname=names[1])


def _nu0(kind: str, recs: list[dict[str, Any]]):
    """The ν = 0 control of projector ``kind``: through the same kind when the preset has one,
    else through the trained MLP of the same width (the sweep's only ν = 0 control)."""
    has_own = any(r["nu"] == 0.0 and r["kind"] == kind for r in recs)
    own = kind if has_own else "trained"
    return (lambda r: r["loss"] == "vicreg" and r["nu"] == 0.0 and r["kind"] == own), own


def _control_parts(
    s: dict[str, Any], rows: list[dict[str, Any]], key: str, ungated: list[dict[str, Any]]
) -> list[Verdict]:
    """(b) VCReg through the trained MLP vs ν = 0; (c) through each frozen random projector
    vs ν = 0 (paper); (e) VICReg through the reference MLP vs no projector (added test)."""
    widths = set(s.get("control_widths", []))
    ref = s.get("reference_width")
    ctrl, _ = _nu0("trained", ungated)
    v = _paired_part(
        rows,
        ungated,
        lambda r: is_reference(r) and r["width"] in widths,
        ctrl,
        ("width", "seed"),
        key,
        ("VICReg", "VICReg ν=0"),
    )
    v.name, v.short = (
        f"VCReg through the MLP lowers {key} (VICReg vs VICReg ν=0, equal budget)",
        "vs ν=0",
    )
    parts = [v]
    random_kinds = [k for k in ("frozen", "random_features") if k in s["kinds"]]
    if not random_kinds:
        v = not_assessable("", "no frozen random projector in this preset")
        v.name, v.short = "a frozen random projector lowers it (vs VICReg ν=0)", "random"
        parts.append(v)
    for kind in random_kinds:
        ctrl, own = _nu0(kind, ungated)
        v = _paired_part(
            rows,
            ungated,
            lambda r, kind=kind: _is_vicreg(r) and r["kind"] == kind,
            ctrl,
            ("width", "seed"),
            key,
            (f"VICReg {KIND_NAMES[kind]}", f"VICReg ν=0 {KIND_NAMES[own]}"),
        )
        v.name = (
            f"a frozen random projector enforces it: {KIND_NAMES[kind]} lowers {key} (VICReg vs "
            f"VICReg ν=0 through the {KIND_NAMES[own]} of the same width, equal budget)"
        )
        v.short = "random"
        v.values["label"] = f"random ({KIND_NAMES[kind]} vs ν=0)"
        parts.append(v)
    v = _paired_part(
        rows,
        ungated,
        lambda r: is_reference(r, ref),
        lambda r: r["kind"] == "none",
        ("seed",),
        key,
        ("VICReg", "no projector"),
    )
    v.name = f"the projector lowers {key} (VICReg vs no projector, equal budget)"
    parts.append(added_test(v, "vs none"))
    return parts


def _is_vicreg(r: dict[str, Any]) -> bool:
    return r["loss"] == "vicreg" and r["nu"] is None


def _companions(s: dict[str, Any], recs: list[dict[str, Any]], key: str) -> list[list[Any]]:
    """VICReg vs InfoNCE / supervised (full budget and accuracy-matched): not verdict parts."""
    widths, ref = set(s.get("control_widths", [])), s.get("reference_width")
    out = []
    t, c = control_pairs(
        recs,
        lambda r: is_reference(r) and r["width"] in widths,
        lambda r: r["loss"] == "infonce",
        key,
    )
    cases = [("InfoNCE, same MLP (all control widths)", t, c)]
    t, c = control_pairs(
        recs, lambda r: is_reference(r, ref), lambda r: r["loss"] == "supervised", key, ("seed",)
    )
    cases.append(("supervised cross-entropy, full budget", t, c))
    t, c = _accuracy_matched(recs, ref)
    cases.append(("supervised, accuracy-matched (first epoch reaching VICReg's accuracy)", t, c))
    for name, t, c in cases:
        if t:
            v = control_verdict(t, c, "less", what=key, tname="VICReg", cname="control")
            out.append(
                [
                    name,
                    float(np.mean(t)),
                    float(np.mean(c)),
                    v.values.get("ratio"),
                    v.values.get("ci_low"),
                    v.values.get("ci_high"),
                    len(t),
                ]
            )
    return out


def _accuracy_matched(recs: list[dict[str, Any]], ref: int | None) -> tuple[list, list]:
    refs = {r["seed"]: r for r in recs if is_reference(r, ref)}
    t, c = [], []
    for r in recs:
        if r["loss"] == "supervised" and r["seed"] in refs and refs[r["seed"]]["acc_monitor"]:
            pt = matched_accuracy_point(r["history"], refs[r["seed"]]["acc_monitor"])
            if pt is not None and refs[r["seed"]]["hsic"] is not None:
                t.append(refs[r["seed"]]["hsic"])
                c.append(pt["pairwise_hsic_mean"])
    return t, c


def statistics(
    s: dict[str, Any], values: list[dict[str, Any]], key: str = "hsic", exclude: bool = True
) -> dict[str, Any]:
    """Every number behind the C2 verdict for HSIC variant ``key`` (``exclude``: drop flagged)."""
    recs, img_recs = split_values(s, values)
    flagged = flagged_configs(recs, s["guard_ratio"])
    keep = without(recs, flagged) if exclude else recs
    valid, excluded = gate(keep)
    ok = {(r["config_id"], r["seed"]) for r in valid}
    groups = {
        g: (without(rows, flagged) if exclude else rows)
        for g, rows in sweep_groups(s, recs).items()
    }
    gated = {
        g: [r for r in rows if (r["config_id"], r["seed"]) in ok] for g, rows in groups.items()
    }
    return {
        "recs": recs,
        "groups": groups,
        "flagged": flagged,
        "excluded": excluded,
        "gate": claim_gate("C2", [r for r in keep if _in_verdict(r)]),
        "trends": _width_trends(s, gated["width"], key, groups["width"]),
        "depth": _depth_verdict(gated["depth"], key, sorted(s["depths"])),
        "controls": _control_parts(s, valid, key, keep),
        "companions": _companions(s, valid, key),
        "image": image_parts(s, img_recs, key),
        "image_recs": img_recs,
        "key": key,
    }


def _in_verdict(r: dict[str, Any]) -> bool:
    """The VCReg-family runs the claim-level gate counts (VICReg of the width/depth sweeps)."""
    return r["loss"] == "vicreg" and r["nu"] is None and r["kind"] != "none"


# -- verdict ------------------------------------------------------------------------------------


def _bit(p: Verdict) -> str:
    """One part in the claim's headline: its label and number (or why there is none)."""
    label = ("added test, " if p.added else "") + p.values.get("label", p.short)
    if "rho" in p.values:
        x = p.values
        return f"{label}: ρ {x['rho']:+.2f} [{x['ci_low']:+.2f}, {x['ci_high']:+.2f}]"
    if "ratio" in p.values:
        x = p.values
        return (
            f"{label}: ratio {x['ratio']:.2f} [{np.exp(x['ci_low']):.2f}, "
            f"{np.exp(x['ci_high']):.2f}]"
        )
    return f"{label}: {p.statistic.split(' (medians')[0]}"


def verdict(st: dict[str, Any]) -> Verdict:
    if st["gate"] is not None:
        return st["gate"]
    controls = st["controls"]
    paper_controls = [p for p in controls if not p.added]
    parts = [
        *st["trends"],
        *st["image"],
        *paper_controls,
        st["depth"],
        *[p for p in controls if p.added],
    ]
    return combine_verdicts(parts, name="C2", statistic="; ".join(_bit(p) for p in parts))


def sensitivity(s: dict[str, Any], values: list[dict[str, Any]], main: Verdict) -> list[dict]:
    alts = {name: verdict(statistics(s, values, key)) for name, key in HSIC_VARIANTS.items()}
    alts["flagged configurations included"] = verdict(statistics(s, values, exclude=False))
    return sensitivity_rows(main, alts)


# -- tables and figures -------------------------------------------------------------------------

_COLS = (
    "hsic",
    "nhsic",
    "acc_id",
    "acc_ood",
    "emb_std_mean",
    "emb_at_target_frac",
    "emb_offdiag_excess",
)
_HDR = [
    "HSIC",
    "±",
    "nHSIC",
    "±",
    "acc ID",
    "±",
    "acc OOD",
    "±",
    "emb. std",
    "at hinge",
    "off-diag r² / indep.",
]
_NO_SD = ("emb_std_mean", "emb_at_target_frac", "emb_offdiag_excess")


def _row(rows: list[dict[str, Any]], *lead: Any) -> list[Any]:
    out = list(lead)
    for k in _COLS:
        vals = [r.get(k) for r in rows if r.get(k) is not None]
        m, sd = seeds_mean_sd(vals) if vals else (None, None)
        out += [m, sd] if k not in _NO_SD else [m]
    return out


def _by(rows: list[dict[str, Any]], field: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r[field]].append(r)
    return out


def tables(s: dict[str, Any], st: dict[str, Any]) -> list[Any]:
    g = st["groups"]
    width_rows = [
        _row(rows, KIND_NAMES[kind], w)
        for kind in s["kinds"]
        for w, rows in sorted(_by([r for r in g["width"] if r["kind"] == kind], "width").items())
    ]
    depth_rows = [_row(rows, dp) for dp, rows in sorted(_by(g["depth"], "depth").items())]
    loss_rows = [_row(rows, lo) for lo, rows in _by(g["loss"], "loss").items()]
    ctrl_rows = [_row(rows, cid) for cid, rows in _by(g["control"], "config_id").items()]
    ref_rows = [r for r in g["width"] if is_reference(r)]
    ctrl_rows += [_row(rows, cid) for cid, rows in _by(ref_rows, "config_id").items()]
    hdr = _HDR
    depths = sorted(s["depths"])
    blocks: list[Any] = [
        Table(
            ["projector", "width k", *hdr],
            width_rows,
            caption="Width sweep (mean and sd over seeds; emb. std = mean per-dimension std of "
            f"the embedding, at hinge = {AT_HINGE}, off-diag r² / indep. = mean squared "
            "off-diagonal correlation of the embedding in units of its level for independent "
            "features, 1/(n−1))",
        ),
        *table_or_note(
            Table(
                ["depth", *hdr],
                depth_rows if len(depths) >= 2 else [],
                caption=f"Depth sweep (trained MLP, width {s['depth_width']})",
            ),
            f"this preset trains one depth ({depths[0]})",
        ),
        *table_or_note(
            Table(
                ["loss", *hdr], loss_rows, caption=f"Losses at a common projector {s['loss_spec']}"
            ),
            "this preset runs no loss comparison (VICReg only)",
        ),
        *table_or_note(
            Table(
                ["configuration", *hdr],
                ctrl_rows,
                caption="Equal-budget controls and the VICReg configurations they are paired with",
            ),
            "this preset runs no equal-budget control",
        ),
    ]
    return blocks + _control_tables(st) + _rf_table(g)


def _control_tables(st: dict[str, Any]) -> list[Any]:
    rows = [
        [
            part_label(p),
            p.values["ratio"],
            p.values.get("ci_low"),
            p.values.get("ci_high"),
            p.values.get("n"),
        ]
        for p in st["controls"]
        if "ratio" in p.values
    ]
    blocks: list[Any] = table_or_note(
        Table(
            ["verdict part", "geo-mean ratio", "log CI low", "log CI high", "pairs"],
            rows,
            caption="VICReg vs the equal-budget controls lacking the covariance term or the "
            "projector (paired log-ratio, 95% t-CI; the paper's parts and the added test)",
        ),
        "no control pair has an interval in this run (the verdict parts say why)",
    )
    if st["companions"]:
        blocks.append(
            Table(
                [
                    "VICReg vs",
                    "VICReg HSIC",
                    "control HSIC",
                    "ratio",
                    "log CI low",
                    "log CI high",
                    "pairs",
                ],
                st["companions"],
                caption="Other ways to learn the representation, at equal budget (not verdict parts)",
            )
        )
    return blocks


def _rf_table(g: dict[str, list[dict[str, Any]]]) -> list[Any]:
    blocks: list[Any] = []
    rf = [r for r in g["width"] if r["kind"] == "random_features"]
    if rf:
        blocks.append(
            Table(
                ["k", "input scale / bandwidth", "emb. std", "at hinge", "acc ID"],
                [
                    [
                        w,
                        *[
                            float(
                                np.mean(
                                    [r.get(k) for r in rows if r.get(k) is not None] or [np.nan]
                                )
                            )
                            for k in (
                                "rf_scale_over_bw",
                                "emb_std_mean",
                                "emb_at_target_frac",
                                "acc_id",
                            )
                        ],
                    ]
                    for w, rows in sorted(_by(rf, "width").items())
                ],
                caption=f"Random-feature projector diagnostics after training (at hinge = {AT_HINGE})",
            )
        )
    return blocks


def figures(s: dict[str, Any], st: dict[str, Any], ctx: Context) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    g = st["groups"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, name in (
        (axes[0], "hsic", "mean pairwise HSIC"),
        (axes[1], "nhsic", "mean pairwise normalized HSIC"),
    ):
        for kind in s["kinds"]:
            by_w = sorted(_by([r for r in g["width"] if r["kind"] == kind], "width").items())
            if by_w:
                ms = [seeds_mean_sd([r[key] for r in rows]) for _, rows in by_w]
                ax.errorbar(
                    [w for w, _ in by_w],
                    [m for m, _ in ms],
                    yerr=[e for _, e in ms],
                    marker="o",
                    capsize=3,
                    label=KIND_NAMES[kind],
                )
        for cid, rows in _by(g["control"], "config_id").items():
            if rows[0]["loss"] == "vicreg" and rows[0]["nu"] == 0.0:
                continue
            ax.axhline(float(np.mean([r[key] for r in rows])), ls=":", lw=1, color="gray")
            ax.text(ax.get_xlim()[0], float(np.mean([r[key] for r in rows])), cid, fontsize=6)
        nu0 = sorted(_by([r for r in g["control"] if r["nu"] == 0.0], "width").items())
        if nu0:
            ax.plot(
                [w for w, _ in nu0],
                [np.mean([r[key] for r in rows]) for _, rows in nu0],
                "k--",
                marker="x",
                label="VICReg ν = 0 (control)",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("projector output width k")
        ax.set_ylabel(name)
        ax.legend(fontsize=7)
    fig.suptitle(
        f"{domain_title(s)}, {s['epochs']} epochs, mean ± sd over {len(s['seeds'])} seeds "
        "(flagged configurations not shown)"
    )
    f_width = ctx.save_figure(fig, "c2_width")
    return [
        Figure(
            f_width,
            "Mean pairwise HSIC / normalized HSIC vs projector width, with the "
            "equal-budget controls (dotted: single-configuration controls).",
        ),
        *_depth_figure(s, g, ctx),
    ]


def _depth_figure(s: dict[str, Any], g: dict[str, list], ctx: Context) -> list[Any]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    depth = sorted(_by(g["depth"], "depth").items())
    if depth:
        ms = [seeds_mean_sd([r["hsic"] for r in rows]) for _, rows in depth]
        axes[0].errorbar(
            [d for d, _ in depth],
            [m for m, _ in ms],
            yerr=[e for _, e in ms],
            marker="o",
            capsize=3,
        )
        axes[0].set_xlabel(f"projector depth (width {s['depth_width']})")
        axes[0].set_ylabel("mean pairwise HSIC")
    bars = list(_by(g["loss"], "loss").items()) + list(_by(g["control"], "config_id").items())
    if bars:
        axes[1].bar([k for k, _ in bars], [np.mean([r["hsic"] for r in rows]) for _, rows in bars])
        axes[1].tick_params(axis="x", rotation=60, labelsize=6)
        axes[1].set_ylabel("mean pairwise HSIC")
        axes[1].set_title("losses and controls")
    f_depth = ctx.save_figure(fig, "c2_depth_loss")
    return [Figure(f_depth, "Pairwise HSIC vs projector depth; losses and controls.")]


_RF_SCALE_WORDS = {
    "standardized": "cosine features each standardized over the batch",
    "unit": "sqrt(2)·cos features",
    "kernel": "sqrt(2/m)·cos features",
}


def _rf_words(s: dict[str, Any]) -> str:
    scale = s.get("rf_scale", "standardized")
    where = "standardized" if s.get("rf_standardize") else "raw"
    return f"{_RF_SCALE_WORDS.get(scale, scale)} of the {where} representation"


def precondition_blocks(recs: list[dict[str, Any]]) -> list[Any]:
    """The precondition table of the SSL claims (every run, whether it counts and why not)."""
    n = len(recs)
    excluded = [r for r in recs if gate([r])[1]]
    return [
        Paragraph(
            f"**Preconditions** (fixed before the data): {PRECONDITION_TEXT}. "
            f"{n - len(excluded)}/{n} runs meet them; the {len(excluded)} others are left out "
            "of the verdict and listed below."
        ),
        Table(
            PRECONDITION_HEADER,
            precondition_rows(recs),
            caption="Per run: ridge-probe accuracy after training and of the random-init "
            "encoder (same architecture and seed), the hinge target γ·(1 + F)^(−1/3) (≈ γ = 1 "
            "for projectors narrow relative to the batch), fraction of embedding dims with std "
            "≥ 0.9 × the target and with std ≥ 0.9·γ, mean squared off-diagonal correlation of the embedding in units of its "
            "independent-features level",
        ),
    ]


def _steps(s: dict[str, Any]) -> int:
    return s["epochs"] * -(-s["n_train"] // s["batch_size"])


def _weights(s: dict[str, Any]) -> str:
    p = s.get("vicreg_params") or {}
    if not p:
        return "VICReg's official weights λ = μ = 25, ν = 1"
    return (
        f"VICReg weights λ = {p.get('lambda_', 25.0):g}, μ = {p.get('mu', 25.0):g}, "
        f"ν = {p.get('nu', 1.0):g} (chosen so the runs reach the VCReg constraint; the ν = 0 "
        "control keeps λ and μ)"
    )


_CONTROL_WORDS = {
    "nu0": "VICReg ν = 0",
    "infonce": "InfoNCE",
    "no_projector": "VICReg without projector",
    "supervised": "supervised cross-entropy",
}
_LOSS_WORDS = {"vicreg": "VICReg", "barlow": "Barlow Twins", "wmse": "W-MSE"}


def plural(n: int, word: str) -> str:
    """``1 run``, ``2 runs``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def run_scale(s: dict[str, Any], recs: list[dict[str, Any]], img_recs: list[dict[str, Any]]) -> str:
    """The size of the C2–C4 training runs in a phrase (the report header), from the records."""
    n_cfg = len({r["config_id"] for r in recs})
    text = (
        f"C2–C4: {plural(len(recs), domain_title(s) + ' run')} ({plural(len(s['seeds']), 'seed')} × "
        f"{n_cfg} configurations, {_steps(s)} optimizer steps each)"
    )
    if img_recs:
        img = s["image"]
        text += (
            f"; {img['dataset']}: {plural(len(img_recs), 'run')} "
            f"({plural(len(img['seeds']), 'seed')}, {_steps(img)} steps each)"
        )
    return text


def _widths_text(rows: list[dict[str, Any]]) -> str:
    by_kind: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        by_kind[r["kind"]].add(r["width"])
    return "; ".join(f"{KIND_NAMES[k]} k ∈ {sorted(w)}" for k, w in by_kind.items())


def _design_text(s: dict[str, Any]) -> str:
    """Depth sweep, loss comparison and controls, each only as far as this preset runs it."""
    depths = sorted(s["depths"])
    bits = [
        f"depths {depths} at width {s['depth_width']}"
        if len(depths) >= 2
        else f"no depth sweep (depth {depths[0]} only)"
    ]
    losses = [_LOSS_WORDS.get(x, x) for x in s["losses"]]
    bits.append(
        f"losses {', '.join(losses)} through projector {s['loss_spec']}"
        if losses
        else "no loss comparison"
    )
    controls = [_CONTROL_WORDS.get(c, c) for c in s.get("controls", [])]
    if controls:
        bits.append(
            f"equal-budget controls {', '.join(controls)} (MLP controls at widths "
            f"{s.get('control_widths', [])}; reference VICReg width {s.get('reference_width')})"
        )
    return "; ".join(bits)


def measurement(s: dict[str, Any], st: dict[str, Any]) -> str:
    """The C2 measurement in words, every count from the settings and the records of the run."""
    probe = (
        "the whole training split"
        if s["probe_train"] is None
        else f"{s['probe_train']} training {sample_word(s)}"
    )
    return (
        f"SSL on {domain_title(s)} ({s['n_train']} training {sample_word(s)}), encoder "
        f"`{s['encoder']}` with "
        f"representation dimension d = {s['repr_dim']}, {s['epochs']} epochs, batch "
        f"{s['batch_size']} ({_steps(s)} optimizer steps), one optimiser setting for every run "
        f"({optimizer_text(s)}), {_weights(s)}, {plural(len(s['seeds']), 'seed')}: "
        f"{plural(len(st['recs']), 'run')}. Width sweep (VICReg; 2-layer MLP k-k trained or "
        f"frozen; random features: {_rf_words(s)}, bandwidth {s.get('rf_bandwidth', 1.0)}, "
        f"k = d·m): {_widths_text(st['groups']['width'])}; {_design_text(s)}. Independence: "
        f"mean over feature pairs of HSIC (biased, Gaussian kernels, median bandwidth) and "
        f"normalized HSIC on {s['n_eval']} held-out test {sample_word(s)}. Linear probe: "
        f"logistic regression on the frozen representation of {probe} ({s['probe_iter']} "
        f"L-BFGS iterations), in-domain and {ood_text(s)}."
    )


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    st = statistics(settings, values)
    v = verdict(st)
    blocks = tables(settings, st) + figures(settings, st, ctx)
    blocks += precondition_blocks(st["recs"] + st["image_recs"])
    if st["flagged"]:
        blocks.insert(0, Paragraph(flagged_note(st["flagged"], settings["guard_ratio"])))
    numbers = {
        "runs": st["recs"],
        "flagged": st["flagged"],
        "excluded_by_preconditions": st["excluded"],
        "companions": st["companions"],
    }
    return Summary(
        measurement(settings, st),
        v,
        numbers,
        blocks,
        sensitivity=sensitivity(settings, values, v),
        scale=run_scale(settings, st["recs"], st["image_recs"]),
    )
