"""C4 — pairwise independence and out-of-domain generalization, controlled for in-domain accuracy.

Domains: MNIST-1D (the C2 runs, same cache units; OOD = the shifted MNIST-1D sets) and
Fashion-MNIST (SSL with the ``smallcnn`` encoder over a projector sweep; OOD = the corruptions
of ``vcreg.data``), when Fashion-MNIST is installed (else that part is skipped, saying so).
For each run: mean pairwise HSIC of the representation (held-out in-domain test images) and
logistic-probe accuracy on the in-domain test set and every OOD set.

Verdict (fixed rule, per domain, VCReg-family runs meeting the preconditions of
:mod:`vcreg.experiments.preconditions`, flagged configurations left out; a domain where fewer
than half the runs meet them, or whose runs meeting them span fewer than
:data:`~vcreg.experiments.verdicts.MIN_RANK_UNITS` configurations, is "not assessable at this
scale"): partial
Spearman ρ(pairwise HSIC, mean OOD accuracy | in-domain accuracy) with a bootstrap CI that
resamples configurations (seeds of one configuration are not independent); supported when the
CI lies below 0, not supported when above 0 or inside ±0.1. Beside it, the same partial
correlation on the configurations' means tested by permuting HSIC across configurations (exact
enumeration of all orders up to :data:`~vcreg.experiments.verdicts.EXACT_PERMUTATION_MAX`
configurations; a row of the sensitivity table). In-domain accuracy is the obvious
confound — a better representation is better in and out of domain — so the raw correlation and
ρ(HSIC, OOD/ID accuracy ratio) are shown beside it, not used for the verdict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vcreg.experiments import c2_projector
from vcreg.experiments._training import (
    c2_specs,
    image_available,
    image_records,
    image_units,
    train_unit,
)
from vcreg.experiments.preconditions import claim_gate, gate
from vcreg.experiments.presets import (
    domain_title,
    image_widths_text,
    ood_text,
    sample_word,
)
from vcreg.experiments.records import SSL_LOSSES, flagged_configs, run_records, without
from vcreg.experiments.report import Figure, Paragraph, Table, flagged_note, table_or_note
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import (
    EXACT_PERMUTATION_MAX,
    MC_PERMUTATIONS,
    MIN_RANK_UNITS,
    Verdict,
    combine_verdicts,
    not_assessable,
    partial_trend_verdict,
    permutation_partial_verdict,
    sensitivity_rows,
    spearman_bootstrap,
    trend_verdict,
)

CLAIM_ID = "C4"
TITLE = "Out-of-domain: pairwise independence vs OOD linear-probe accuracy"
CLAIM = (
    "Across projector configurations, more pairwise independence of the representation (lower "
    "pairwise HSIC) goes with better out-of-domain linear-probe accuracy."
)


def plan(settings: dict[str, Any]) -> list[Unit]:
    train = settings["train"]
    return [train_unit(r, train) for r in c2_specs(train)] + image_units(settings.get("image"))


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    return c2_projector.run_unit(unit, ctx)


# -- statistics ---------------------------------------------------------------------------------


def domain_records(settings: dict[str, Any], values: list[dict[str, Any]]) -> dict[str, Any]:
    """``{domain: (records, flagged)}``; records: VCReg-family runs with OOD accuracies."""
    n1 = len(c2_specs(settings["train"]))
    out: dict[str, Any] = {}
    recs = run_records(settings["train"], values[:n1])
    out[domain_title(settings["train"])] = (
        recs,
        flagged_configs(recs, settings["train"]["guard_ratio"]),
    )
    if len(values) > n1:
        img = settings["image"]
        irecs = image_records(img, values[n1:])
        out[img["dataset"]] = (irecs, flagged_configs(irecs, img["guard_ratio"]))
    return out


def _family(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        r
        for r in recs
        if r["loss"] in SSL_LOSSES
        and r["nu"] is None
        and r["acc_ood"] is not None
        and r["kind"] != "none"
    ]


def domain_verdict(
    recs: list[dict[str, Any]],
    flagged: dict[str, float],
    n_boot: int,
    key: str = "hsic",
    exclude: bool = True,
    by_config: bool = True,
    control: bool = True,
    outcome: str = "ood",
    test: str = "bootstrap",
) -> Verdict:
    """One domain's part; ``test="permutation"``: the permutation test on configuration means
    alone (sensitivity row); the main analysis states its p-value beside the bootstrap CI."""
    fam = _family(without(recs, flagged) if exclude else recs)
    blocked = claim_gate("", fam)
    if blocked is not None:
        return blocked
    rows = [r for r in gate(fam)[0] if r[key] is not None]
    n_cfg, fam_cfg = (len({r["config_id"] for r in rs}) for rs in (rows, fam))
    if n_cfg < MIN_RANK_UNITS:  # too few meet the preconditions, or the preset has too few
        return not_assessable(
            "",
            f"{len(rows)} of {len(fam)} runs ({n_cfg} of {fam_cfg} configurations) meet the "
            f"preconditions (a configuration bootstrap needs ≥ {MIN_RANK_UNITS} configurations)",
        )
    x = [r[key] for r in rows]
    y = [r["acc_ood"] / r["acc_id"] if outcome == "ratio" else r["acc_ood"] for r in rows]
    if test == "permutation":
        return config_permutation(rows, key)
    groups = [r["config_id"] for r in rows] if by_config else None
    if not control:
        return trend_verdict(
            x,
            y,
            "decreasing",
            n_boot=n_boot,
            groups=groups,
            xname=key,
            yname="OOD/ID ratio" if outcome == "ratio" else "OOD acc",
        )
    v = partial_trend_verdict(
        x,
        y,
        [r["acc_id"] for r in rows],
        "decreasing",
        groups,
        n_boot=n_boot,
        names=(key, "OOD acc", "ID acc"),
    )
    if by_config:  # the main analysis: the permutation p-value beside the interval
        perm = config_permutation(rows, key)
        v.values["permutation"] = perm.values
        if "p_value" in perm.values:
            x = perm.values
            v.statistic += (
                f"; over {x['n']} configuration means ρ = {x['rho']:+.3f}, permutation "
                f"p = {x['p_value']:.3g} "
                f"({'exact' if x['exact'] else 'Monte Carlo'}, smallest attainable "
                f"{x['p_min']:.2g})"
            )
        else:
            v.statistic += f"; permutation test: {perm.statistic}"
    return v


def config_permutation(rows: list[dict[str, Any]], key: str) -> Verdict:
    """Partial Spearman ρ(HSIC, OOD acc | ID acc) over the configurations' means (over seeds),
    HSIC permuted across configurations (:func:`permutation_partial_verdict`)."""
    by_cfg: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_cfg.setdefault(r["config_id"], []).append(r)
    means = [
        [float(np.mean([r[k] for r in rs])) for k in (key, "acc_ood", "acc_id")]
        for rs in by_cfg.values()
    ]
    x, y, z = (list(c) for c in zip(*means, strict=True))
    return permutation_partial_verdict(
        x, y, z, "decreasing", names=(key, "OOD acc", "ID acc"), units="configurations"
    )


def companions(recs: list[dict[str, Any]], flagged: dict[str, float], n_boot: int) -> dict:
    rows = gate(_family(without(recs, flagged)))[0]
    if len({r["config_id"] for r in rows}) < MIN_RANK_UNITS:
        return {}  # a configuration bootstrap over fewer is no interval (verdicts.MIN_RANK_UNITS)
    x, g = [r["hsic"] for r in rows], [r["config_id"] for r in rows]
    pairs = {
        "raw: mean OOD accuracy": [r["acc_ood"] for r in rows],
        "in-domain accuracy": [r["acc_id"] for r in rows],
        "OOD / in-domain accuracy ratio": [r["acc_ood"] / r["acc_id"] for r in rows],
    }
    return {k: spearman_bootstrap(x, y, n_boot=n_boot, groups=g) for k, y in pairs.items()}


def statistics(settings: dict[str, Any], values: list[dict[str, Any]], **kw: Any) -> dict:
    doms = domain_records(settings, values)
    parts = []
    for name, (recs, flagged) in doms.items():
        v = domain_verdict(recs, flagged, settings["n_boot"], **kw)
        v.name = name
        parts.append(v)
    return {"domains": doms, "parts": parts}


# -- verdict ------------------------------------------------------------------------------------


def verdict(st: dict[str, Any]) -> Verdict:
    bits = [f"{p.name}: {p.statistic}" for p in st["parts"]]
    return combine_verdicts(st["parts"], name="C4", statistic="; ".join(bits))


def sensitivity(settings: dict[str, Any], values: list[dict[str, Any]], main: Verdict) -> list:
    alt = {
        "raw Spearman (no control for in-domain accuracy)": {"control": False},
        "OOD/ID accuracy ratio as outcome (raw Spearman)": {"control": False, "outcome": "ratio"},
        "unbiased HSIC estimator": {"key": "hsic_unbiased"},
        "fixed bandwidth σ = 1 on standardized features": {"key": "hsic_fixed_bw"},
        "flagged configurations included": {"exclude": False},
        "bootstrap over runs instead of configurations": {"by_config": False},
        "permutation test of configuration means (instead of the bootstrap CI)": {
            "test": "permutation"
        },
    }
    return sensitivity_rows(
        main, {k: verdict(statistics(settings, values, **kw)) for k, kw in alt.items()}
    )


# -- tables and figures -------------------------------------------------------------------------


def tables(settings: dict[str, Any], st: dict[str, Any]) -> list[Any]:
    rows, per_set = [], []
    for name, (recs, flagged) in st["domains"].items():
        for k, s in companions(recs, flagged, settings["n_boot"]).items():
            rows.append([name, k, s["rho"], s["ci_low"], s["ci_high"], s["n"]])
        fam = _family(without(recs, flagged))
        for ood in sorted({k for r in fam for k in r["ood"]}):
            accs = [r["ood"][ood] for r in fam if ood in r["ood"]]
            per_set.append(
                [name, ood, float(np.mean(accs)), float(np.min(accs)), float(np.max(accs))]
            )
    return [
        *table_or_note(
            Table(
                ["domain", "ρ(pairwise HSIC, ·)", "Spearman ρ", "CI low", "CI high", "n"],
                rows,
                caption="Companion correlations (configuration bootstrap; not the verdict)",
            ),
            f"no domain has ≥ {MIN_RANK_UNITS} configurations meeting the preconditions, the "
            "fewest a configuration-bootstrap interval is computed from",
        ),
        *table_or_note(
            Table(
                ["domain", "OOD set", "mean accuracy", "min", "max"],
                per_set,
                caption="Per OOD set (VCReg-family runs through a projector)",
            ),
            "no VCReg-family run has OOD accuracies",
        ),
    ]


def figures(st: dict[str, Any], ctx: Context) -> list[Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    doms = st["domains"]
    fig, axes = plt.subplots(len(doms), 2, figsize=(11, 4.0 * len(doms)), squeeze=False)
    for row, (name, (recs, flagged)) in zip(axes, doms.items(), strict=True):
        fam = _family(without(recs, flagged))
        for kind in sorted({r["kind"] for r in fam}):
            rs = [r for r in fam if r["kind"] == kind]
            lab = c2_projector.KIND_NAMES[kind]
            row[0].scatter([r["hsic"] for r in rs], [r["acc_ood"] for r in rs], s=18, label=lab)
            row[1].scatter([r["hsic"] for r in rs], [r["acc_id"] for r in rs], s=18, label=lab)
        row[0].set_ylabel(f"{name}: mean OOD accuracy")
        row[1].set_ylabel(f"{name}: in-domain accuracy")
        for ax in row:
            ax.set_xlabel("mean pairwise HSIC of the representation")
            ax.set_xscale("log")
        row[0].legend(fontsize=7)
    fig.suptitle("One point per run (flagged configurations not shown)")
    f = ctx.save_figure(fig, "c4_ood_scatter")
    return [Figure(f, scatter_caption(doms))]


def _direction(rho: float, lo: float, hi: float) -> str:
    if lo > 0:
        return f"rises with HSIC (ρ = {rho:+.2f}, CI [{lo:+.2f}, {hi:+.2f}])"
    if hi < 0:
        return f"falls with HSIC (ρ = {rho:+.2f}, CI [{lo:+.2f}, {hi:+.2f}])"
    return f"shows no resolved direction (ρ = {rho:+.2f}, CI [{lo:+.2f}, {hi:+.2f}])"


def scatter_caption(doms: dict[str, Any], n_boot: int = 1000) -> str:
    """The figure's caption, its directions computed from the plotted runs (raw Spearman ρ with
    a configuration bootstrap CI), never fixed text."""
    bits = []
    for name, (recs, flagged) in doms.items():
        fam = [r for r in _family(without(recs, flagged)) if r["hsic"] is not None]
        n_cfg = len({r["config_id"] for r in fam})
        if n_cfg < MIN_RANK_UNITS:  # the bootstrap resamples configurations
            bits.append(
                f"{name}: n too small ({n_cfg} configurations; a configuration-bootstrap CI of "
                f"a rank correlation needs ≥ {MIN_RANK_UNITS})"
            )
            continue
        x, g = [r["hsic"] for r in fam], [r["config_id"] for r in fam]
        so = spearman_bootstrap(x, [r["acc_ood"] for r in fam], n_boot=n_boot, groups=g)
        si = spearman_bootstrap(x, [r["acc_id"] for r in fam], n_boot=n_boot, groups=g)
        bits.append(
            f"{name}: OOD accuracy {_direction(so['rho'], so['ci_low'], so['ci_high'])}, "
            f"in-domain accuracy {_direction(si['rho'], si['ci_low'], si['ci_high'])}"
        )
    return (
        "OOD and in-domain accuracy against pairwise HSIC, all plotted runs (preconditions not "
        "applied here). " + "; ".join(bits) + ". The verdict controls OOD accuracy for in-domain "
        "accuracy (partial correlation) on the runs meeting the preconditions."
    )


def measurement(settings: dict[str, Any], st: dict[str, Any]) -> str:
    img = settings.get("image") or {}
    train = settings["train"]
    probe = (
        "the whole training split"
        if train["probe_train"] is None
        else f"{train['probe_train']} training {sample_word(train)}"
    )
    parts = [
        f"{domain_title(train)}: the C2 runs (VCReg family through a projector), logistic probe "
        f"on {probe}, OOD = {ood_text(train)} ({train['ood_samples']} {sample_word(train)} each)"
    ]
    if img and img["dataset"] in st["domains"]:
        parts.append(
            f"{img['dataset']}: VICReg with encoder `{img['encoder']}` (d = {img['repr_dim']}), "
            f"{img['epochs']} epochs on {img['n_train']} images, Adam lr {img['lr']}, 2-layer MLP "
            f"projectors at widths {image_widths_text(img)}, {len(img['seeds'])} seed(s); OOD = "
            f"corruptions {img['data_options'].get('ood_corruptions') or '(all)'} at severities "
            f"{img['data_options'].get('ood_severities')} ({img['ood_samples']} test images each)"
        )
    return (
        "; ".join(parts) + f". {settings['n_boot']} bootstrap resamples of the configurations; "
        f"permutation test of the configurations' means (exact up to {EXACT_PERMUTATION_MAX} "
        f"configurations, else {MC_PERMUTATIONS} random orders)."
    )


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    st = statistics(settings, values)
    v = verdict(st)
    blocks: list[Any] = []
    skip = image_available(settings.get("image") or {})
    skipped = []
    if skip is not None and settings.get("image"):
        skipped.append(f"image domain ({settings['image']['dataset']}) skipped: {skip}")
        blocks.append(
            Paragraph(
                f"**Image domain skipped**: {skip}. The verdict rests on "
                f"{domain_title(settings['train'])}."
            )
        )
    for name, (_, flagged) in st["domains"].items():
        if flagged:
            blocks.append(
                Paragraph(f"{name}: " + flagged_note(flagged, settings["train"]["guard_ratio"]))
            )
    blocks += figures(st, ctx) + tables(settings, st)
    numbers = {
        "points": {
            name: [
                {
                    k: r[k]
                    for k in ("config_id", "seed", "kind", "hsic", "nhsic", "acc_id", "acc_ood")
                }
                for r in recs
            ]
            for name, (recs, _) in st["domains"].items()
        },
        "companions": {
            n: companions(r, f, settings["n_boot"]) for n, (r, f) in st["domains"].items()
        },
        "flagged": {n: f for n, (_, f) in st["domains"].items()},
    }
    doms, main = st["domains"], domain_title(settings["train"])
    img_recs = [r for name, (recs, _) in doms.items() if name != main for r in recs]
    return Summary(
        measurement(settings, st),
        v,
        numbers,
        blocks,
        sensitivity=sensitivity(settings, values, v),
        skipped=skipped,
        scale=c2_projector.run_scale(
            {**settings["train"], "image": settings.get("image")}, doms[main][0], img_recs
        ),
    )
