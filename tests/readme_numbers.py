"""README numbers tied to the results files the runs wrote (docs/numbers.yaml).

Every number in README.md (or a doc under docs/) that a run produced is registered in
``docs/numbers.yaml`` with the committed results file of that run (``file``), the sentence it
stands in (``text``, the README's words with ``{}`` where each value stands; line breaks and
runs of spaces match any whitespace) and how each value is computed from the file (``values``:
a Python expression over ``r``, the file's JSON, then ``|`` and a format spec, e.g.
``r["wall_time_s"] / 60 | .1f``; a value without a format spec is text and is compared as is).
``after`` (optional): the sentence is the first one after that text (for sentences that occur
twice); without it the sentence must occur exactly once; ``doc`` (optional, default README.md) names another Markdown file.

``tests/test_readme_numbers.py`` fails when a registered number and its file disagree, or when
the sentence is no longer in the document. After a new run rewrote a results file:

    python tests/readme_numbers.py            # list the numbers that disagree
    python tests/readme_numbers.py --write    # rewrite them in the documents from the files
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
REGISTRY = ROOT / "docs" / "numbers.yaml"
_NUMBER = r"[-+−]?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?"


def md(text: str) -> str:
    """Text as it stands in a Markdown table cell (``|`` escaped)."""
    return str(text).replace("|", "\\|")


def verdict(r: dict, claim: str) -> str:
    """The verdict cell of a report's claim: badge, status and stability."""
    from vcreg.experiments.report import badge

    e = r["experiments"][claim]
    stab = f" ({e['stability']})" if e.get("stability") else ""
    return f"{badge(e['verdict']['status'])}{stab}"


def parts(r: dict, claim: str) -> str:
    """The parts cell of a report's claim: each part's status, added tests labelled."""
    return md(r["experiments"][claim]["verdict"].get("values", {}).get("parts_line", ""))


def statistic(r: dict, claim: str) -> str:
    """The statistic cell of a report's claim."""
    return md(r["experiments"][claim]["verdict"]["statistic"])


HELPERS = {
    "md": md,
    "verdict": verdict,
    "statistic": statistic,
    "parts": parts,
    **{f.__name__: f for f in (abs, len, max, min, round, sorted, sum)},
}


@dataclass
class Check:
    """One registered sentence: where it stands, what the document says, what the file says."""

    index: int
    doc: Path
    name: str  # the document's path as registered
    text: str
    file: str
    expected: list[str]
    found: list[str] | None  # None: the sentence is not in the document
    spans: list[tuple[int, int]]
    missing: bool = False  # the results file does not exist

    @property
    def ok(self) -> bool:
        return not self.missing and self.found == self.expected

    @property
    def label(self) -> str:
        short = re.sub(r"\s+", " ", self.text)[:60]
        return f"{self.name} #{self.index}: {short}"

    def problem(self) -> str:
        where = f"{self.name}, docs/numbers.yaml entry {self.index}"
        if self.missing:
            return f"{where}: the results file {self.file} does not exist; run its command"
        if self.found is None:
            return (
                f"{where}: the sentence {self.text!r} is not in the document (or, without "
                "'after', more than once); update the entry's text to the document's words"
            )
        diff = [
            f"{got!r} (file says {want!r})"
            for got, want in zip(self.found, self.expected, strict=True)
            if got != want
        ]
        return (
            f"{where}: the document says {', '.join(diff)} in {self.text!r}; the results file "
            f"{self.file} says otherwise. Rerun `python tests/readme_numbers.py --write` if the "
            "file is the newer, or fix the file"
        )


def _value(spec: str, r: Any) -> str:
    expr, _, fmt = spec.rpartition(" | ") if " | " in spec else (spec, "", "")
    value = eval(expr, {"__builtins__": {}, "r": r, **HELPERS})  # noqa: S307 - our registry
    return format(value, fmt) if fmt else str(value)


def _pattern(text: str, expected: list[str]) -> re.Pattern:
    parts = text.split("{}")
    if len(parts) - 1 != len(expected):
        raise ValueError(f"{text!r}: {len(parts) - 1} placeholders for {len(expected)} values")
    regex = ""
    for i, part in enumerate(parts):
        regex += r"\s+".join(re.escape(w) for w in re.split(r"\s+", part))
        if i < len(expected):
            regex += f"({_NUMBER})" if re.fullmatch(_NUMBER, expected[i]) else "(.+?)"
    return re.compile(regex)


def load_checks(registry: Path = REGISTRY, root: Path = ROOT) -> list[Check]:
    """Every registered sentence, with what its document and its results file say (paths in
    the registry are relative to ``root``)."""
    entries = yaml.safe_load(registry.read_text(encoding="utf-8")) or []
    docs: dict[Path, str] = {}
    checks = []
    for i, e in enumerate(entries, start=1):
        name = e.get("doc", "README.md")
        doc = root / name
        text = docs.setdefault(doc, doc.read_text(encoding="utf-8"))
        source = root / e["file"]
        if not source.is_file():
            checks.append(Check(i, doc, name, e["text"], e["file"], [], None, [], missing=True))
            continue
        r = json.loads(source.read_text(encoding="utf-8"))
        expected = [_value(v, r) for v in e["values"]]
        start = text.find(e["after"]) + len(e["after"]) if e.get("after") else 0
        matches = []
        if not e.get("after") or e["after"] in text:
            matches = list(_pattern(e["text"], expected).finditer(text, start))
        if e.get("after"):
            matches = matches[:1]  # the first occurrence after the anchor
        found, spans = None, []
        if len(matches) == 1:
            m = matches[0]
            found = [m.group(k) for k in range(1, len(expected) + 1)]
            spans = [m.span(k) for k in range(1, len(expected) + 1)]
        checks.append(Check(i, doc, name, e["text"], e["file"], expected, found, spans))
    return checks


def write(checks: list[Check]) -> int:
    """Rewrite every disagreeing number in its document from its file; returns how many."""
    by_doc: dict[Path, list[tuple[tuple[int, int], str]]] = {}
    for c in checks:
        if c.found is None:
            continue
        for span, got, want in zip(c.spans, c.found, c.expected, strict=True):
            if got != want:
                by_doc.setdefault(c.doc, []).append((span, want))
    for doc, edits in by_doc.items():
        text = doc.read_text(encoding="utf-8")
        for (a, b), want in sorted(edits, reverse=True):
            text = text[:a] + want + text[b:]
        doc.write_text(text, encoding="utf-8")
    return sum(len(v) for v in by_doc.values())


def main() -> int:
    ap = argparse.ArgumentParser(description="Check (or --write) the numbers of docs/numbers.yaml")
    ap.add_argument("--write", action="store_true", help="rewrite disagreeing numbers")
    a = ap.parse_args()
    checks = load_checks()
    bad = [c for c in checks if not c.ok]
    if a.write:
        n = write(bad)
        print(f"rewrote {n} number(s)")
        bad = [c for c in load_checks() if not c.ok]
    for c in bad:
        print(c.problem())
    print(f"{len(checks) - len(bad)} of {len(checks)} registered sentences agree with their files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
