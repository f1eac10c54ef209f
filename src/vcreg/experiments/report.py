"""Report rendering: one list of content blocks -> ``report.md`` and a self-contained ``report.html``.

Blocks are plain tuples-as-dataclasses (heading, paragraph, table, figure, verdict) built by the
experiments from their measured numbers; the same blocks render to Markdown (figures linked as
relative PNG paths) and to HTML (figures inlined as base64 ``data:`` URIs, so the HTML file can
be mailed or opened anywhere).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vcreg.experiments.verdicts import (
    CHANGES,
    INCONCLUSIVE,
    NOT_ASSESSABLE,
    NOT_SUPPORTED,
    SUPPORTED,
    Verdict,
    parts_line,
    stability,
)

__all__ = [
    "Heading",
    "Paragraph",
    "Table",
    "Figure",
    "VerdictBlock",
    "Block",
    "render_markdown",
    "render_html",
    "fmt",
    "flagged_note",
    "sensitivity_blocks",
    "stability",
    "table_or_note",
    "part_label",
]

_BADGE = {
    SUPPORTED: "✅ supported",
    NOT_SUPPORTED: "❌ not supported",
    INCONCLUSIVE: "❔ inconclusive",
    NOT_ASSESSABLE: "⏸ not assessable at this scale",
}
_COLOR = {
    SUPPORTED: "#1a7f37",
    NOT_SUPPORTED: "#cf222e",
    INCONCLUSIVE: "#9a6700",
    NOT_ASSESSABLE: "#57606a",
}


def fmt(x: object, digits: int = 3) -> str:
    """Format a number for a table: ``digits`` significant digits, scientific when tiny/huge."""
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, int | float):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if x != x:
        return "nan"
    if x == 0:
        return "0"
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{max(digits - 1, 1)}e}"


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str  # Markdown-light: **bold** and `code` are rendered in HTML too


@dataclass
class Table:
    headers: list[str]
    rows: list[list[object]]
    caption: str = ""


@dataclass
class Figure:
    path: str  # relative to the report folder
    caption: str = ""


@dataclass
class VerdictBlock:
    verdict: Verdict
    label: str = "Verdict"


Block = Heading | Paragraph | Table | Figure | VerdictBlock


@dataclass
class _Doc:
    blocks: list[Block] = field(default_factory=list)


def badge(status: str) -> str:
    return _BADGE.get(status, status)


def _md_cell(x: object) -> str:
    return fmt(x).replace("|", "\\|").replace("\n", " ")


def part_label(p: Verdict) -> str:
    """A part's name, prefixed "added test · " for a test the project added beyond the paper."""
    return ("added test · " if p.added else "") + (p.name or "part")


def _verdict_md(v: Verdict, label: str) -> list[str]:
    lines = [f"**{label}: {badge(v.status)}** — {v.statistic}. _{v.reason}._", ""]
    if v.parts:
        lines += [f"Parts: {parts_line(v)}", ""]
    for p in v.parts:
        lines.append(f"- {part_label(p)}: **{badge(p.status)}** — {p.statistic}. _{p.reason}._")
    if v.parts:
        lines.append("")
    return lines


