"""README numbers cannot drift from the results files of the runs that produced them
(docs/numbers.yaml, tests/readme_numbers.py; issue 33, item 1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from readme_numbers import REGISTRY, load_checks, write

CHECKS = load_checks()


@pytest.mark.parametrize("check", CHECKS, ids=[c.label for c in CHECKS])
def test_readme_number_agrees_with_its_results_file(check):
    if check.file in os.environ.get("VCREG_WRITING_RESULTS", "").split(os.pathsep):
        pytest.skip(f"{check.file} is being written by the run that runs this test")
    assert check.ok, check.problem()


def test_the_registry_covers_the_reports_and_names_existing_files():
    entries = yaml.safe_load(REGISTRY.read_text(encoding="utf-8"))
    files = {e["file"] for e in entries}
    assert {"docs/report/quick/results.json", "docs/report/full/results.json"} <= files
    root = REGISTRY.parents[1]
    for f in files:
        assert (root / f).is_file(), f


def _setup(tmp_path, readme: str, result: dict, entries: list[dict]) -> Path:
    (tmp_path / "README.md").write_text(readme)
    (tmp_path / "r.json").write_text(json.dumps(result))
    registry = tmp_path / "numbers.yaml"
    registry.write_text(yaml.safe_dump([{"file": "r.json", **e} for e in entries]))
    return registry


def test_drift_and_missing_sentences_fail_and_write_repairs_them(tmp_path):
    readme = (
        "The run took **8.3 min**\nwall (16 runs).\n\n| C1 | x | ✅ ok |\n"
        "Later: took **1.0 min** wall.\n"
    )
    result = {"wall_time_s": 492.7, "runs": list(range(16)), "status": "✅ ok", "t2": 60.0}
    entries = [
        # the sentence spans a line break: any whitespace matches
        {
            "text": "took **{} min** wall ({} runs)",
            "values": ['r["wall_time_s"] / 60 | .1f', 'len(r["runs"]) | d'],
        },
        {"text": "| C1 | x | {} |", "values": ['r["status"]']},
        {"text": "took **{} min** wall.", "after": "Later:", "values": ['r["t2"] / 60 | .1f']},
        {"text": "a sentence that is gone {}", "values": ['r["t2"] | .0f']},
    ]
    checks = load_checks(_setup(tmp_path, readme, result, entries), root=tmp_path)
    assert [c.ok for c in checks] == [False, True, True, False]
    assert checks[0].found == ["8.3", "16"] and checks[0].expected == ["8.2", "16"]
    assert "'8.3' (file says '8.2')" in checks[0].problem()
    assert checks[3].found is None and "is not in the document" in checks[3].problem()
    assert write(checks) == 1
    assert (tmp_path / "README.md").read_text() == readme.replace("8.3", "8.2")
    assert [c.ok for c in load_checks(tmp_path / "numbers.yaml", root=tmp_path)][:3] == [True] * 3


def test_a_sentence_that_occurs_twice_needs_an_anchor(tmp_path):
    registry = _setup(
        tmp_path,
        "took 1 s\ntook 1 s\n",
        {"s": 1},
        [{"text": "took {} s", "values": ['r["s"] | d']}],
    )
    (check,) = load_checks(registry, root=tmp_path)
    assert not check.ok and check.found is None


def test_the_command_line_reports_disagreements():
    res = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("readme_numbers.py"))],
        capture_output=True,
        text=True,
    )
    n = len(CHECKS)
    agree = sum(c.ok for c in CHECKS)
    assert f"{agree} of {n} registered sentences agree" in res.stdout
    assert res.returncode == (0 if agree == n else 1)
