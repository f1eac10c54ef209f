"""The calibration table in docs/sections/independence.md is the committed results file's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    path = ROOT / "benchmarks" / "bench_pairwise_calibration.py"
    spec = importlib.util.spec_from_file_location("bench_pairwise_calibration", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_table_is_the_committed_results():
    bench = _bench()
    done = json.loads((ROOT / "benchmarks" / "results" / "pairwise_calibration.json").read_text())
    docs = (ROOT / "docs" / "sections" / "independence.md").read_text()
    assert bench.docs_block(done) in docs, (
        "run: python benchmarks/bench_pairwise_calibration.py --docs"
    )


def test_every_row_has_its_interval_and_counts():
    done = json.loads((ROOT / "benchmarks" / "results" / "pairwise_calibration.json").read_text())
    for r in done["rows"]:
        lo, hi = r["fwer_ci95"]
        assert 0 <= lo <= r["fwer"] <= hi <= 1
        assert r["fwer_hits"] == round(r["fwer"] * r["seeds"])
        assert len(r["sizes"]) == r["seeds"]