def render_markdown(blocks: Sequence[Block]) -> str:
    """Render blocks to GitHub-flavoured Markdown."""
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{b.caption}*", ""]
            out.append("| " + " | ".join(b.headers) + " |")
            out.append("|" + "---|" * len(b.headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            out += [f"![{b.caption}]({b.path})", ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
        elif isinstance(b, VerdictBlock):
            out += _verdict_md(b.verdict, b.label)
        else:  # pragma: no cover - programming error
            raise TypeError(f"unknown report block {type(b).__name__}")
    return "\n".join(out).rstrip() + "\n"


def _inline(text: str) -> str:
    """Escape text, then render **bold** and `code` spans."""
    import re

    t = html.escape(text)
    t = re.sub(r"`([^`]+)`", r"<code>\1</code>", t)
    t = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", t)
    t = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"<em>\1</em>", t)
    t = re.sub(r"(?<!\w)_([^_\n]+)_(?!\w)", r"<em>\1</em>", t)
    return t


def _verdict_html(v: Verdict, label: str) -> str:
    color = _COLOR.get(v.status, "#000")
    parts = ""
    if v.parts:
        items = "".join(
            f"<li>{_inline(part_label(p))}: <strong style='color:{_COLOR.get(p.status)}'>"
            f"{html.escape(badge(p.status))}</strong> — {_inline(p.statistic)}. "
            f"<em>{_inline(p.reason)}.</em></li>"
            for p in v.parts
        )
        parts = f"<p>Parts: {_inline(parts_line(v))}</p><ul>{items}</ul>"
    return (
        f"<div class='verdict' style='border-left:4px solid {color}'><strong>{html.escape(label)}: "
        f"<span style='color:{color}'>{html.escape(badge(v.status))}</span></strong> — "
        f"{_inline(v.statistic)}. <em>{_inline(v.reason)}.</em>{parts}</div>"
    )


def render_html(blocks: Sequence[Block], base_dir: str | Path, title: str = "vcreg report") -> str:
    """Render blocks to one self-contained HTML page; figures under ``base_dir`` are inlined."""
    base_dir = Path(base_dir)
    body: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lvl = min(max(b.level, 1), 6)
            body.append(f"<h{lvl}>{_inline(b.text)}</h{lvl}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{_inline(h)}</th>" for h in b.headers)
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>"
                for r in b.rows
            )
            cap = f"<caption>{_inline(b.caption)}</caption>" if b.caption else ""
            body.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif isinstance(b, Figure):
            data = base64.b64encode((base_dir / b.path).read_bytes()).decode("ascii")
            cap = f"<figcaption>{_inline(b.caption)}</figcaption>" if b.caption else ""
            body.append(
                f"<figure><img alt='{html.escape(b.caption)}' data-src='{html.escape(b.path)}' "
                f"src='data:image/png;base64,{data}'/>{cap}</figure>"
            )
        elif isinstance(b, VerdictBlock):
            body.append(_verdict_html(b.verdict, b.label))
        else:  # pragma: no cover
            raise TypeError(f"unknown report block {type(b).__name__}")
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;text-align:right}th{background:#f3f3f3}caption{font-style:italic;"
        "text-align:left}img{max-width:100%}figure{margin:1em 0}figcaption{font-style:italic;"
        "color:#555}.verdict{background:#f8f8f8;padding:.6em 1em;margin:1em 0}"
        "code{background:#f0f0f0;padding:0 3px}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


# -- blocks shared by the experiments -------------------------------------------------------------


def table_or_note(table: Table, why: str) -> list[Block]:
    """``[table]`` when it has rows, else one line saying what it would show and why it has
    nothing (a report never prints a table of headers only)."""
    if table.rows:
        return [table]
    what = table.caption.split(" (")[0] if table.caption else "Table"
    return [Paragraph(f"*{what}*: not shown — {why}.")]


def flagged_note(flagged: dict[str, float], ratio: float) -> str:
    """The sentence saying which configurations the hygiene guard left out, and why."""
    items = ", ".join(f"`{k}` ({v:.3f})" for k, v in sorted(flagged.items()))
    return (
        f"**Flagged and excluded from the verdict** (mean in-domain accuracy below {ratio:g} × "
        f"the sweep's median configuration, i.e. the run did not learn a usable representation): "
        f"{items}. The sensitivity table shows the verdict with them included."
    )


def sensitivity_blocks(sensitivity: dict[str, list[dict]]) -> list[Block]:
    """One table: every claim's verdict under the main and the alternative analysis choices."""
    rows = []
    for claim, sens in sensitivity.items():
        for r in sens:
            mark = "" if r["agrees"] else " ⚠ differs"
            rows.append([claim, r["analysis"], badge(r["status"]) + mark, r["statistic"]])
    summary = "; ".join(f"{c}: **{stability(s)}**" for c, s in sensitivity.items())
    return [
        Heading("Sensitivity of the verdicts", 2),
        Paragraph(
            "Every verdict recomputed from the same runs under other reasonable analysis choices "
            "(HSIC estimator, kernel bandwidth rule, baseline epoch, with/without the flagged "
            "configurations, …). A claim whose verdict is the same under all of them is **stable**; "
            f"one whose verdict changes under any of them is marked **{CHANGES}**. {summary}."
        ),
        Table(["claim", "analysis", "verdict", "statistic"], rows),
    ]
