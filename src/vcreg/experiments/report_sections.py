"""The sections of the reproduction report, built from ``results.json`` and the claims' summaries.

Every sentence that states a count, a range, a time or a cache fact is computed here from the
run's own settings and results (the claims' ``Summary.scale``, the unit counts and wall times
the runner records), never fixed text: a report cannot contradict the run it describes. Tables
with nothing to show are left out with one line saying why (the experiments use
:func:`vcreg.experiments.report.table_or_note`).

The one-word status of a claim follows :data:`vcreg.experiments.verdicts.CLAIM_RULE`; the
verdict table shows every part's status beside it (``parts_line``), tests the project added are
labelled "added test", and "the data of this run contradict the paper's claim" is said only
from the paper's own parts, naming them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vcreg.experiments.datafiles import data_blocks
from vcreg.experiments.presets import PRESET_NOTES, left_for_full
from vcreg.experiments.report import (
    Block,
    Heading,
    Paragraph,
    Table,
    VerdictBlock,
    badge,
    sensitivity_blocks,
    stability,
)
from vcreg.experiments.verdicts import (
    CLAIM_RULE,
    INCONCLUSIVE,
    NOT_ASSESSABLE,
    NOT_SUPPORTED,
    Verdict,
    added_parts,
    failing_paper_parts,
    minimum_units_rows,
    paper_parts,
    parts_line,
)

if TYPE_CHECKING:
    from vcreg.experiments.runner import Summary

__all__ = ["build_report_blocks", "assessability_blocks", "time_sentence"]


def build_report_blocks(results: dict[str, Any], summaries: dict[str, Summary]) -> list[Block]:
    """The report: header, what is assessable, verdict table, one section per claim,
    sensitivity, minimum units, settings."""
    blocks = _header(results, summaries)
    blocks += assessability_blocks(results)
    blocks.append(Heading("Verdicts", 2))
    blocks.append(
        Paragraph(
            f"**How a claim's one-word status is decided** (fixed in code before the runs): {CLAIM_RULE}."
        )
    )
    blocks += _verdict_table(results)
    for claim, e in results["experiments"].items():
        blocks += _claim_blocks(claim, e, summaries.get(claim))
    sens = {c: e["sensitivity"] for c, e in results["experiments"].items() if e.get("sensitivity")}
    if sens:
        blocks.extend(sensitivity_blocks(sens))
    blocks += _minimum_units_blocks()
    blocks.append(Heading("Settings", 2))
    blocks.append(
        Paragraph("Per-claim settings of this run (the preset, after `--seeds` / overrides):")
    )
    for claim, e in results["experiments"].items():
        items = ", ".join(f"{k}={_short(val)}" for k, val in e["settings"].items())
        blocks.append(Paragraph(f"**{claim}**: {items}"))
    return blocks


def _header(results: dict[str, Any], summaries: dict[str, Summary]) -> list[Block]:
    v, env = results["versions"], results["environment"]
    command = results.get("command") or f"vcreg reproduce --preset {results['preset']}"
    scale = [s.scale for s in summaries.values() if s.scale]
    scale = list(dict.fromkeys(scale))  # C2–C4 share their runs: said once
    return [
        Heading(f"vcreg reproduction report — preset `{results['preset']}`", 1),
        Paragraph(
            "Re-measurement of the claims of Mialon, Balestriero & LeCun, *Variance-Covariance "
            "Regularization Enforces Pairwise Independence in Self-Supervised Representations* "
            "(arXiv 2209.14905). Every number, table, figure and verdict below is computed by "
            "this run from its own measurements (`results.json` holds them all); verdicts follow "
            "fixed decision rules (`vcreg.experiments.verdicts`), never hand-written text."
        ),
        Paragraph(
            f"Command: `{command}` · device `{env['device']}` · {env['cpu_count']} CPUs · torch "
            f"{v.get('torch')} · vcreg {v.get('vcreg')} (commit "
            f"`{(v.get('git_commit') or 'unknown')[:10]}`) · started {results['started']}."
        ),
        Paragraph(time_sentence(results)),
        *data_blocks(results.get("data") or {}),
        Paragraph(
            PRESET_NOTES.get(results["preset"], "")
            + (" Scale of this run: " + "; ".join(scale) + "." if scale else "")
            + _left_for_full(results)
        ),
    ]


def _left_for_full(results: dict[str, Any]) -> str:
    c2 = (results["experiments"].get("C2") or {}).get("settings")
    left = left_for_full(c2) if c2 and results["preset"] in ("tiny", "quick") else None
    return f" Left for `--preset full`: {left}." if left else ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def time_sentence(results: dict[str, Any]) -> str:
    """The measured wall time with its load, and where the units' compute time was spent
    (this run or earlier runs, from the cache), from the run's own records."""
    env = results["environment"]
    jobs, world = env.get("jobs", 1), env.get("world_size", 1)
    at_once = (
        f"{_plural(world, 'torchrun rank')}, one unit at a time each"
        if world > 1
        else f"{_plural(jobs, 'unit')} computed at a time"
    )
    text = (
        f"Measured: wall time {results['wall_time_s'] / 60:.1f} min for this invocation on "
        f"`{env['device']}` with {at_once}, load average "
        f"{_load_str(env.get('load_average_at_start'))} at the start and "
        f"{_load_str(env.get('load_average_at_end'))} at the end (other processes on the "
        "machine slow it down)."
    )
    u = results.get("units")
    if not u:
        return text
    total = u["computed_in_this_run"] + u["from_earlier_runs"]
    if u["from_earlier_runs"] == 0:
        where = f"all {total} computed in this run"
    elif u["computed_in_this_run"] == 0:
        where = (
            f"all {total} reused from the cache of earlier runs (this invocation recomputed "
            "no unit, so its wall time is only the summary)"
        )
    else:
        where = (
            f"{u['computed_in_this_run']} computed in this run ({u['compute_s_this_run'] / 60:.1f} "
            f"min) and {u['from_earlier_runs']} reused from the cache of earlier runs "
            f"({u['compute_s_earlier'] / 60:.1f} min, not in this wall time)"
        )
    minutes = (u["compute_s_this_run"] + u["compute_s_earlier"]) / 60
    return f"{text} The {_plural(total, 'work unit')} of this report took {minutes:.1f} min of compute: {where}."


def assessability_blocks(results: dict[str, Any]) -> list[Block]:
    """What this run can and cannot assess, first: the claims whose preconditions too few runs
    met, the paper parts of assessable claims that stay for a larger scale, and every skipped
    part (e.g. a domain not installed)."""
    exps = results["experiments"]
    verdicts = {c: Verdict.from_dict(e["verdict"]) for c, e in exps.items() if "verdict" in e}
    ok = [c for c, v in verdicts.items() if v.status != NOT_ASSESSABLE]
    na = {c: v for c, v in verdicts.items() if v.status == NOT_ASSESSABLE}
    nxt = _next_step(results["preset"])
    lines = [f"**Assessable at this scale:** {', '.join(ok) or 'none'}."]
    if na:
        lines[0] += (
            " **Not assessable at this scale:** "
            + "; ".join(f"{c} ({v.statistic})" for c, v in na.items())
            + ". Each reason says what is missing: runs meeting the preconditions (trained to "
            "the VCReg constraint, probe above a random-init encoder; stated in C2's section) "
            f"or enough runs at this scale; {nxt}."
        )
    stay = [
        f"{c}: {p.name} ({p.values.get('base_reason', p.statistic)})"
        for c in ok
        for p in paper_parts(verdicts[c])
        if p.status == NOT_ASSESSABLE
    ]
    if stay:
        lines.append(
            "**Parts of assessable claims not assessable at this scale** (the claim's status "
            f"rests on its other parts; {nxt}): " + "; ".join(stay) + "."
        )
    skipped = [f"{c}: {what}" for c, e in exps.items() for what in e.get("skipped") or []]
    if skipped:
        lines.append("⚠️ **Skipped in this run:** " + "; ".join(skipped) + ".")
    return [Heading("What this run can assess", 2), *(Paragraph(x) for x in lines)]


def _next_step(preset: str) -> str:
    if preset in ("tiny", "quick"):
        return "`vcreg reproduce --preset full` assesses them"
    return "more seeds or configurations than this preset has would assess them"


def _verdict_table(results: dict[str, Any]) -> list[Block]:
    rows = []
    for claim, e in results["experiments"].items():
        if "error" in e:
            rows.append([claim, e["title"], "⚠️ error (not run)", "–", e["error"]])
            continue
        v = Verdict.from_dict(e["verdict"])
        sens = e.get("sensitivity") or []
        mark = f" ({stability(sens)})" if sens else ""
        rows.append([claim, e["title"], badge(v.status) + mark, parts_line(v) or "–", v.statistic])
    return [
        Table(
            [
                "claim",
                "title",
                "verdict",
                "parts (paper's statements; added tests labelled)",
                "statistic",
            ],
            rows,
        )
    ]


def _names(parts: list[Verdict]) -> str:
    return "; ".join(f"*{p.name}* ({p.statistic})" for p in parts)


def _conclusion(claim: str, v: Verdict) -> list[Block]:
    """What the verdict means for the paper's claim, from its paper parts only."""
    if v.status == NOT_SUPPORTED:
        failing = failing_paper_parts(v) or [v]
        return [
            Paragraph(
                f"**The data of this run contradict the paper's claim {claim}** in "
                f"{_plural(len(failing), 'part')}: {_names(failing)}."
            )
        ]
    if v.status == INCONCLUSIVE:
        open_parts = [p for p in paper_parts(v) if p.status == INCONCLUSIVE] or [v]
        return [
            Paragraph(
                f"**This run can neither confirm nor refute claim {claim}**: unresolved at this "
                f"run's sample size — {_names(open_parts)}."
            )
        ]
    return []


def _findings(v: Verdict) -> list[Block]:
    added = added_parts(v)
    if not added:
        return []
    return [
        Paragraph(
            "**Added tests** (the project's, beyond the paper's statements; findings reported "
            "beside the verdict, never deciding it): "
            + "; ".join(f"*{p.name}*: {badge(p.status)} — {p.statistic}" for p in added)
            + "."
        )
    ]


def _claim_blocks(claim: str, e: dict[str, Any], s: Summary | None) -> list[Block]:
    blocks: list[Block] = [
        Heading(f"{claim} — {e['title']}", 2),
        Paragraph(f"**Claim (paper).** {e['claim']}"),
    ]
    if "error" in e or s is None:
        blocks.append(Paragraph(f"**This experiment failed:** `{e.get('error')}`"))
        return blocks
    blocks.append(Paragraph(f"**Measurement.** {s.measurement}"))
    blocks.extend(s.blocks)
    blocks += [Paragraph(note) for note in s.notes]
    blocks.append(VerdictBlock(s.verdict))
    blocks += _conclusion(claim, s.verdict) + _findings(s.verdict)
    blocks.append(Paragraph(_units_sentence(e)))
    return blocks


def _units_sentence(e: dict[str, Any]) -> str:
    earlier = e.get("units_from_earlier_runs", 0)
    shared = e["units_cached"] - earlier
    bits = [f"{_plural(e['units_computed'], 'unit')} computed by this claim in this run"]
    if shared:
        bits.append(f"{shared} computed earlier in this run by another claim (shared runs)")
    bits.append(f"{earlier} reused from the cache of earlier runs")
    return (
        f"_{', '.join(bits)}; {e['wall_time_s']:.1f} s in this invocation; its units took "
        f"{e['unit_compute_s'] / 60:.1f} min of compute in all._"
    )


def _minimum_units_blocks() -> list[Block]:
    return [
        Heading("Minimum units of each interval and test", 2),
        Paragraph(
            "No interval or test is computed from fewer units than it needs; below the minimum "
            'the part prints "n too small" (or, where the preconditions or the preset left '
            'too few runs, "not assessable at this scale").'
        ),
        Table(["statistic", "units", "minimum", "why"], minimum_units_rows()),
    ]


def _short(val: Any) -> str:
    text = json.dumps(val) if not isinstance(val, str) else val
    return f"`{text if len(text) < 200 else text[:197] + '...'}`"


def _load_str(load: Any) -> str:
    if not load:
        return "n/a"
    return "/".join(f"{x:.1f}" for x in load)
